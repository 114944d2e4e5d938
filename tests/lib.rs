//! Support for proxypool's integration tests: real proxy servers from Debian
//! (microsocks, tinyproxy, dante), in-process fault proxies, a target server that
//! records who connected, and polling helpers.
//!
//! Everything binds loopback on port 0, or on a free port found that way when the
//! server cannot report its own.

pub mod exchange;
pub mod faults;
pub mod matrix;
pub mod servers;
pub mod target;
pub mod tls;
pub mod wait;

use std::path::PathBuf;

/// Whether a missing binary must fail the test (under CI) rather than skip it.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The path of `name` on PATH (or in /usr/sbin), or `None` after a skip notice.
/// Under `CI=true` a missing binary panics: CI must not pass by skipping.
pub fn require_binary(name: &str) -> Option<PathBuf> {
    match require_binary_quiet(name) {
        Some(p) => Some(p),
        None if in_ci() => panic!("{name} is not installed; .ci/run installs it"),
        None => {
            eprintln!("SKIP: {name} is not installed (apt-get install it, or run .ci/run)");
            None
        }
    }
}

/// The path of `name` on PATH (or in /usr/sbin), with no notice if it is missing.
pub fn require_binary_quiet(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    dirs.into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The `proxypool` binary built beside this test binary.
pub fn proxypool_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/it-HASH → target/debug/proxypool
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|d| d.join("proxypool"))
        .expect("target dir");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo test --workspace`, which builds it",
        bin.display()
    );
    bin
}

/// The release `proxypool` binary (`cargo build --release -p proxypool-cli`), for tests
/// that need production speed. `None` after a skip notice when it is missing outside
/// CI; a panic under CI.
pub fn release_bin() -> Option<PathBuf> {
    let exe = std::env::current_exe().expect("current exe");
    // target/debug/deps/it-HASH → target/release/proxypool
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .and_then(|profile| profile.parent())
        .map(|t| t.join("release").join("proxypool"))
        .expect("target dir");
    if bin.is_file() {
        return Some(bin);
    }
    assert!(!in_ci(), "{} is missing; .ci/run builds it", bin.display());
    eprintln!(
        "SKIP: {} is missing (cargo build --release -p proxypool-cli)",
        bin.display()
    );
    None
}

/// A pool of `n` made-up SOCKS5 proxies (`socks5://p0:1080` …), round robin, built
/// through the config layer's rules. For strategy tests: nothing dials.
pub fn pool_of(n: usize) -> proxypool::testing::Pool {
    proxypool::testing::Pool::from_urls(
        "default.http",
        (0..n).map(|i| format!("socks5://p{i}:1080")),
    )
    .expect("valid pool")
}

/// Installs a tracing subscriber that writes into the returned buffer, for the
/// duration of the returned guard (this thread only).
pub fn capture_logs() -> (LogBuffer, tracing::subscriber::DefaultGuard) {
    let buf = LogBuffer::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let guard = tracing::subscriber::set_default(subscriber);
    (buf, guard)
}

/// Log output captured by [`capture_logs`].
#[derive(Clone, Default)]
pub struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Everything logged so far.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Everything logged since the last call (or the start), emptying the buffer.
    pub fn take(&self) -> String {
        let bytes = std::mem::take(&mut *self.0.lock().unwrap());
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads `lines` until one starts with `prefix` and returns the rest of it (a child's
/// `listening on …` line, say); panics if the stream ends first.
pub async fn line_after<R>(lines: &mut tokio::io::Lines<R>, prefix: &str) -> String
where
    R: tokio::io::AsyncBufRead + Unpin,
{
    loop {
        let line = lines
            .next_line()
            .await
            .expect("read a line")
            .unwrap_or_else(|| panic!("the output ended before a {prefix:?} line"));
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.to_owned();
        }
    }
}
