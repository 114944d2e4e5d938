//! Builds the broken test strategies (`tests/strategies/faulty`, one feature each)
//! and the README's example strategy (`examples/priority`) as WebAssembly components
//! into OUT_DIR.

use std::path::PathBuf;

use anyhow::Result;

/// The features of the `faulty` fixture: each is one way to misbehave, except
/// `fastest` (a latency-aware strategy) and the `verdict_*` health verdicts.
const FAULTS: [&str; 9] = [
    "trap",
    "spin",
    "grow",
    "out_of_range",
    "tried",
    "wasi_import",
    "fastest",
    "verdict_down",
    "verdict_trap",
];

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let fixture = manifest_dir.join("strategies/faulty");
    println!("cargo:rerun-if-changed={}", fixture.display());
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../wit").display()
    );
    // Its own target directory: the fixture is a workspace of its own.
    let target_dir = wasm_build::shared_target_dir(&out_dir).join("faulty");
    for fault in FAULTS {
        let built = wasm_build::cargo_build(&fixture, &target_dir, &["--features", fault])?;
        wasm_build::copy(
            &built.join("faulty.wasm"),
            &out_dir.join(format!("{fault}.wasm")),
        )?;
    }
    // The README's example strategy, built exactly as the README says.
    let example = manifest_dir.join("../examples/priority");
    println!("cargo:rerun-if-changed={}", example.display());
    let target_dir = wasm_build::shared_target_dir(&out_dir).join("priority");
    let built = wasm_build::cargo_build(&example, &target_dir, &[])?;
    wasm_build::copy(&built.join("priority.wasm"), &out_dir.join("priority.wasm"))?;
    Ok(())
}
