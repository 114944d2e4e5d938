//! Builds guest crates as WebAssembly components from a build script, in a target
//! directory of their own, with the toolchain's `wasm-component-ld` as the linker
//! (set in `.cargo/config.toml`), so no wasm-tools are needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The guests' target.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// `target/wasm-components`, shared by every profile, derived from a build script's
/// OUT_DIR (`target/<profile>/build/<pkg>-<hash>/out`).
pub fn shared_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .nth(4)
        .map(|t| t.join("wasm-components"))
        .unwrap_or_else(|| out_dir.join("wasm-components"))
}

/// Runs `cargo build --release --target wasm32-unknown-unknown <args>` in `dir` and
/// returns the release output directory. Adds the target with rustup if it is missing.
pub fn cargo_build(dir: &Path, target_dir: &Path, args: &[&str]) -> Result<PathBuf> {
    check_target()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args(["build", "--release", "--target", TARGET])
        .arg("--target-dir")
        .arg(target_dir)
        .args(args);
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
        .with_context(|| format!("running cargo build {}", args.join(" ")))?;
    if !status.success() {
        bail!(
            "building components failed ({status}): cargo build {}",
            args.join(" ")
        );
    }
    Ok(target_dir.join(TARGET).join("release"))
}

/// Copies `from` to `to`, with both names in the error.
pub fn copy(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

/// Plain cargo does not add the targets in rust-toolchain.toml, so a fresh machine
/// whose rustup already had the toolchain lacks the wasm32 target: add it with rustup
/// (there whenever rust-toolchain.toml is honoured), for the toolchain this build
/// runs on. Without rustup, or if it fails, say how to.
fn check_target() -> Result<()> {
    if target_installed()? {
        return Ok(());
    }
    let mut rustup = Command::new("rustup");
    rustup.args(["target", "add", TARGET]);
    if let Ok(toolchain) = std::env::var("RUSTUP_TOOLCHAIN") {
        rustup.args(["--toolchain", &toolchain]);
    }
    println!("cargo:warning=the {TARGET} target is missing: adding it with rustup");
    let added = rustup.status().map(|s| s.success()).unwrap_or(false);
    if !added || !target_installed()? {
        bail!(
            "the {TARGET} target is not installed and `rustup target add {TARGET}` did not \
             add it: run `rustup toolchain install` in the repository (it reads \
             rust-toolchain.toml), then build again"
        );
    }
    Ok(())
}

fn target_installed() -> Result<bool> {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .context("rustc --print sysroot")?;
    let sysroot = String::from_utf8(out.stdout)?;
    Ok(Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(TARGET)
        .is_dir())
}
