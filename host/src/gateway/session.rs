//! Sticky sessions: a client that puts `+session=KEY` after the exchange in its user
//! name (`binance+session=book-1`) keeps the upstream its first connection got, for
//! as long as that upstream may take it; then the session moves to wherever the next
//! connection lands.

use crate::sync::Locked as _;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::Transport;

/// A session unused for this long is forgotten.
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(30 * 60);
/// Sessions kept at most; past it the least recently used tenth goes. With keys of
/// at most [`MAX_SESSION_KEY`] bytes the table stays under about 30 MiB.
pub(crate) const MAX_SESSIONS: usize = 100_000;
/// The longest session key: room for a UUID and a label, not for a payload.
pub(crate) const MAX_SESSION_KEY: usize = 64;

/// The user name split: the exchange part, and the session key if any.
pub(crate) fn split_user(user: &str) -> (&str, Option<&str>) {
    match user.split_once("+session=") {
        Some((exchange, key)) if !key.is_empty() => (exchange, Some(key)),
        _ => (user, None),
    }
}

/// A session's identity: the exchange, the transport and the client's key, so that
/// one key used for an exchange's REST and stream routes sticks on each.
fn id(exchange: &str, transport: Transport, key: &str) -> String {
    format!("{}/{transport}/{key}", exchange.to_ascii_lowercase())
}

/// Session → the upstream (`route/id`) it sticks to.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, (String, Instant)>>,
}

impl Sessions {
    /// The upstream the session sticks to, if it is known and fresh.
    pub fn get(&self, exchange: &str, transport: Transport, key: &str) -> Option<String> {
        let id = id(exchange, transport, key);
        let mut map = self.map.locked();
        let now = Instant::now();
        match map.get_mut(&id) {
            Some((upstream, used)) if now.duration_since(*used) < SESSION_IDLE => {
                *used = now;
                Some(upstream.clone())
            }
            Some(_) => {
                map.remove(&id);
                None
            }
            None => None,
        }
    }

    /// The upstreams the session sticks to on either transport, for a ban reported
    /// by session key.
    pub fn upstreams(&self, exchange: &str, key: &str) -> Vec<String> {
        Transport::ALL
            .into_iter()
            .filter_map(|t| self.get(exchange, t, key))
            .collect()
    }

    /// The session sticks to `upstream` from now on.
    pub fn put(&self, exchange: &str, transport: Transport, key: &str, upstream: String) {
        let id = id(exchange, transport, key);
        let mut map = self.map.locked();
        if map.len() >= MAX_SESSIONS && !map.contains_key(&id) {
            let now = Instant::now();
            map.retain(|_, (_, used)| now.duration_since(*used) < SESSION_IDLE);
            if map.len() >= MAX_SESSIONS {
                // A tenth at a time: one scan per many inserts, not one per insert.
                let mut used: Vec<Instant> = map.values().map(|(_, u)| *u).collect();
                let (_, cut, _) = used.select_nth_unstable(MAX_SESSIONS / 10);
                let cut = *cut;
                map.retain(|_, (_, u)| *u > cut);
            }
        }
        map.insert(id, (upstream, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_table_makes_room_by_the_tenth_and_keeps_the_newest() {
        let sessions = Sessions::default();
        for i in 0..MAX_SESSIONS + 1 {
            sessions.put("binance", Transport::Http, &format!("k{i}"), "u".into());
        }
        let len = sessions.map.lock().unwrap().len();
        assert!(len <= MAX_SESSIONS, "{len}");
        assert!(len >= MAX_SESSIONS * 8 / 10, "{len}");
        let last = format!("k{MAX_SESSIONS}");
        assert!(sessions.get("binance", Transport::Http, &last).is_some());
    }

    #[test]
    fn the_user_name_carries_exchange_and_session() {
        assert_eq!(split_user("binance+session=a1"), ("binance", Some("a1")));
        assert_eq!(split_user("binance"), ("binance", None));
        assert_eq!(split_user("binance+session="), ("binance+session=", None));
        let s = Sessions::default();
        assert_eq!(s.get("binance", Transport::Http, "a1"), None);
        s.put(
            "Binance",
            Transport::Http,
            "a1",
            "exchanges.binance.http/2".into(),
        );
        s.put(
            "binance",
            Transport::Websocket,
            "a1",
            "exchanges.binance.websocket/0".into(),
        );
        s.put(
            "kraken",
            Transport::Http,
            "a1",
            "exchanges.kraken.http/1".into(),
        );
        assert_eq!(
            s.get("binance", Transport::Http, "a1").as_deref(),
            Some("exchanges.binance.http/2")
        );
        assert_eq!(
            s.upstreams("binance", "a1"),
            ["exchanges.binance.http/2", "exchanges.binance.websocket/0"]
        );
    }
}
