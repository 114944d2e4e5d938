//! Builds the reference strategies in `strategies/` as WebAssembly components, in a
//! target directory of their own, and leaves them in OUT_DIR for `include_bytes!`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const STRATEGIES: [&str; 3] = ["round_robin", "random", "least_connections"];
const TARGET: &str = "wasm32-unknown-unknown";

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

    check_target()?;
    // target/<profile>/build/proxypool-*/out → target/wasm-strategies, shared by profiles.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("wasm-strategies"))
        .unwrap_or_else(|| out_dir.join("wasm-strategies"));

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["build", "--release", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    for s in STRATEGIES {
        cmd.args(["-p", s]);
    }
    // The outer build's flags are for the host, not for wasm.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .context("running cargo for the strategy guests")?;
    if !status.success() {
        bail!("building the strategy components failed ({status})");
    }
    for s in STRATEGIES {
        let built = target_dir
            .join(TARGET)
            .join("release")
            .join(format!("{s}.wasm"));
        let dest = out_dir.join(format!("{s}.wasm"));
        std::fs::copy(&built, &dest)
            .with_context(|| format!("copying {} to {}", built.display(), dest.display()))?;
    }
    Ok(())
}

/// Plain cargo does not add the targets in rust-toolchain.toml; say how to.
fn check_target() -> Result<()> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .context("rustc --print sysroot")?;
    let sysroot = String::from_utf8(out.stdout)?;
    let lib = Path::new(sysroot.trim()).join("lib/rustlib").join(TARGET);
    if !lib.is_dir() {
        bail!(
            "the {TARGET} target is not installed: run `rustup toolchain install` in the \
             repository (it reads rust-toolchain.toml), then build again"
        );
    }
    Ok(())
}
