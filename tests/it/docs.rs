//! The documentation holds together: every ```yaml block of the README and of
//! each `docs/` page builds, and every ```sh block of `CRYPTOFEED_PROXY_*=…` lines
//! builds as an environment; every page the README links exists; the README stays
//! an overview.

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

fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The README and every page under docs/, with their paths.
fn pages() -> Vec<(std::path::PathBuf, String)> {
    let mut paths = vec![root().join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    paths.extend(docs);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

#[test]
fn every_yaml_and_environment_snippet_of_the_docs_loads() {
    let (mut yaml_blocks, mut env_blocks) = (0, 0);
    for (path, text) in pages() {
        for block in blocks(&text, "yaml") {
            yaml_blocks += 1;
            ConfigBuilder::new()
                .yaml_str(block)
                .build()
                .unwrap_or_else(|e| panic!("{}: {e}\n{block}", path.display()));
        }
        for block in blocks(&text, "sh") {
            let is_env = |l: &str| l.trim_start().starts_with("CRYPTOFEED_PROXY_");
            let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
            if lines.is_empty() || !lines.iter().all(|l| is_env(l)) {
                continue;
            }
            env_blocks += 1;
            let config = ConfigBuilder::new()
                .env_vars(env_lines(block))
                .build()
                .unwrap_or_else(|e| panic!("{}: {e}\n{block}", path.display()));
            assert!(config.enabled(), "{}: {block}", path.display());
        }
    }
    assert!(yaml_blocks >= 6 && env_blocks >= 4, "snippets went missing");
}

#[test]
fn the_readme_is_an_overview_whose_links_exist() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.lines().count() < 200,
        "the reference belongs in docs/"
    );
    let mut linked = 0;
    for (_, rest) in readme
        .match_indices("](")
        .map(|(i, _)| readme.split_at(i + 2))
    {
        let target = rest.split(')').next().unwrap();
        if target.starts_with("http") || target.starts_with('#') {
            continue;
        }
        linked += 1;
        assert!(
            root().join(target).exists(),
            "README links {target}, which is missing"
        );
    }
    assert!(linked >= 7, "the README links its docs pages");
    // And each page's own links.
    for (path, text) in pages() {
        let dir = path.parent().unwrap().to_path_buf();
        for (_, rest) in text.match_indices("](").map(|(i, _)| text.split_at(i + 2)) {
            let target = rest.split([')', '#']).next().unwrap();
            if target.is_empty() || target.starts_with("http") {
                continue;
            }
            assert!(
                dir.join(target).exists(),
                "{} links {target}, which is missing",
                path.display()
            );
        }
    }
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

/// The `/metrics` table of docs/gateway.md and the library's table of families agree:
/// every family has one row, with its labels, and every name in the table exists.
#[test]
fn the_metrics_table_lists_every_family_with_its_labels() {
    use proxypool::metrics::FAMILIES;
    let page = std::fs::read_to_string(root().join("docs/gateway.md")).unwrap();
    let mut rows = std::collections::HashMap::new();
    let series = |l: &&str| l.starts_with("| `proxypool_") || l.starts_with("| `process_");
    for line in page.lines().filter(series) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let labels: Vec<&str> = cells[2].split(", ").filter(|l| !l.is_empty()).collect();
        for name in cells[1].split('`').skip(1).step_by(2) {
            assert!(
                rows.insert(name.to_owned(), labels.clone()).is_none(),
                "{name} has two rows"
            );
        }
    }
    for f in FAMILIES {
        let labels = rows
            .remove(f.name)
            .unwrap_or_else(|| panic!("{} is not in docs/gateway.md", f.name));
        assert_eq!(labels, f.labels, "{}'s labels", f.name);
    }
    assert!(
        rows.is_empty(),
        "the docs name series nobody exports: {rows:?}"
    );
}
