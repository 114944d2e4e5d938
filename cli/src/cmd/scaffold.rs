//! `proxypool strategy new NAME`: a strategy crate of its own, ready to build.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

/// The interface, as this binary speaks it.
const WIT: &str = include_str!("../../../wit/0.1.0/strategy.wit");

const TOOLCHAIN: &str = "\
# The toolchain and the target a strategy builds with; rustup installs both.
[toolchain]
channel = \"1.95.0\"
targets = [\"wasm32-unknown-unknown\"]
profile = \"minimal\"
";

/// The linker that ships with rustup turns the module into a component.
const CARGO_CONFIG: &str = "\
[target.wasm32-unknown-unknown]
linker = \"wasm-component-ld\"
";

fn cargo_toml(name: &str) -> String {
    format!(
        "\
# A proxypool strategy: a WebAssembly component of the world `selection`.
# A workspace of its own, so that it builds wherever it lives.
[workspace]

[package]
name = \"{name}\"
version = \"0.1.0\"
edition = \"2024\"
publish = false

[lib]
crate-type = [\"cdylib\"]

[dependencies]
wit-bindgen = {{ version = \"0.63\", default-features = false, features = [\"macros\", \"realloc\"] }}

[profile.release]
opt-level = \"s\"
panic = \"abort\"
"
    )
}

fn lib_rs(name: &str) -> String {
    format!(
        "\
//! {name}: the first eligible proxy not yet tried, so the others are backups in
//! order. Change `choose` (and `pick_batch`, which may return the next picks at once).
wit_bindgen::generate!({{ path: \"wit\", world: \"selection\" }});

use exports::proxypool::strategy::selector::{{Guest, PickContext}};
use std::cell::RefCell;

thread_local!(static IDS: RefCell<Vec<u32>> = RefCell::default());

/// The pick: the first of `ids` not in `tried`.
pub fn choose(ids: &[u32], tried: &mut [u32]) -> Option<u32> {{
    tried.sort_unstable(); // a connect may have tried thousands
    ids.iter().copied().find(|id| tried.binary_search(id).is_err())
}}

struct Strategy;

impl Guest for Strategy {{
    fn set_candidates(ids: Vec<u32>, _weights: Vec<u32>, _active: Vec<u32>) {{
        IDS.set(ids);
    }}
    fn pick(mut context: PickContext) -> Option<u32> {{
        IDS.with_borrow(|ids| choose(ids, &mut context.tried))
    }}
    fn pick_batch(max: u32) -> Vec<u32> {{
        IDS.with_borrow(|ids| ids.first().map(|&id| vec![id; max as usize]).unwrap_or_default())
    }}
}}

export!(Strategy);

#[cfg(test)]
mod tests {{
    #[test]
    fn the_first_untried_proxy_is_chosen() {{
        assert_eq!(super::choose(&[4, 7, 9], &mut []), Some(4));
        assert_eq!(super::choose(&[4, 7, 9], &mut [4]), Some(7));
        assert_eq!(super::choose(&[4, 7], &mut [7, 4]), None);
    }}
}}
"
    )
}

fn readme(name: &str) -> String {
    format!(
        "\
# {name}

A proxypool selection strategy.

    cargo test                                              # the native unit test
    cargo build --release --target wasm32-unknown-unknown   # the component
    proxypool strategy check target/wasm32-unknown-unknown/release/{name}.wasm

Point a pool at it with `strategy: /path/to/{name}.wasm`; replace the file (write
beside it, then rename over it) and the running gateway swaps it in.
"
    )
}

/// Writes the crate `name` under `dir` (`dir/name`), refusing to overwrite anything.
pub fn run(name: &str, dir: &Path) -> anyhow::Result<ExitCode> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        eprintln!(
            "proxypool: {name:?} is not a snake_case name (a-z, 0-9 and _, starting with a letter); a strategy has one name everywhere: directory, package, file and YAML value"
        );
        return Ok(ExitCode::from(crate::EXIT_CONFIG));
    }
    let root = dir.join(name);
    if root.exists() {
        eprintln!("proxypool: {} exists; nothing written", root.display());
        return Ok(ExitCode::from(crate::EXIT_CONFIG));
    }
    let files = [
        ("Cargo.toml", cargo_toml(name)),
        ("rust-toolchain.toml", TOOLCHAIN.to_owned()),
        (".cargo/config.toml", CARGO_CONFIG.to_owned()),
        ("wit/strategy.wit", WIT.to_owned()),
        ("src/lib.rs", lib_rs(name)),
        ("README.md", readme(name)),
    ];
    for (path, text) in files {
        let path = root.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!("created {}", root.display());
    println!(
        "build it: (cd {} && cargo build --release --target wasm32-unknown-unknown)",
        root.display()
    );
    println!(
        "check it: proxypool strategy check {}/target/wasm32-unknown-unknown/release/{name}.wasm",
        root.display()
    );
    Ok(ExitCode::SUCCESS)
}
