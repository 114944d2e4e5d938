//! Configuration: cryptofeed's proxy schema, extended for pools.
//!
//! Three sources, merged with precedence env > YAML > code ([`ConfigBuilder`]):
//! the programmatic builder, the YAML `proxy:` block (read with serde-saphyr), and
//! `CRYPTOFEED_PROXY_*` variables. Raw input is parsed first (unknown keys denied), then validated
//! into types that cannot hold a bad value ([`Config`]); every problem is reported at
//! once, each with its path. This layer knows nothing about sockets.

mod env;
mod gateway;
mod health_check;
mod model;
mod ping;
mod raw;
mod route_path;
mod url;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use env::ENV_PREFIX;
pub use gateway::{
    AdminToken, ClientAuth, DEFAULT_ADMIN, DEFAULT_DRAIN, DEFAULT_HANDSHAKE_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT, DEFAULT_LISTEN, DEFAULT_MAX_CONNECTIONS, DEFAULT_SILENT_TUNNEL, Gateway,
    HostPattern, Listen, ListenTransport, exposed,
};
pub use model::*;
pub use route_path::{RoutePath, UpstreamRef};
pub use url::{
    Credentials, Endpoint, ProxyUrl, REDACTED, SUPPORTED_SCHEMES, Scheme, UrlError, redact_text,
};

use raw::{RawConnection, RawConnectionMap, RawFile, RawMember, RawPool, RawProxy, RawProxyMap};
use raw::{RawPoolMap, RawSettings, Scalar};

/// One thing wrong with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Which source the bad value came from.
    pub source: Source,
    /// Where: `exchanges.binance.http.pool[2].url`, a variable name, or a file.
    pub path: String,
    /// What is wrong, never with a credential in it.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(source: Source, path: String, message: impl Into<String>) -> Self {
        Problem {
            source,
            path,
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// One or more problems, all of them.
    #[error("{}", display_problems(problems))]
    Invalid {
        /// Every problem found, in the order found.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The problems, if this is a validation failure.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid { problems } => problems,
            ConfigError::Read { .. } => &[],
        }
    }
}

fn display_problems(problems: &[Problem]) -> String {
    let mut s = format!(
        "invalid proxy configuration ({} problem{}):",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        s.push_str("\n  ");
        s.push_str(&p.to_string());
    }
    s
}

/// A proxy-config built in code: one proxy, a pool, or direct.
#[derive(Clone, Debug)]
pub struct ProxyEntry(RawProxy);

impl ProxyEntry {
    /// One proxy; the URL is checked by [`ConfigBuilder::build`].
    pub fn url(url: impl Into<String>) -> Self {
        ProxyEntry(RawProxy::Map(RawProxyMap {
            url: Some(Scalar::Str(url.into())),
            ..Default::default()
        }))
    }

    /// A pool of proxies (round_robin unless [`ProxyEntry::strategy`] says otherwise).
    pub fn pool<I, S>(urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let members = urls
            .into_iter()
            .map(|u| RawMember::Shorthand(u.into()))
            .collect();
        ProxyEntry(RawProxy::Map(RawProxyMap {
            pool: Some(RawPool::Map(RawPoolMap {
                proxies: Some(members),
                ..Default::default()
            })),
            ..Default::default()
        }))
    }

    /// A forced direct connection.
    pub fn direct() -> Self {
        ProxyEntry(RawProxy::Shorthand(validate::DIRECT.to_owned()))
    }

    /// Sets `timeout_seconds`.
    pub fn timeout_seconds(mut self, seconds: u64) -> Self {
        self.map().timeout_seconds = Some(Scalar::Int(seconds as i64));
        self
    }

    /// Sets the pool's strategy (a built-in name or a `.wasm` path).
    pub fn strategy(mut self, strategy: impl Into<String>) -> Self {
        self.map().strategy = Some(Scalar::Str(strategy.into()));
        self
    }

    fn map(&mut self) -> &mut RawProxyMap {
        if let RawProxy::Shorthand(s) = &self.0 {
            self.0 = RawProxy::Map(RawProxyMap {
                url: Some(Scalar::Str(s.clone())),
                ..Default::default()
            });
        }
        match &mut self.0 {
            RawProxy::Map(m) => m,
            RawProxy::Shorthand(_) => unreachable!("converted above"),
        }
    }
}

/// Builds a [`Config`] from code, YAML and env, with precedence env > YAML > code.
///
/// ```
/// use proxypool::config::{ConfigBuilder, ProxyEntry, Transport};
/// let config = ConfigBuilder::new()
///     .enabled(true)
///     .default_proxy(Transport::Http, ProxyEntry::url("socks5://127.0.0.1:1080"))
///     .yaml_str("proxy: {exchanges: {binance: {websocket: 'socks5h://10.0.0.1:1080'}}}")
///     .env_vars([("CRYPTOFEED_PROXY_DEFAULT__HTTP__TIMEOUT_SECONDS", "10")])
///     .build()
///     .unwrap();
/// assert!(!config.route(Some("BINANCE"), Transport::Websocket).is_direct());
/// ```
#[derive(Default)]
pub struct ConfigBuilder {
    code: RawSettings,
    yaml: Option<Result<Option<RawSettings>, Problem>>,
    gateway: Option<gateway::RawGateway>,
    env: Vec<(String, String)>,
    read_error: Option<ConfigError>,
}

impl fmt::Debug for ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may carry credentials: the code layer redacts them itself, the
        // environment is shown by variable name only.
        let env: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ConfigBuilder")
            .field("code", &self.code)
            .field("yaml", &self.yaml)
            .field("env", &env)
            .field("read_error", &self.read_error)
            .finish()
    }
}

impl ConfigBuilder {
    /// An empty builder: proxying disabled, nothing set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `enabled` in code.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.code.enabled = Some(Scalar::Bool(enabled));
        self
    }

    /// Sets the default entry's upstream for `transport` in code.
    pub fn default_proxy(mut self, transport: Transport, entry: ProxyEntry) -> Self {
        let conn = self
            .code
            .default
            .get_or_insert_with(|| RawConnection::Map(RawConnectionMap::default()));
        set_transport(conn, transport, entry);
        self
    }

    /// Sets one exchange's upstream for `transport` in code.
    pub fn exchange_proxy(
        mut self,
        exchange: impl Into<String>,
        transport: Transport,
        entry: ProxyEntry,
    ) -> Self {
        let conn = self
            .code
            .exchanges
            .get_or_insert_with(Default::default)
            .entry(exchange.into())
            .or_insert(None)
            .get_or_insert_with(|| RawConnection::Map(RawConnectionMap::default()));
        set_transport(conn, transport, entry);
        self
    }

    /// Uses the `proxy:` block of a YAML document (other top-level keys are ignored:
    /// they belong to the rest of a cryptofeed config).
    pub fn yaml_str(mut self, yaml: &str) -> Self {
        self.set_yaml(parse_yaml(yaml, "yaml"));
        self
    }

    fn set_yaml(
        &mut self,
        parsed: Result<(Option<RawSettings>, Option<gateway::RawGateway>), Problem>,
    ) {
        match parsed {
            Ok((proxy, gateway)) => {
                self.yaml = Some(Ok(proxy));
                self.gateway = gateway;
            }
            Err(p) => self.yaml = Some(Err(p)),
        }
    }

    /// Reads a YAML file, as [`ConfigBuilder::yaml_str`].
    pub fn yaml_file(mut self, path: impl AsRef<Path>) -> Self {
        use std::io::Read as _;
        let path = path.as_ref();
        // Read one byte past the limit, so that parsing can say the file is too large.
        let read = std::fs::File::open(path).and_then(|f| {
            let mut text = String::new();
            f.take(MAX_YAML_BYTES as u64 + 1)
                .read_to_string(&mut text)?;
            Ok(text)
        });
        match read {
            Ok(text) => self.set_yaml(parse_yaml(&text, &path.display().to_string())),
            Err(source) => {
                self.read_error = Some(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        self
    }

    /// Uses these variables as the environment (only `CRYPTOFEED_PROXY_*` are read).
    pub fn env_vars<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        self.env = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        self
    }

    /// Uses the process environment.
    pub fn process_env(self) -> Self {
        self.env_vars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// Merges and validates everything, reporting every problem at once.
    pub fn build(self) -> Result<Config, ConfigError> {
        if let Some(e) = self.read_error {
            return Err(e);
        }
        let mut problems = Vec::new();
        let mut warnings = Vec::new();
        let mut layers = vec![(Source::Code, self.code)];
        match self.yaml {
            Some(Ok(Some(y))) => layers.push((Source::Yaml, y)),
            Some(Err(p)) => problems.push(p),
            Some(Ok(None)) | None => {}
        }
        if let Some(e) = env::from_vars(self.env, &mut problems, &mut warnings) {
            layers.push((Source::Env, e));
        }
        let merged = validate::merge(layers, &mut problems);
        let mut config = validate::validate(merged, &mut problems);
        config.gateway = validate::Checker {
            problems: &mut problems,
            source: Source::Yaml,
            unset_policies: Vec::new(),
        }
        .gateway(self.gateway);
        if !problems.is_empty() {
            return Err(ConfigError::Invalid { problems });
        }
        for (path, pool) in config.pools() {
            if pool.members.iter().all(|m| !m.enabled) {
                warnings.push(format!("{path}: every member is disabled"));
            }
        }
        config.warnings = warnings;
        Ok(config)
    }
}

fn set_transport(conn: &mut RawConnection, transport: Transport, entry: ProxyEntry) {
    if let RawConnection::Shorthand(s) = conn {
        *conn = RawConnection::Map(RawConnectionMap {
            http: Some(RawProxy::Shorthand(std::mem::take(s))),
            ..Default::default()
        });
    }
    if let RawConnection::Map(m) = conn {
        match transport {
            Transport::Http => m.http = Some(entry.0),
            Transport::Websocket => m.websocket = Some(entry.0),
        }
    }
}

/// The largest configuration file read: far above any real pool list, far below
/// what would hurt to hold.
pub const MAX_YAML_BYTES: usize = 16 << 20;

/// How much of the offending line a YAML error shows, in characters.
const SNIPPET_CHARS: usize = 80;

/// The `proxy:` and `gateway:` sections of a file.
type Sections = (Option<RawSettings>, Option<gateway::RawGateway>);

fn parse_yaml(text: &str, origin: &str) -> Result<Sections, Problem> {
    let problem = |message: String| Problem::new(Source::Yaml, origin.to_owned(), message);
    if text.len() > MAX_YAML_BYTES {
        return Err(problem(format!(
            "larger than {} MiB: not a configuration file",
            MAX_YAML_BYTES >> 20
        )));
    }
    // One document, shallow, few aliases: a config file has no use for more, and the
    // limits stop a hostile one before it costs memory or time.
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: 1,
            max_depth: 64,
            max_aliases: 1_000,
            max_anchors: 1_000,
            max_events: 2_000_000,
        },
    };
    match serde_saphyr::from_str_with_options::<Option<RawFile>>(text, options) {
        Ok(None) => Ok((None, None)),
        Ok(Some(f)) => Ok((f.proxy.map(validate::root_to_settings), f.gateway)),
        Err(e) => Err(problem(yaml_message(&e, text))),
    }
}

/// The parser's message without its own snippet, and a snippet of ours: the whole
/// line is redacted before it is cropped, so no crop can cut a credential loose from
/// the `scheme://` and `@` that mark it.
fn yaml_message(e: &serde_saphyr::Error, text: &str) -> String {
    let plain = e.render_with_options(serde_saphyr::render_options! {
        snippets: serde_saphyr::SnippetMode::Off,
    });
    let mut message = redact_text(&plain);
    // The parser may quote a scalar it choked on: no secret key's value survives.
    for secret in text.lines().filter_map(secret_value) {
        message = message.replace(secret, REDACTED);
    }
    let Some(loc) = e.location() else {
        return message;
    };
    let line_no = loc.line() as usize;
    let Some(line) = line_no.checked_sub(1).and_then(|i| text.lines().nth(i)) else {
        return message;
    };
    let column = (loc.column() as usize).saturating_sub(1);
    let masked;
    let line = if in_gateway_section(text, line_no - 1) {
        // The parser quotes what it did not expect (`unknown field \`…\``): in a
        // broken line that may be a piece of a password.
        message = mask_quoted(&message, text);
        masked = mask_values(line);
        masked.as_str()
    } else {
        line
    };
    let (shown, caret) = snippet(line, column);
    message.push_str(&format!("\n  {line_no:>4} | {shown}\n       | {caret}^"));
    message
}

/// Whether line `index` (from 0) of `text` may hold a `gateway:` value: from the
/// `gateway:` key on, up to a top-level `proxy:` (a line break in a broken file can
/// make any piece of a password look like a top-level key of its own).
fn in_gateway_section(text: &str, index: usize) -> bool {
    let mut inside = false;
    for (i, line) in text.lines().enumerate() {
        if line.starts_with("gateway:") || line.starts_with("\"gateway\":") {
            inside = true;
        } else if line.starts_with("proxy:") || line.starts_with("\"proxy\":") {
            inside = false;
        }
        if i == index {
            return inside;
        }
    }
    false
}

/// `message` with whatever stands between backticks or double quotes masked, but
/// for a key that begins a line of `text` (`bogus:` is a typo worth naming).
fn mask_quoted(message: &str, text: &str) -> String {
    let is_key = |span: &str| {
        !span.is_empty()
            && span.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && text.lines().any(|l| {
                let l = l.trim_start();
                let l = l.strip_prefix("- ").unwrap_or(l);
                l.strip_prefix(span)
                    .is_some_and(|rest| rest.starts_with(':'))
            })
    };
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(['`', '"']) {
        let quote = rest[at..].chars().next().unwrap_or('`');
        out.push_str(&rest[..=at]);
        let after = &rest[at + 1..];
        let Some(end) = after.find(quote) else {
            out.push_str(REDACTED);
            return out;
        };
        let span = &after[..end];
        out.push_str(if is_key(span) { span } else { REDACTED });
        out.push(quote);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// A `gateway:` line as a snippet shows it: its key, and `***` for everything else,
/// so that no value (a password broken over lines, a key a typo made unknown)
/// can show.
fn mask_values(line: &str) -> String {
    let indent = line.len() - line.trim_start().len();
    let rest = &line[indent..];
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    let key_len = rest
        .find(':')
        .filter(|&i| {
            rest[..i]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        })
        .map_or(0, |i| i + 1);
    let kept = line.len() - rest.len() + key_len;
    if kept == line.len() {
        return line.to_owned();
    }
    format!("{} {REDACTED}", &line[..kept])
}

/// Keys whose values are secrets wherever they stand (`gateway.listen[].auth.password`,
/// `gateway.admin_token`, and any look-alike a typo makes).
const SECRET_KEYS: [&str; 4] = ["password", "token", "secret", "passwd"];

/// The byte after the `:` of a secret key on `line` (`password: x`, `"admin_token": x`,
/// `{password: x}`), if it holds one.
fn secret_value_start(line: &str) -> Option<usize> {
    let lower = line.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    for key in SECRET_KEYS {
        let mut from = 0;
        while let Some(found) = lower[from..].find(key) {
            let end = from + found + key.len();
            from = end;
            // Only the end of a key counts: `admin_token`, `"password"`, not `tokens`.
            let mut i = end;
            while i < bytes.len() && matches!(bytes[i], b'"' | b'\'' | b' ' | b'\t') {
                i += 1;
            }
            if i < bytes.len() && bytes[i] == b':' {
                return Some(i + 1);
            }
        }
    }
    None
}

/// A secret key's value on `line`, quotes and flow punctuation trimmed, if it is
/// long enough to be told from ordinary text.
fn secret_value(line: &str) -> Option<&str> {
    let at = secret_value_start(line)?;
    let value = line[at..]
        .trim()
        .trim_end_matches([',', '}', ']'])
        .trim()
        .trim_matches(['"', '\'']);
    (value.chars().count() >= 4).then_some(value)
}

/// A redacted crop of `line` of at most [`SNIPPET_CHARS`] characters around the
/// character `column`, and the padding that puts a caret under it.
fn snippet(line: &str, column: usize) -> (String, String) {
    // A secret key's value goes whole, whatever it looks like.
    let masked;
    let line = match secret_value_start(line) {
        Some(at) => {
            masked = format!("{} {REDACTED}", &line[..at]);
            masked.as_str()
        }
        None => line,
    };
    // Redact first, then find the column in the redacted text.
    let ranges = url::userinfo_ranges_in(line, true);
    let col_byte = line
        .char_indices()
        .nth(column)
        .map_or(line.len(), |(b, _)| b);
    let mut redacted = String::with_capacity(line.len());
    let mut at = None;
    let mut last = 0;
    for r in &ranges {
        if at.is_none() && col_byte < r.start {
            at = Some(redacted.len() + (col_byte - last));
        }
        redacted.push_str(&line[last..r.start]);
        if at.is_none() && col_byte < r.end {
            at = Some(redacted.len());
        }
        redacted.push_str(REDACTED);
        last = r.end;
    }
    if at.is_none() {
        at = Some(redacted.len() + col_byte.saturating_sub(last));
    }
    redacted.push_str(&line[last..]);
    let at_byte = at.unwrap_or(0).min(redacted.len());
    let chars: Vec<char> = redacted.chars().collect();
    let col = redacted[..at_byte].chars().count();
    let start = col.saturating_sub(SNIPPET_CHARS / 2);
    let end = (start + SNIPPET_CHARS).min(chars.len());
    let start = end.saturating_sub(SNIPPET_CHARS).min(start);
    let mut shown: String = chars[start..end]
        .iter()
        .map(|&c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut pad = col - start;
    if start > 0 {
        shown.insert(0, '…');
        pad += 1;
    }
    if end < chars.len() {
        shown.push('…');
    }
    (shown, " ".repeat(pad))
}

impl Config {
    /// The `gateway:` section (defaults when the file has none).
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// What `proxypool validate` prints: whether proxying is on, then every exchange ×
    /// transport with the source of its value and its route, credentials redacted.
    pub fn route_table(&self) -> String {
        let config = self;
        let mut rows = vec![[
            "EXCHANGE".to_owned(),
            "TRANSPORT".to_owned(),
            "SOURCE".to_owned(),
            "ROUTE".to_owned(),
        ]];
        let names =
            std::iter::once(None).chain(config.exchanges().keys().map(|k| Some(k.as_str())));
        for name in names {
            for t in Transport::ALL {
                let r = config.route(name, t);
                let via = match r.origin {
                    RouteOrigin::Disabled => " (proxy disabled)",
                    RouteOrigin::Default if name.is_some() => " (from default)",
                    RouteOrigin::Unset => " (nothing configured)",
                    _ => "",
                };
                let route = describe(r.upstream);
                let source = if r.source == Source::Default && r.origin == RouteOrigin::Disabled {
                    "default".to_owned()
                } else {
                    r.source.to_string()
                };
                rows.push([
                    name.unwrap_or("(default)").to_owned(),
                    t.to_string(),
                    source,
                    route + via,
                ]);
            }
        }
        let widths: Vec<usize> = (0..4)
            .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
            .collect();
        let mut out = format!(
            "configuration OK: proxy {} (enabled from {})\n",
            if config.enabled() {
                "enabled"
            } else {
                "disabled"
            },
            config.sources().enabled
        );
        for r in rows {
            let line = format!(
                "{:w0$}  {:w1$}  {:w2$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Loads the way the CLI does: the YAML file if given, then the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut b = ConfigBuilder::new();
        if let Some(p) = path {
            b = b.yaml_file(p);
        }
        b.process_env().build()
    }

    /// Every pool, with its path (`exchanges.binance.http`).
    pub fn pools(&self) -> impl Iterator<Item = (String, &PoolSpec)> {
        self.pools_where(false)
    }

    /// Every pool switched off (`enabled: false`), with its path.
    pub fn switched_off_pools(&self) -> impl Iterator<Item = (String, &PoolSpec)> {
        self.pools_where(true)
    }

    fn pools_where(&self, off: bool) -> impl Iterator<Item = (String, &PoolSpec)> {
        let default = self.default.iter().map(|c| (None, c));
        let exchanges = self.exchanges.iter().map(|(k, c)| (Some(k.as_str()), c));
        default.chain(exchanges).flat_map(move |(exchange, c)| {
            Transport::ALL.into_iter().filter_map(move |t| {
                let path = || RoutePath::new(exchange, t).to_string();
                match c.configured(t) {
                    Some(Upstream::Pool(p)) if !off => Some((path(), &**p)),
                    Some(Upstream::SwitchedOff { pool, .. }) if off => Some((path(), &**pool)),
                    _ => None,
                }
            })
        })
    }
}

/// One route's upstream as the route table shows it, credentials redacted.
fn describe(upstream: Option<&Upstream>) -> String {
    match upstream {
        // `route` never gives a switched-off pool, only what it does instead.
        None | Some(Upstream::Direct) | Some(Upstream::SwitchedOff { .. }) => "direct".to_owned(),
        Some(Upstream::Proxy(p)) => format!("proxy {} timeout={}s", p.url, p.timeout.as_secs()),
        Some(Upstream::Pool(p)) => {
            let members: Vec<String> = p
                .members
                .iter()
                .map(|m| {
                    let mut s = m.url.to_string();
                    if m.weight != 1.0 {
                        s.push_str(&format!(" w={}", m.weight));
                    }
                    if !m.enabled {
                        s.push_str(" (disabled)");
                    }
                    s
                })
                .collect();
            let health = if p.health_check.enabled {
                p.health_check.method.as_str()
            } else {
                "off"
            };
            format!(
                "pool {} [{}] timeout={}s health={health}",
                p.strategy,
                members.join(", "),
                p.timeout.as_secs(),
            )
        }
    }
}
