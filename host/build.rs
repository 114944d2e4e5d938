//! Builds the reference strategies and the default health verdict in `strategies/`
//! as WebAssembly components and leaves them in OUT_DIR for `include_bytes!`.

use std::path::PathBuf;

use anyhow::{Context, Result};

const STRATEGIES: [&str; 4] = ["round_robin", "random", "least_connections", "threshold"];

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir.parent().context("workspace root")?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    for dir in ["strategies", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );

    let args: Vec<&str> = STRATEGIES.iter().flat_map(|s| ["-p", s]).collect();
    let built = wasm_build::cargo_build(root, &wasm_build::shared_target_dir(&out_dir), &args)?;
    for s in STRATEGIES {
        let name = format!("{s}.wasm");
        wasm_build::copy(&built.join(&name), &out_dir.join(&name))?;
    }
    Ok(())
}
