//! Sticky sessions: a client that puts `+session=KEY` after the exchange in its user
//! name (`binance+session=book-1`) keeps the upstream its first connection got, for
//! as long as that upstream may take it; then the session moves to wherever the next
//! connection lands.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A session unused for this long is forgotten.
pub const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// Sessions kept at most; past it the least recently used ones go.
pub const MAX_SESSIONS: usize = 100_000;

/// The user name split: the exchange part, and the session key if any.
pub fn split_user(user: &str) -> (&str, Option<&str>) {
    match user.split_once("+session=") {
        Some((exchange, key)) if !key.is_empty() => (exchange, Some(key)),
        _ => (user, None),
    }
}

/// Session key → the upstream (`route/id`) it sticks to.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, (String, Instant)>>,
}

impl Sessions {
    /// The upstream `key` sticks to, if it is known and fresh.
    pub fn get(&self, key: &str) -> Option<String> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match map.get_mut(key) {
            Some((upstream, used)) if now.duration_since(*used) < SESSION_IDLE => {
                *used = now;
                Some(upstream.clone())
            }
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    /// `key` sticks to `upstream` from now on.
    pub fn put(&self, key: &str, upstream: String) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_SESSIONS && !map.contains_key(key) {
            let now = Instant::now();
            map.retain(|_, (_, used)| now.duration_since(*used) < SESSION_IDLE);
            if map.len() >= MAX_SESSIONS
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (_, u))| *u)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(key.to_owned(), (upstream, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_name_carries_exchange_and_session() {
        assert_eq!(split_user("binance+session=a1"), ("binance", Some("a1")));
        assert_eq!(split_user("binance"), ("binance", None));
        assert_eq!(split_user("binance+session="), ("binance+session=", None));
        let s = Sessions::default();
        assert_eq!(s.get("a1"), None);
        s.put("a1", "exchanges.binance.http/2".into());
        assert_eq!(s.get("a1").as_deref(), Some("exchanges.binance.http/2"));
    }
}
