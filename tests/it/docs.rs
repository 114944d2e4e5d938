//! The documentation's configuration snippets load: every ```yaml block of
//! docs/migration.md builds, and every ```sh block of `CRYPTOFEED_PROXY_*=…` lines
//! builds as an environment.

use proxypool::ConfigBuilder;

/// The fenced blocks of `lang` in `text`.
fn blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    text.split(&fence)
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect()
}

/// `NAME=value` (single quotes around the value allowed) from each line.
fn env_lines(block: &str) -> Vec<(String, String)> {
    block
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export ").or(Some(l.trim())))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn every_migration_snippet_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/migration.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let yaml = blocks(&text, "yaml");
    assert!(yaml.len() >= 5, "the guide's YAML went missing");
    for block in yaml {
        ConfigBuilder::new()
            .yaml_str(block)
            .build()
            .unwrap_or_else(|e| panic!("{e}\n{block}"));
    }
    let envs = blocks(&text, "sh");
    assert!(envs.len() >= 4, "the guide's env snippets went missing");
    for block in envs {
        let vars = env_lines(block);
        assert!(!vars.is_empty(), "{block}");
        let config = ConfigBuilder::new()
            .env_vars(vars)
            .build()
            .unwrap_or_else(|e| panic!("{e}\n{block}"));
        assert!(config.enabled(), "{block}");
    }
}
