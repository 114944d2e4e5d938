//! `CRYPTOFEED_PROXY_*` variables: `__` nests, names are case-insensitive, a value
//! that starts with `{` or `[` is JSON, and numeric segments index lists.

use serde_json::{Map, Value};

use super::Problem;
use super::model::Source;
use super::raw::RawSettings;
use super::url::redact_text;

/// The prefix of every variable proxypool reads.
pub const ENV_PREFIX: &str = "CRYPTOFEED_PROXY_";

const TOP_LEVEL: [&str; 3] = ["enabled", "default", "exchanges"];

/// Reads the proxy settings out of `vars`; other variables are ignored.
pub(crate) fn from_vars<I, K, V>(
    vars: I,
    problems: &mut Vec<Problem>,
    warnings: &mut Vec<String>,
) -> Option<RawSettings>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str>,
    V: AsRef<str>,
{
    let mut entries: Vec<(String, Vec<String>, String)> = Vec::new();
    for (name, value) in vars {
        let name = name.as_ref();
        let Some(rest) = strip_prefix_ci(name, ENV_PREFIX) else {
            continue;
        };
        let segments: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if !TOP_LEVEL.contains(&segments[0].as_str()) {
            // cryptofeed ignores these silently; a typo deserves a word.
            warnings.push(format!(
                "{name}: ignored (expected {ENV_PREFIX}ENABLED, {ENV_PREFIX}DEFAULT__… or {ENV_PREFIX}EXCHANGES__…; nesting uses a double underscore)"
            ));
            continue;
        }
        if segments.iter().any(String::is_empty) {
            problems.push(env_problem(name, "empty name segment (stray `__`?)"));
            continue;
        }
        entries.push((name.to_owned(), segments, value.as_ref().to_owned()));
    }
    if entries.is_empty() {
        return None;
    }
    // Whole JSON nodes first, so that deeper variables refine them.
    entries.sort_by(|a, b| a.1.len().cmp(&b.1.len()).then_with(|| a.0.cmp(&b.0)));
    let mut root = Value::Object(Map::new());
    let before = problems.len();
    for (name, segments, value) in &entries {
        let trimmed = value.trim_start();
        let node = if trimmed.starts_with('{') || trimmed.starts_with('[') {
            match serde_json::from_str::<Value>(value) {
                Ok(v) => v,
                Err(e) => {
                    problems.push(env_problem(name, &format!("invalid JSON: {e}")));
                    continue;
                }
            }
        } else {
            Value::String(value.clone())
        };
        if let Err(msg) = insert(&mut root, segments, node) {
            problems.push(env_problem(name, &msg));
        }
    }
    if problems.len() > before {
        return None;
    }
    lists_from_indices(&mut root, "", problems);
    if problems.len() > before {
        return None;
    }
    match serde_path_to_error::deserialize::<_, RawSettings>(root) {
        Ok(s) => Some(s),
        Err(e) => {
            let var = var_name(&e.path().to_string());
            problems.push(env_problem(&var, &e.inner().to_string()));
            None
        }
    }
}

fn env_problem(var: &str, message: &str) -> Problem {
    Problem::new(Source::Env, var.to_owned(), redact_text(message))
}

fn strip_prefix_ci<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let head = name.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &name[prefix.len()..])
        .filter(|r| !r.is_empty())
}

/// Maps a serde path (`default.http.timeout`) back to a variable name.
fn var_name(path: &str) -> String {
    let mut s = ENV_PREFIX.to_owned();
    let parts: Vec<String> = path
        .split(['.', '[', ']'])
        .filter(|p| !p.is_empty() && *p != "?")
        .map(str::to_ascii_uppercase)
        .collect();
    s.push_str(&parts.join("__"));
    s
}

fn insert(node: &mut Value, segments: &[String], value: Value) -> Result<(), String> {
    let Some((first, rest)) = segments.split_first() else {
        merge(node, value);
        return Ok(());
    };
    match node {
        Value::Object(map) => {
            let child = map.entry(first.clone()).or_insert(Value::Null);
            if child.is_null() && !rest.is_empty() {
                *child = Value::Object(Map::new());
            }
            insert(child, rest, value)
        }
        Value::Array(items) => {
            let i: usize = first
                .parse()
                .map_err(|_| format!("`{first}` is not a list index"))?;
            if i > items.len() {
                return Err(format!("index {i} skips index {}", items.len()));
            }
            if i == items.len() {
                items.push(Value::Object(Map::new()));
            }
            insert(&mut items[i], rest, value)
        }
        _ => Err("conflicts with another variable that sets a plain value here".to_owned()),
    }
}

/// Lays `value` over `node`: objects merge key by key, anything else replaces.
fn merge(node: &mut Value, value: Value) {
    match (node, value) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Turns objects whose keys are all indices (`proxies__0__url`) into lists.
/// Exchange names are never indices, so the level under `exchanges` is left alone.
fn lists_from_indices(node: &mut Value, path: &str, problems: &mut Vec<Problem>) {
    let child_path = |k: &str| {
        if path.is_empty() {
            format!("{ENV_PREFIX}{}", k.to_ascii_uppercase())
        } else {
            format!("{path}__{}", k.to_ascii_uppercase())
        }
    };
    match node {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if path.is_empty() && k == "exchanges" {
                    if let Value::Object(ex) = v {
                        for (name, e) in ex.iter_mut() {
                            let p = format!("{}__{}", child_path(k), name.to_ascii_uppercase());
                            lists_from_indices(e, &p, problems);
                        }
                    }
                    continue;
                }
                lists_from_indices(v, &child_path(k), problems);
            }
            let all_indices =
                !map.is_empty() && map.keys().all(|k| k.bytes().all(|b| b.is_ascii_digit()));
            if all_indices && !path.is_empty() {
                let mut items: Vec<(usize, Value)> = std::mem::take(map)
                    .into_iter()
                    .map(|(k, v)| (k.parse().unwrap_or(usize::MAX), v))
                    .collect();
                items.sort_by_key(|(i, _)| *i);
                if items.iter().enumerate().any(|(pos, (i, _))| pos != *i) {
                    problems.push(Problem::new(
                        Source::Env,
                        format!("{path}__N"),
                        "list indices must run 0, 1, 2, … without gaps",
                    ));
                }
                *node = Value::Array(items.into_iter().map(|(_, v)| v).collect());
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter_mut().enumerate() {
                lists_from_indices(v, &child_path(&i.to_string()), problems);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn var_name_maps_serde_path_back() {
        assert_eq!(
            var_name("default.http.timeout"),
            "CRYPTOFEED_PROXY_DEFAULT__HTTP__TIMEOUT"
        );
    }

    #[test]
    fn index_gap_is_a_problem() {
        let mut p = Vec::new();
        let mut w = Vec::new();
        let vars = [(
            "CRYPTOFEED_PROXY_DEFAULT__HTTP__POOL__PROXIES__1__URL",
            "socks5://a:1",
        )];
        assert!(from_vars(vars, &mut p, &mut w).is_none());
        assert!(p[0].to_string().contains("without gaps"), "{p:?}");
    }
}
