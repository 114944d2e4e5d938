//! Helpers shared by the reference strategies.

/// Lists longer than this are sorted once so that membership is a binary search.
const LINEAR_MAX: usize = 16;

/// The proxies already tried for a connection, with membership in O(1) for the usual
/// short list and O(log n) for a long one (the "everything tried" canary passes 10,000).
#[derive(Debug)]
pub enum Tried<'a> {
    /// Short: scanned.
    Few(&'a [u32]),
    /// Long: sorted copy.
    Many(Vec<u32>),
}

impl<'a> Tried<'a> {
    /// Wraps the list from the pick context.
    pub fn new(tried: &'a [u32]) -> Self {
        if tried.len() <= LINEAR_MAX {
            Tried::Few(tried)
        } else {
            let mut v = tried.to_vec();
            v.sort_unstable();
            Tried::Many(v)
        }
    }

    /// Whether `id` was tried.
    pub fn contains(&self, id: u32) -> bool {
        match self {
            Tried::Few(t) => t.contains(&id),
            Tried::Many(v) => v.binary_search(&id).is_ok(),
        }
    }
}

/// splitmix64: small, fast and seedable. A strategy seeds it once from the host's
/// `random` (per pool, so tests can fix it) and draws locally, which saves a host
/// call per draw.
#[derive(Clone, Debug, Default)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_is_the_same_short_or_long() {
        let long: Vec<u32> = (0..100).rev().map(|i| i * 2).collect();
        let t = Tried::new(&long);
        assert!(t.contains(198) && t.contains(0) && !t.contains(1));
        let short = [5, 3];
        let t = Tried::new(&short);
        assert!(t.contains(3) && !t.contains(4));
    }
}
