//! The conformance runner, on the reference modules, the strategies guide's example and the
//! broken fixtures.

use std::time::Duration;

use proxypool::config::BuiltinStrategy;
use proxypool::strategy::{Limits, StrategyEngine, builtin_bytes, check};

const GUIDE: &str = include_str!("../../docs/strategies.md");
const EXAMPLE_SOURCE: &str = include_str!("../../examples/priority/src/lib.rs");
const EXAMPLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/priority.wasm"));

/// The debug-built host lowers 10,000-id lists slowly; production limits are
/// exercised through the release binary in the CLI test below.
fn engine() -> StrategyEngine {
    StrategyEngine::try_new(Limits {
        deadline: Duration::from_millis(100),
        ..Limits::default()
    })
    .unwrap()
}

#[test]
fn readme_shows_the_example_strategy_verbatim_in_at_most_30_lines() {
    assert!(EXAMPLE_SOURCE.lines().count() <= 30);
    assert!(
        GUIDE.contains(EXAMPLE_SOURCE.trim_end()),
        "docs/strategies.md must show examples/priority/src/lib.rs as it is"
    );
}

#[test]
fn check_passes_the_reference_modules_and_the_readme_example() {
    let e = engine();
    let mut subjects: Vec<(&str, &[u8])> = BuiltinStrategy::ALL
        .iter()
        .map(|&b| (b.as_str(), builtin_bytes(b)))
        .collect();
    subjects.push(("priority (docs/strategies.md)", EXAMPLE));
    for (name, bytes) in subjects {
        let report = check::run(&e, bytes);
        assert!(report.passed(), "{name}: {report:#?}");
        assert_eq!(
            report.distribution.iter().sum::<u64>(),
            check::DISTRIBUTION_PICKS
        );
    }
}

#[test]
fn check_fails_each_broken_fixture_and_says_why() {
    let e = engine();
    for (name, bytes, why) in [
        (
            "trap",
            &include_bytes!(concat!(env!("OUT_DIR"), "/trap.wasm"))[..],
            "trap",
        ),
        (
            "spin",
            include_bytes!(concat!(env!("OUT_DIR"), "/spin.wasm")),
            "deadline exceeded",
        ),
        (
            "grow",
            include_bytes!(concat!(env!("OUT_DIR"), "/grow.wasm")),
            "memory limit exceeded",
        ),
        (
            "out_of_range",
            include_bytes!(concat!(env!("OUT_DIR"), "/out_of_range.wasm")),
            "not eligible",
        ),
        (
            "tried",
            include_bytes!(concat!(env!("OUT_DIR"), "/tried.wasm")),
            "already tried",
        ),
        (
            "wasi_import",
            include_bytes!(concat!(env!("OUT_DIR"), "/wasi_import.wasm")),
            "wasi:cli",
        ),
    ] {
        let report = check::run(&e, bytes);
        assert!(!report.passed(), "{name} must fail");
        assert!(
            report
                .rows
                .iter()
                .any(|r| !r.passed && r.detail.contains(why)),
            "{name}: no failing row mentions {why:?}: {report:#?}"
        );
    }
}

/// The release binary at production limits (1 ms, 16 MiB). Ignored in the plain test
/// run, where other tests load both cores; `.ci/run` runs it alone after building the
/// release binary.
#[tokio::test]
#[ignore = "needs target/release/proxypool and a quiet machine; .ci/run runs it"]
async fn strategy_check_cli_passes_good_and_fails_bad_under_production_limits() {
    let Some(bin) = proxypool_tests::release_bin() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut good: Vec<(String, &[u8])> = BuiltinStrategy::ALL
        .iter()
        .map(|&b| (format!("{}.wasm", b.as_str()), builtin_bytes(b)))
        .collect();
    good.push(("priority.wasm".into(), EXAMPLE));
    for (name, bytes) in good {
        let path = dir.path().join(&name);
        std::fs::write(&path, bytes).unwrap();
        let out = tokio::process::Command::new(&bin)
            .args(["strategy", "check"])
            .arg(&path)
            .current_dir(dir.path())
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}:\n{stdout}");
        assert!(
            stdout.contains("all checks passed") && stdout.contains("distribution:"),
            "{stdout}"
        );
    }
    let path = dir.path().join("trap.wasm");
    std::fs::write(
        &path,
        include_bytes!(concat!(env!("OUT_DIR"), "/trap.wasm")),
    )
    .unwrap();
    let out = tokio::process::Command::new(&bin)
        .args(["strategy", "check"])
        .arg(&path)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("unreachable"),
        "{stdout}"
    );
}
