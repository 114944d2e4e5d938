//! Whether this machine lets an unprivileged process send ICMP echo (Linux's
//! `net.ipv4.ping_group_range`), so that `method: ping` fails validation instead of
//! failing every probe. Reads two files; opens no socket.

const RANGE_FILE: &str = "/proc/sys/net/ipv4/ping_group_range";

/// `Ok` if ICMP datagram sockets are allowed for one of this process's groups (or the
/// system has no such setting), else why not and how to fix it.
pub(crate) fn unprivileged_icmp_allowed() -> Result<(), String> {
    let Ok(range) = std::fs::read_to_string(RANGE_FILE) else {
        return Ok(());
    };
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    check(&range, &groups(&status))
}

/// The process's real, effective and supplementary group ids.
fn groups(status: &str) -> Vec<u32> {
    status
        .lines()
        .filter(|l| l.starts_with("Gid:") || l.starts_with("Groups:"))
        .flat_map(|l| l.split_whitespace().skip(1))
        .filter_map(|g| g.parse().ok())
        .collect()
}

fn check(range: &str, gids: &[u32]) -> Result<(), String> {
    let mut parts = range.split_whitespace().map(str::parse::<u32>);
    let (Some(Ok(lo)), Some(Ok(hi))) = (parts.next(), parts.next()) else {
        return Ok(());
    };
    if gids.iter().any(|g| (lo..=hi).contains(g)) {
        return Ok(());
    }
    let mut gids = gids.to_vec();
    gids.sort_unstable();
    gids.dedup();
    let gids: Vec<String> = gids.iter().map(u32::to_string).collect();
    Err(format!(
        "ping needs unprivileged ICMP sockets, which this machine forbids: \
         net.ipv4.ping_group_range is \"{lo} {hi}\" and this process's groups are {}; \
         allow them (sysctl -w net.ipv4.ping_group_range=\"0 2147483647\") or use method tcp",
        gids.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_default_range_forbids_everyone() {
        let err = check("1\t0\n", &[0, 0]).unwrap_err();
        assert!(err.contains("\"1 0\""), "{err}");
        assert!(err.contains("groups are 0;"), "{err}");
    }

    #[test]
    fn a_range_that_holds_one_of_our_groups_allows() {
        assert_eq!(check("0 2147483647", &[1000]), Ok(()));
        assert_eq!(check("100 200", &[5, 150]), Ok(()));
        assert!(check("100 200", &[5, 250]).is_err());
    }

    #[test]
    fn groups_come_from_gid_and_groups_lines() {
        let status = "Name:\tx\nGid:\t1000\t1000\t1000\t1000\nGroups:\t4 27 \n";
        assert_eq!(groups(status), [1000, 1000, 1000, 1000, 4, 27]);
    }
}
