//! The fault matrix: pools of three built from every combination of member kinds,
//! with at least one healthy member. Shared by the test (`hardening::fault_matrix_*`)
//! and the bench (`cargo bench -p proxypool-tests --bench fault_matrix`).

use std::net::IpAddr;
use std::process::Stdio;
use std::time::Duration;

use crate::faults::{Fault, FaultProxy};
use crate::servers::{RealProxy, microsocks};

/// The address SYNs are dropped to inside the matrix's network namespace.
pub const SYN_DROP_ADDR: &str = "127.0.0.99:9";

/// Set (to anything) in the process that runs inside the namespace.
pub const IN_NETNS_ENV: &str = "PROXYPOOL_MATRIX_IN_NETNS";

/// How the slow member answers: well past any hedge delay the matrix uses.
pub const SLOW_BY: Duration = Duration::from_secs(2);

/// One kind of pool member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Accepts TCP and never answers.
    Blackhole,
    /// Its SYNs are dropped (needs the network namespace).
    SynDrop,
    /// Answers, slower than the hedge delay.
    Slow,
    /// Refuses the TCP connection.
    Refuse,
    /// Resets the connection mid-handshake.
    Reset,
    /// Answers with bytes that are no proxy protocol.
    Garbage,
    /// Rejects our credentials.
    WrongCredentials,
    /// A real microsocks. Last, so that a pool tries every faulty member first.
    Healthy,
}

impl Kind {
    /// Every kind, in pool order.
    pub const ALL: [Kind; 8] = [
        Kind::Blackhole,
        Kind::SynDrop,
        Kind::Slow,
        Kind::Refuse,
        Kind::Reset,
        Kind::Garbage,
        Kind::WrongCredentials,
        Kind::Healthy,
    ];

    /// Whether a dial through it fails without a word, so that only the hedge
    /// timer moves the connect on.
    pub fn silent(self) -> bool {
        matches!(self, Kind::Blackhole | Kind::SynDrop | Kind::Slow)
    }

    /// The name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Blackhole => "blackhole",
            Kind::SynDrop => "syn-drop",
            Kind::Slow => "slow",
            Kind::Refuse => "refuse",
            Kind::Reset => "reset",
            Kind::Garbage => "garbage",
            Kind::WrongCredentials => "bad-auth",
            Kind::Healthy => "healthy",
        }
    }
}

/// Every multiset of three kinds drawn from `kinds` with at least one healthy member,
/// each sorted into pool order (faulty members first).
pub fn combinations(kinds: &[Kind]) -> Vec<[Kind; 3]> {
    let mut kinds = kinds.to_vec();
    kinds.sort();
    kinds.dedup();
    let mut out = Vec::new();
    for i in 0..kinds.len() {
        for j in i..kinds.len() {
            for k in j..kinds.len() {
                let c = [kinds[i], kinds[j], kinds[k]];
                if c.contains(&Kind::Healthy) {
                    out.push(c);
                }
            }
        }
    }
    out
}

/// The kinds this process can build: all of them inside the namespace, all but
/// [`Kind::SynDrop`] elsewhere.
pub fn available_kinds() -> Vec<Kind> {
    let in_netns = std::env::var_os(IN_NETNS_ENV).is_some();
    Kind::ALL
        .into_iter()
        .filter(|k| in_netns || *k != Kind::SynDrop)
        .collect()
}

/// Healthy proxies shared by every pool (a pool has three at most).
pub struct Healthy {
    proxies: Vec<RealProxy>,
}

impl Healthy {
    /// Starts three microsocks; `None` after a skip notice if it is missing.
    pub async fn start() -> Option<Healthy> {
        let mut proxies = Vec::new();
        for _ in 0..3 {
            proxies.push(microsocks(None).await?);
        }
        Some(Healthy { proxies })
    }

    /// Their egress addresses, to tell at the target which one carried a tunnel.
    pub fn egresses(&self) -> Vec<IpAddr> {
        self.proxies.iter().map(|p| p.egress).collect()
    }
}

/// One pool's members, running.
pub struct Members {
    /// The proxy URLs, in pool order.
    pub urls: Vec<String>,
    /// The in-process fault proxies, with their index in the pool.
    pub faults: Vec<(usize, Kind, FaultProxy)>,
}

impl Members {
    /// Starts the members of `combo`, taking healthy ones from `healthy`.
    pub async fn start(combo: [Kind; 3], healthy: &Healthy) -> Members {
        let mut urls = Vec::new();
        let mut faults = Vec::new();
        let mut next_healthy = 0;
        for (i, kind) in combo.into_iter().enumerate() {
            let fault = match kind {
                Kind::Healthy => {
                    urls.push(format!("socks5://{}", healthy.proxies[next_healthy].addr));
                    next_healthy += 1;
                    continue;
                }
                Kind::SynDrop => {
                    urls.push(format!("socks5://{SYN_DROP_ADDR}"));
                    continue;
                }
                Kind::Blackhole => Fault::Blackhole,
                Kind::Slow => Fault::Slow(SLOW_BY),
                Kind::Refuse => Fault::Refuse,
                Kind::Reset => Fault::ResetMidHandshake,
                Kind::Garbage => Fault::Garbage,
                Kind::WrongCredentials => Fault::Socks5AuthReject,
            };
            let proxy = FaultProxy::start(fault).await;
            urls.push(match kind {
                Kind::WrongCredentials => format!("socks5://trader:wrong@{}", proxy.addr()),
                _ => proxy.url("socks5"),
            });
            faults.push((i, kind, proxy));
        }
        Members { urls, faults }
    }

    /// The YAML of a pool of these members: round robin from the first, no health
    /// checks (only connects touch the members), and `failover` as given.
    pub fn yaml(&self, failover: &str) -> String {
        format!(
            "proxy: {{enabled: true, default: {{http: {{pool: [{}], timeout_seconds: 10, \
             failover: {failover}, health_check: {{enabled: false}}}}}}}}",
            self.urls
                .iter()
                .map(|u| format!("'{u}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

/// The name of a combination, for tables and messages.
pub fn label(combo: &[Kind; 3]) -> String {
    combo.map(Kind::name).join(" + ")
}

/// Why a namespace cannot be made here, or `None` if it can: root, `ip` and `nft`.
pub fn netns_unavailable() -> Option<String> {
    if !std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
    {
        return Some("not root".into());
    }
    for tool in ["ip", "nft"] {
        if crate::require_binary_quiet(tool).is_none() {
            return Some(format!(
                "{tool} is not installed (apt-get install iproute2 nftables)"
            ));
        }
    }
    None
}

/// A network namespace with loopback up and SYNs to [`SYN_DROP_ADDR`] dropped;
/// deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    /// Makes one named after this process.
    pub fn create() -> anyhow::Result<Netns> {
        let name = format!("proxypool-matrix-{}", std::process::id());
        let ns = Netns { name };
        run(&["ip", "netns", "add", &ns.name])?;
        let (ip, port) = SYN_DROP_ADDR.split_once(':').expect("host:port");
        for cmd in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["nft", "add", "table", "inet", "matrix"],
            vec![
                "nft",
                "add chain inet matrix out { type filter hook output priority 0 ; }",
            ],
            vec![
                "nft", "add", "rule", "inet", "matrix", "out", "ip", "daddr", ip, "tcp", "dport",
                port, "drop",
            ],
        ] {
            let mut full = vec!["ip", "netns", "exec", &ns.name];
            full.extend(cmd);
            run(&full)?;
        }
        Ok(ns)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> std::process::Command {
        let mut c = std::process::Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c.env(IN_NETNS_ENV, "1");
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

fn run(cmd: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new(cmd[0])
        .args(&cmd[1..])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}: {}",
        cmd.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combinations_cover_every_multiset_with_a_healthy_member() {
        // C(8+2, 3) multisets of 8 kinds, minus the C(7+2, 3) with no healthy member.
        assert_eq!(combinations(&Kind::ALL).len(), 120 - 84);
        assert_eq!(
            combinations(&Kind::ALL[..])
                .iter()
                .filter(|c| c[2] != Kind::Healthy)
                .count(),
            0
        );
    }
}
