//! Makes `cargo test --workspace` build the `proxypool` binary, which the
//! integration tests in `tests/` run; and checks that it starts.

#[test]
fn binary_prints_its_version() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_proxypool"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("proxypool "));
}
