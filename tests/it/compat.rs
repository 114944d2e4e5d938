//! cryptofeed compatibility (compat page §1, §3, §4, §5): one test per behaviour.

use std::time::Duration;

use proxypool::config::{
    Config, ConfigBuilder, ConfigError, ProxyEntry, RouteOrigin, Source, Transport, Upstream,
};

fn yaml(text: &str) -> Result<Config, ConfigError> {
    ConfigBuilder::new().yaml_str(text).build()
}

fn env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    ConfigBuilder::new().env_vars(vars.iter().copied()).build()
}

fn problems(r: Result<Config, ConfigError>) -> Vec<String> {
    match r {
        Ok(_) => panic!("expected the configuration to be rejected"),
        Err(e) => e.problems().iter().map(ToString::to_string).collect(),
    }
}

fn url_problem(url: &str) -> String {
    let r = yaml(&format!(
        "proxy: {{enabled: true, default: {{http: {{url: '{url}'}}}}}}"
    ));
    let p = problems(r);
    assert_eq!(p.len(), 1, "{p:?}");
    p[0].clone()
}

/// The proxy URL an upstream resolves to, as displayed (redacted).
fn proxy_of(c: &Config, exchange: Option<&str>, t: Transport) -> String {
    match c.route(exchange, t).upstream {
        Some(Upstream::Proxy(p)) => p.url.to_string(),
        other => panic!("expected a single proxy, got {other:?}"),
    }
}

fn timeout_of(c: &Config, exchange: Option<&str>, t: Transport) -> Duration {
    match c.route(exchange, t).upstream {
        Some(Upstream::Proxy(p)) => p.timeout,
        other => panic!("expected a single proxy, got {other:?}"),
    }
}

// §1 URL rules, in order, with cryptofeed's messages.

#[test]
fn url_rule_1_missing_scheme() {
    assert_eq!(
        url_problem("proxy.example.com:1080"),
        "default.http.url: Proxy URL must include scheme (http, https, socks4, socks4a, socks5, socks5h)"
    );
}

#[test]
fn url_rule_2_unsupported_scheme_names_it() {
    assert_eq!(
        url_problem("ftp://proxy.example.com:21"),
        "default.http.url: Unsupported proxy scheme: ftp"
    );
}

#[test]
fn url_rule_2_scheme_match_is_case_insensitive() {
    let c = yaml("proxy: {enabled: true, default: {http: 'SOCKS5://h:1080'}}").unwrap();
    assert_eq!(proxy_of(&c, None, Transport::Http), "socks5://h:1080");
}

#[test]
fn url_rule_3_missing_hostname() {
    assert_eq!(
        url_problem("socks5://:1080"),
        "default.http.url: Proxy URL must include hostname"
    );
}

#[test]
fn url_rule_4_missing_port_or_port_zero() {
    for u in ["socks5://h", "socks5://h:", "socks5://h:0"] {
        assert_eq!(
            url_problem(u),
            "default.http.url: Proxy URL must include port",
            "{u}"
        );
    }
}

#[test]
fn url_rule_4_port_above_65535_is_out_of_range() {
    assert!(url_problem("socks5://h:65536").ends_with("port out of range 1-65535"));
}

#[test]
fn url_rules_run_in_order() {
    // Each URL breaks several rules; the first in cryptofeed's order is reported.
    assert!(url_problem("ftp://:0").contains("Unsupported proxy scheme: ftp"));
    assert!(url_problem("socks5://:0").contains("must include hostname"));
    assert!(url_problem("noscheme:0").contains("must include scheme"));
}

#[test]
fn url_rule_5_userinfo_ipv6_and_path_are_accepted() {
    let c = yaml(
        "proxy: {enabled: true, default: {http: 'socks5://u%40x:p%3Aw@[::1]:1080/path?q=1', websocket: 'http://[2001:db8::1]:3128'}}",
    )
    .unwrap();
    assert_eq!(
        proxy_of(&c, None, Transport::Http),
        "socks5://***@[::1]:1080"
    );
    let Some(Upstream::Proxy(p)) = c.route(None, Transport::Http).upstream else {
        panic!()
    };
    let cred = p.url.credentials().unwrap();
    assert_eq!((cred.username(), cred.password()), ("u@x", "p:w"));
    assert_eq!(
        proxy_of(&c, None, Transport::Websocket),
        "http://[2001:db8::1]:3128"
    );
}

// §1 timeout bounds and coercions.

#[test]
fn timeout_defaults_to_30_seconds() {
    let c = yaml("proxy: {enabled: true, default: {http: 'socks5://h:1'}}").unwrap();
    assert_eq!(
        timeout_of(&c, None, Transport::Http),
        Duration::from_secs(30)
    );
}

#[test]
fn timeout_accepts_integer_string_and_integral_float() {
    for (v, secs) in [("'30'", 30), ("3.0", 3), ("1", 1), ("300", 300)] {
        let c = yaml(&format!(
            "proxy: {{enabled: true, default: {{http: {{url: 'socks5://h:1', timeout_seconds: {v}}}}}}}"
        ))
        .unwrap();
        assert_eq!(
            timeout_of(&c, None, Transport::Http),
            Duration::from_secs(secs),
            "{v}"
        );
    }
}

#[test]
fn timeout_rejects_fraction_zero_and_above_300() {
    for v in ["2.5", "0", "301", "'abc'"] {
        let p = problems(yaml(&format!(
            "proxy: {{enabled: true, default: {{http: {{url: 'socks5://h:1', timeout_seconds: {v}}}}}}}"
        )));
        assert_eq!(p.len(), 1, "{v}: {p:?}");
        assert!(
            p[0].starts_with("default.http.timeout_seconds: "),
            "{v}: {p:?}"
        );
    }
}

#[test]
fn enabled_accepts_every_cryptofeed_boolean_spelling() {
    for (v, want) in [
        ("true", true),
        ("'True'", true),
        ("'1'", true),
        ("1", true),
        ("'yes'", true),
        ("'ON'", true),
        ("'t'", true),
        ("'Y'", true),
        ("false", false),
        ("'0'", false),
        ("'No'", false),
        ("'off'", false),
        ("'F'", false),
        ("'n'", false),
    ] {
        let c = yaml(&format!("proxy: {{enabled: {v}}}")).unwrap();
        assert_eq!(c.enabled(), want, "{v}");
    }
    let p = problems(yaml("proxy: {enabled: 'maybe'}"));
    assert!(p[0].starts_with("enabled: must be a boolean"), "{p:?}");
}

// §3 environment variables.

#[test]
fn env_nests_with_double_underscore() {
    let c = env(&[
        ("CRYPTOFEED_PROXY_ENABLED", "true"),
        ("CRYPTOFEED_PROXY_DEFAULT__HTTP__URL", "socks5://h:1080"),
        ("CRYPTOFEED_PROXY_DEFAULT__HTTP__TIMEOUT_SECONDS", "12"),
        (
            "CRYPTOFEED_PROXY_EXCHANGES__BINANCE__WEBSOCKET__URL",
            "socks5h://w:1081",
        ),
    ])
    .unwrap();
    assert_eq!(
        timeout_of(&c, None, Transport::Http),
        Duration::from_secs(12)
    );
    assert_eq!(
        proxy_of(&c, Some("binance"), Transport::Websocket),
        "socks5h://w:1081"
    );
    assert_eq!(c.sources().enabled, Source::Env);
}

#[test]
fn env_names_are_case_insensitive_and_exchange_keys_lowercased() {
    let c = env(&[
        ("cryptofeed_proxy_Enabled", "yes"),
        (
            "Cryptofeed_Proxy_EXCHANGES__BINANCE_FUTURES__Http__Url",
            "socks5://h:1",
        ),
    ])
    .unwrap();
    assert!(c.enabled());
    assert!(
        c.exchanges().contains_key("binance_futures"),
        "{:?}",
        c.exchanges().keys()
    );
}

#[test]
fn env_json_node_sets_a_whole_pool() {
    let c = env(&[
        ("CRYPTOFEED_PROXY_ENABLED", "true"),
        (
            "CRYPTOFEED_PROXY_EXCHANGES__BINANCE__HTTP__POOL",
            r#"{"proxies":[{"url":"socks5://p1:1080"},{"url":"socks5://p2:1080","weight":2}],"strategy":"random"}"#,
        ),
    ])
    .unwrap();
    let Some(Upstream::Pool(p)) = c.route(Some("binance"), Transport::Http).upstream else {
        panic!("expected a pool")
    };
    assert_eq!(p.members.len(), 2);
    assert_eq!(p.members[1].weight, 2.0);
    assert_eq!(p.strategy.to_string(), "random");
}

#[test]
fn env_json_list_combines_with_a_sibling_variable() {
    let c = env(&[
        ("CRYPTOFEED_PROXY_ENABLED", "true"),
        (
            "CRYPTOFEED_PROXY_DEFAULT__HTTP__POOL__PROXIES",
            r#"[{"url":"socks5://p1:1080"},{"url":"socks5://p2:1080"}]"#,
        ),
        (
            "CRYPTOFEED_PROXY_DEFAULT__HTTP__POOL__STRATEGY",
            "least_connections",
        ),
    ])
    .unwrap();
    let Some(Upstream::Pool(p)) = c.route(None, Transport::Http).upstream else {
        panic!("expected a pool")
    };
    assert_eq!(p.members.len(), 2);
    assert_eq!(p.strategy.to_string(), "least_connections");
}

#[test]
fn env_index_form_builds_the_pool_list() {
    let c = env(&[
        ("CRYPTOFEED_PROXY_ENABLED", "true"),
        (
            "CRYPTOFEED_PROXY_DEFAULT__HTTP__POOL__PROXIES__1__URL",
            "socks5://p2:1080",
        ),
        (
            "CRYPTOFEED_PROXY_DEFAULT__HTTP__POOL__PROXIES__0__URL",
            "socks5://p1:1080",
        ),
        (
            "CRYPTOFEED_PROXY_DEFAULT__HTTP__POOL__PROXIES__1__WEIGHT",
            "3",
        ),
        (
            "CRYPTOFEED_PROXY_DEFAULT__HTTP__POOL__PROXIES__0__ENABLED",
            "false",
        ),
    ])
    .unwrap();
    let Some(Upstream::Pool(p)) = c.route(None, Transport::Http).upstream else {
        panic!("expected a pool")
    };
    let urls: Vec<String> = p.members.iter().map(|m| m.url.to_string()).collect();
    assert_eq!(urls, ["socks5://p1:1080", "socks5://p2:1080"]);
    assert!(!p.members[0].enabled);
    assert_eq!(p.members[1].weight, 3.0);
}

#[test]
fn env_unknown_nested_key_is_an_error_naming_the_variable() {
    let p = problems(env(&[("CRYPTOFEED_PROXY_DEFAULT__HTTP__TIMEOUT", "5")]));
    assert_eq!(p.len(), 1);
    assert!(
        p[0].starts_with("CRYPTOFEED_PROXY_DEFAULT__HTTP__TIMEOUT: unknown field `timeout`"),
        "{p:?}"
    );
}

#[test]
fn env_unknown_top_level_name_is_ignored_with_a_warning() {
    let c = env(&[
        ("CRYPTOFEED_PROXY_DEFAULT_HTTP_URL", "socks5://h:1"),
        ("CRYPTOFEED_PROXY_ENABLED", "true"),
    ])
    .unwrap();
    assert!(c.default_connection().is_none());
    assert_eq!(c.warnings().len(), 1);
    assert!(c.warnings()[0].starts_with("CRYPTOFEED_PROXY_DEFAULT_HTTP_URL: ignored"));
}

// §4 precedence: env > YAML > code, merged per top-level field.

const YAML_DISABLED: &str = "proxy: {enabled: false, default: {http: 'socks5://yaml:1080'}, exchanges: {binance: {http: 'socks5://yaml-binance:1080'}}}";

#[test]
fn precedence_env_beats_yaml_even_when_yaml_disables() {
    let c = ConfigBuilder::new()
        .yaml_str(YAML_DISABLED)
        .env_vars([("CRYPTOFEED_PROXY_ENABLED", "true")])
        .build()
        .unwrap();
    assert!(c.enabled());
    assert_eq!(proxy_of(&c, None, Transport::Http), "socks5://yaml:1080");
    assert_eq!(c.sources().enabled, Source::Env);
    assert_eq!(c.sources().default, Source::Yaml);
}

#[test]
fn precedence_yaml_is_used_when_env_is_empty() {
    let c = ConfigBuilder::new()
        .yaml_str("proxy: {enabled: true, default: {http: 'socks5://yaml:1080'}}")
        .env_vars([("PATH", "/usr/bin"), ("CRYPTOFEED_OTHER", "x")])
        .build()
        .unwrap();
    assert_eq!(proxy_of(&c, None, Transport::Http), "socks5://yaml:1080");
    assert_eq!(c.route(None, Transport::Http).source, Source::Yaml);
}

#[test]
fn precedence_code_is_the_fallback() {
    let c = ConfigBuilder::new()
        .enabled(true)
        .default_proxy(Transport::Http, ProxyEntry::url("socks5://code:1080"))
        .yaml_str("other_cryptofeed_key: 1")
        .build()
        .unwrap();
    assert_eq!(proxy_of(&c, None, Transport::Http), "socks5://code:1080");
    assert_eq!(c.route(None, Transport::Http).source, Source::Code);
}

#[test]
fn precedence_yaml_beats_code() {
    let c = ConfigBuilder::new()
        .enabled(true)
        .default_proxy(Transport::Http, ProxyEntry::url("socks5://code:1080"))
        .default_proxy(
            Transport::Websocket,
            ProxyEntry::url("socks5://code-ws:1080"),
        )
        .yaml_str("proxy: {default: {http: 'socks5://yaml:1080'}}")
        .build()
        .unwrap();
    // `default` is replaced whole: the code's websocket entry is gone.
    assert_eq!(proxy_of(&c, None, Transport::Http), "socks5://yaml:1080");
    assert!(c.route(None, Transport::Websocket).is_direct());
    // `enabled` was only set in code, and stays.
    assert_eq!(c.sources().enabled, Source::Code);
}

#[test]
fn precedence_exchanges_merge_per_key_and_replace_whole_entries() {
    let c = ConfigBuilder::new()
        .enabled(true)
        .exchange_proxy(
            "kraken",
            Transport::Http,
            ProxyEntry::url("socks5://code-kraken:1"),
        )
        .yaml_str(YAML_DISABLED)
        .env_vars([
            ("CRYPTOFEED_PROXY_ENABLED", "1"),
            (
                "CRYPTOFEED_PROXY_EXCHANGES__BINANCE__WEBSOCKET__URL",
                "socks5://env-ws:1",
            ),
        ])
        .build()
        .unwrap();
    assert_eq!(
        proxy_of(&c, Some("kraken"), Transport::Http),
        "socks5://code-kraken:1"
    );
    // env replaced binance's whole entry: its yaml http proxy is gone, so http falls
    // back to the default.
    assert_eq!(
        proxy_of(&c, Some("binance"), Transport::Websocket),
        "socks5://env-ws:1"
    );
    assert_eq!(
        proxy_of(&c, Some("binance"), Transport::Http),
        "socks5://yaml:1080"
    );
    assert_eq!(
        c.route(Some("binance"), Transport::Http).origin,
        RouteOrigin::Default
    );
}

// §4 resolution.

#[test]
fn whole_entry_fallback_takes_the_exchange_entry_whole() {
    let c = yaml(
        "proxy: {enabled: true, default: {http: {url: 'socks5://d:1', timeout_seconds: 5}}, exchanges: {binance: {http: {url: 'socks5://b:1'}}}}",
    )
    .unwrap();
    // The exchange's timeout is its own default (30), not the default entry's 5.
    assert_eq!(
        timeout_of(&c, Some("binance"), Transport::Http),
        Duration::from_secs(30)
    );
    assert_eq!(
        timeout_of(&c, Some("coinbase"), Transport::Http),
        Duration::from_secs(5)
    );
}

#[test]
fn missing_transport_falls_back_to_the_default_entry() {
    let c = yaml(
        "proxy: {enabled: true, default: {websocket: 'socks5://dws:1'}, exchanges: {binance: {http: 'socks5://b:1'}}}",
    )
    .unwrap();
    assert_eq!(
        proxy_of(&c, Some("binance"), Transport::Websocket),
        "socks5://dws:1"
    );
    assert!(c.route(Some("binance"), Transport::Websocket).origin == RouteOrigin::Default);
    assert!(c.route(None, Transport::Http).is_direct());
}

#[test]
fn exchange_names_match_case_insensitively() {
    let c = yaml("proxy: {enabled: true, exchanges: {Binance: {http: 'socks5://b:1'}}}").unwrap();
    for name in ["binance", "BINANCE", "BiNaNcE"] {
        assert_eq!(
            proxy_of(&c, Some(name), Transport::Http),
            "socks5://b:1",
            "{name}"
        );
    }
    let p = problems(yaml(
        "proxy: {exchanges: {binance: {http: 'socks5://a:1'}, BINANCE: {http: 'socks5://b:1'}}}",
    ));
    assert!(p[0].contains("case-insensitive"), "{p:?}");
}

#[test]
fn disabled_means_direct_for_everything() {
    let c = yaml(
        "proxy: {enabled: false, default: {http: 'socks5://d:1', websocket: 'socks5://d:2'}, exchanges: {binance: {http: 'socks5://b:1'}}}",
    )
    .unwrap();
    for ex in [None, Some("binance")] {
        for t in Transport::ALL {
            let r = c.route(ex, t);
            assert!(
                r.is_direct() && r.origin == RouteOrigin::Disabled,
                "{ex:?} {t}"
            );
        }
    }
    // And nothing at all is disabled too, as in cryptofeed.
    assert!(!yaml("proxy: {}").unwrap().enabled());
}

#[test]
fn null_exchange_override_falls_back_to_the_default() {
    let c =
        yaml("proxy: {enabled: true, default: {http: 'socks5://d:1'}, exchanges: {binance: null}}")
            .unwrap();
    assert_eq!(
        proxy_of(&c, Some("binance"), Transport::Http),
        "socks5://d:1"
    );
}

#[test]
fn direct_override_forces_a_direct_connection_for_one_exchange() {
    let c = yaml(
        "proxy: {enabled: true, default: {http: 'socks5://d:1', websocket: 'socks5://d:2'}, exchanges: {okx: direct, bybit: {websocket: direct}, kraken: {http: {direct: true}}}}",
    )
    .unwrap();
    for t in Transport::ALL {
        let r = c.route(Some("okx"), t);
        assert!(
            r.is_direct() && r.origin == RouteOrigin::Exchange,
            "okx {t}"
        );
    }
    assert!(c.route(Some("bybit"), Transport::Websocket).is_direct());
    assert!(!c.route(Some("bybit"), Transport::Http).is_direct());
    assert!(c.route(Some("kraken"), Transport::Http).is_direct());
    let p = problems(yaml(
        "proxy: {default: {http: {url: 'socks5://h:1', direct: true}}}",
    ));
    assert!(p[0].contains("cannot be combined"), "{p:?}");
}

#[test]
fn proxy_config_with_neither_url_nor_pool_means_direct() {
    let c = yaml("proxy: {enabled: true, default: {http: 'socks5://d:1'}, exchanges: {binance: {http: {timeout_seconds: 10}}}}")
        .unwrap();
    assert!(c.route(Some("binance"), Transport::Http).is_direct());
}

// §1 aliases and shorthand forms.

#[test]
fn rest_and_ws_are_aliases_of_http_and_websocket() {
    let c = yaml("proxy: {enabled: true, default: {rest: 'socks5://r:1', ws: 'socks5://w:1'}}")
        .unwrap();
    assert_eq!(proxy_of(&c, None, Transport::Http), "socks5://r:1");
    assert_eq!(proxy_of(&c, None, Transport::Websocket), "socks5://w:1");
}

#[test]
fn http_wins_over_its_rest_alias() {
    let c = yaml("proxy: {enabled: true, default: {http: 'socks5://h:1', rest: 'socks5://r:1'}}")
        .unwrap();
    assert_eq!(proxy_of(&c, None, Transport::Http), "socks5://h:1");
}

#[test]
fn bare_string_connection_proxies_is_http_only() {
    let c = yaml("proxy: {enabled: true, exchanges: {binance: 'socks5://b:1'}}").unwrap();
    assert_eq!(
        proxy_of(&c, Some("binance"), Transport::Http),
        "socks5://b:1"
    );
    assert!(c.route(Some("binance"), Transport::Websocket).is_direct());
}

#[test]
fn bare_string_proxy_config_is_its_url() {
    let c = yaml("proxy: {enabled: true, default: {websocket: 'socks5h://w:1'}}").unwrap();
    assert_eq!(
        timeout_of(&c, None, Transport::Websocket),
        Duration::from_secs(30)
    );
}

#[test]
fn root_shorthand_enables_the_default_for_both_transports() {
    let c = yaml("proxy: 'socks5://all:1080'").unwrap();
    assert!(c.enabled());
    assert_eq!(proxy_of(&c, None, Transport::Http), "socks5://all:1080");
    assert_eq!(
        proxy_of(&c, Some("anything"), Transport::Websocket),
        "socks5://all:1080"
    );
}

#[test]
fn pool_wins_over_url() {
    let c = yaml(
        "proxy: {enabled: true, default: {http: {url: 'socks5://u:1', pool: ['socks5://p:1']}}}",
    )
    .unwrap();
    assert!(matches!(
        c.route(None, Transport::Http).upstream,
        Some(Upstream::Pool(_))
    ));
}

#[test]
fn unknown_nested_yaml_key_is_an_error_with_line_and_column() {
    let p = problems(yaml(
        "proxy:\n  enabled: true\n  default:\n    http:\n      url: 'socks5://h:1'\n      timeout: 5\n",
    ));
    assert_eq!(p.len(), 1);
    assert!(p[0].contains("unknown field `timeout`"), "{p:?}");
    // serde-saphyr points at the key; the snippet quotes its line.
    assert!(
        p[0].contains("line 6, column 7") && p[0].contains("6 |       timeout: 5"),
        "{p:?}"
    );
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let p = problems(yaml(
        "proxy:
  enabled: perhaps
  default: {http: 'ftp://h:1', websocket: {url: 'socks5://h', timeout_seconds: 0}}
  exchanges:
    binance:
      http:
        pool: [{url: 'socks5://a:1'}, {url: 'socks5://b:1', weight: 20}, {url: 'ftp://c:1'}]
        strategy: fastest
",
    ));
    assert_eq!(
        p,
        [
            "enabled: must be a boolean (true/false, 1/0, yes/no, on/off, t/f, y/n)",
            "default.http.url: Unsupported proxy scheme: ftp",
            "default.websocket.timeout_seconds: must be between 1 and 300",
            "default.websocket.url: Proxy URL must include port",
            "exchanges.binance.http.strategy: unknown strategy \"fastest\" (expected round_robin, random, least_connections, or a path to a .wasm file)",
            "exchanges.binance.http.pool[1].weight: must be between 0.1 and 10",
            "exchanges.binance.http.pool[2].url: Unsupported proxy scheme: ftp",
        ]
    );
}
