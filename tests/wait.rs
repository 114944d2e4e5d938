//! Polling with a deadline, instead of sleeping.

use std::time::Duration;

/// How long asynchronous state may take to appear before a test fails.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Polls `check` until it returns `Some`, or panics with `what` after `deadline`.
pub async fn until<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = std::time::Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Asserts that `cond` becomes true within the default deadline.
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr, $($msg:tt)+) => {
        $crate::wait::until(&format!($($msg)+), $crate::wait::DEFAULT_DEADLINE, || ($cond).then_some(())).await
    };
}

/// Polls `check` on this thread until it is true, or panics with `what` after
/// `deadline`; for tests that watch other threads rather than tasks.
pub fn blocking(what: &str, deadline: Duration, mut check: impl FnMut() -> bool) {
    let start = std::time::Instant::now();
    while !check() {
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}
