//! The raw serde layer: what YAML, env and code can say, before any rule is checked.
//!
//! Unknown keys are denied here. Scalars stay loose ([`Scalar`]) so that the
//! validator, not serde, reports type and range problems, all of them at once.

// Parsed once per load, never on a hot path: boxing would only add noise.
#![allow(clippy::large_enum_variant)]

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// Any scalar: the validator decides what it may be.
#[derive(Clone, PartialEq)]
pub(crate) enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
}

/// A string as `Debug` shows it: any URL's userinfo redacted.
struct Redacted<'a>(&'a str);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&super::redact_text(self.0), f)
    }
}

impl fmt::Debug for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Bool(b) => f.debug_tuple("Bool").field(b).finish(),
            Scalar::Int(n) => f.debug_tuple("Int").field(n).finish(),
            Scalar::Float(x) => f.debug_tuple("Float").field(x).finish(),
            Scalar::Str(s) => f.debug_tuple("Str").field(&Redacted(s)).finish(),
        }
    }
}

/// `Debug` for the raw enums that are a bare string or a mapping.
macro_rules! shorthand_debug {
    ($($ty:ident => $map:ident),+) => {$(
        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $ty::Shorthand(s) => f.debug_tuple("Shorthand").field(&Redacted(s)).finish(),
                    $ty::$map(m) => f.debug_tuple(stringify!($map)).field(m).finish(),
                }
            }
        }
    )+};
}

shorthand_debug!(RawRoot => Settings, RawConnection => Map, RawProxy => Map, RawMember => Map);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar (string, number or boolean)")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(i64::try_from(v).map_or(Scalar::Float(v as f64), Scalar::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Str(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// The `proxy:` value: the root shorthand (a URL string) or the settings mapping.
#[derive(Clone)]
pub(crate) enum RawRoot {
    Shorthand(String),
    Settings(RawSettings),
}

/// One source's settings (code, YAML or env).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSettings {
    pub enabled: Option<Scalar>,
    pub default: Option<RawConnection>,
    /// `None` values are explicit nulls: they fall back to the default, as in cryptofeed.
    pub exchanges: Option<BTreeMap<String, Option<RawConnection>>>,
}

/// Connection-proxies: a bare string (http only, or `direct`) or the mapping.
#[derive(Clone)]
pub(crate) enum RawConnection {
    Shorthand(String),
    Map(RawConnectionMap),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConnectionMap {
    pub http: Option<RawProxy>,
    pub websocket: Option<RawProxy>,
    pub rest: Option<RawProxy>,
    pub ws: Option<RawProxy>,
}

/// Proxy-config: a bare string (a URL, or `direct`) or the mapping.
#[derive(Clone)]
pub(crate) enum RawProxy {
    Shorthand(String),
    Map(RawProxyMap),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxyMap {
    pub url: Option<Scalar>,
    pub timeout_seconds: Option<Scalar>,
    pub pool: Option<RawPool>,
    pub strategy: Option<Scalar>,
    pub health_check: Option<RawHealthCheck>,
    pub breaker: Option<RawBreaker>,
    pub failover: Option<RawFailover>,
    pub when_all_down: Option<Scalar>,
    pub bans: Option<RawBans>,
    pub direct: Option<Scalar>,
    /// Beside a list-shaped pool: whether the pool is on.
    pub enabled: Option<Scalar>,
}

/// A pool: the seed's list, or cryptofeed's `{proxies, strategy}` mapping.
#[derive(Clone, Debug)]
pub(crate) enum RawPool {
    List(Vec<RawMember>),
    Map(RawPoolMap),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPoolMap {
    pub enabled: Option<Scalar>,
    pub proxies: Option<Vec<RawMember>>,
    pub strategy: Option<Scalar>,
    pub health_check: Option<RawHealthCheck>,
    pub breaker: Option<RawBreaker>,
    pub failover: Option<RawFailover>,
    pub when_all_down: Option<Scalar>,
    pub bans: Option<RawBans>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBreaker {
    pub failures: Option<Scalar>,
    pub cooldown_ms: Option<Scalar>,
    pub max_cooldown_seconds: Option<Scalar>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFailover {
    pub max_attempts: Option<Scalar>,
    pub deadline_seconds: Option<Scalar>,
    pub hedge: Option<Scalar>,
    pub hedge_min_ms: Option<Scalar>,
    pub hedge_max_ms: Option<Scalar>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBans {
    pub rate_limited_seconds: Option<Scalar>,
    pub banned_seconds: Option<Scalar>,
}

/// A pool member: a bare URL string or the mapping.
#[derive(Clone)]
pub(crate) enum RawMember {
    Shorthand(String),
    Map(RawMemberMap),
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMemberMap {
    pub url: Option<Scalar>,
    pub weight: Option<Scalar>,
    pub enabled: Option<Scalar>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHealthCheck {
    pub enabled: Option<Scalar>,
    pub method: Option<Scalar>,
    pub url: Option<Scalar>,
    pub target: Option<Scalar>,
    pub interval_seconds: Option<Scalar>,
    pub interval: Option<Scalar>,
    pub timeout_seconds: Option<Scalar>,
    pub retry_count: Option<Scalar>,
    pub rise: Option<Scalar>,
    pub fall: Option<Scalar>,
    pub fast_interval_ms: Option<Scalar>,
    pub expected_status: Option<Vec<Scalar>>,
    pub verdict: Option<Scalar>,
}

/// A string in place of a mapping or list, decided by what the input holds.
///
/// Hand-written rather than `#[serde(untagged)]` so that errors inside the mapping
/// (an unknown key, say) keep their message and location.
macro_rules! string_or {
    ($ty:ident, $expecting:literal, map: $map:ty => $map_variant:ident) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V(PhantomData<$ty>);
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$ty, E> {
                        Ok($ty::Shorthand(v.to_owned()))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<$ty, A::Error> {
                        <$map>::deserialize(de::value::MapAccessDeserializer::new(m))
                            .map($ty::$map_variant)
                    }
                }
                d.deserialize_any(V(PhantomData))
            }
        }
    };
}

string_or!(RawRoot, "a proxy URL or a mapping", map: RawSettings => Settings);
string_or!(RawConnection, "a proxy URL, `direct`, or a mapping with http/websocket", map: RawConnectionMap => Map);
string_or!(RawProxy, "a proxy URL, `direct`, or a mapping with url/pool", map: RawProxyMap => Map);
string_or!(RawMember, "a proxy URL or a mapping with url/weight/enabled", map: RawMemberMap => Map);

impl<'de> Deserialize<'de> for RawPool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawPool;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of proxies or a mapping with proxies/strategy")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, s: A) -> Result<RawPool, A::Error> {
                Vec::<RawMember>::deserialize(de::value::SeqAccessDeserializer::new(s))
                    .map(RawPool::List)
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<RawPool, A::Error> {
                RawPoolMap::deserialize(de::value::MapAccessDeserializer::new(m)).map(RawPool::Map)
            }
        }
        d.deserialize_any(V)
    }
}

/// A whole YAML file: only `proxy:` is ours; cryptofeed's other keys are left alone.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct RawFile {
    pub proxy: Option<RawRoot>,
    /// proxypool's own section, beside `proxy:`.
    pub gateway: Option<super::gateway::RawGateway>,
}
