//! Waiting for a condition with a deadline, for the tests of both crates: a fixed sleep in its
//! place is too short on a loaded machine (the test flakes) and too long on an idle one (the
//! suite crawls). The deadline is generous; the wait ends as soon as the condition holds.

use std::future::Future;
use std::time::{Duration, Instant};

/// How often a condition is looked at.
const LOOK_EVERY: Duration = Duration::from_millis(20);

/// Looks at `check` until it returns `Some`, and returns that; `None` once `limit` has passed
/// (the condition is looked at one last time then).
pub async fn within<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let late = Instant::now() >= deadline;
        if let Some(value) = check().await {
            return Some(value);
        }
        if late {
            return None;
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}

/// Looks at `check` until it returns `Some`, and returns that; panics, naming `what`, once
/// `limit` has passed.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    within(limit, check)
        .await
        .unwrap_or_else(|| panic!("timed out after {limit:?} waiting for {what}"))
}

/// [`eventually`] for code that cannot await (a plain `#[test]`, a thread): blocks the thread
/// between looks.
pub fn eventually_blocking<T>(
    limit: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let late = Instant::now() >= deadline;
        if let Some(value) = check() {
            return value;
        }
        assert!(!late, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(LOOK_EVERY);
    }
}
