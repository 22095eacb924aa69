//! The one place that reads the machine's clock.
//!
//! Sources stamp samples with it and the live driver paces ticks with it. The
//! core never calls it: it gets time only from its injected `TickClock`. Keeping
//! every read here makes that rule checkable (clippy `disallowed-methods`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time in ns since the Unix epoch.
#[expect(
    clippy::disallowed_methods,
    reason = "the sanctioned wall-clock read, used only by sources and live drivers"
)]
pub fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A monotonic instant for pacing and rate limits (never for timestamps).
#[expect(
    clippy::disallowed_methods,
    reason = "the sanctioned monotonic-clock read, used only outside the core"
)]
pub fn monotonic() -> std::time::Instant {
    std::time::Instant::now()
}

/// A tokio instant, for deadlines in async code (`sleep_until`).
#[expect(
    clippy::disallowed_methods,
    reason = "the sanctioned monotonic-clock read, used only outside the core"
)]
pub fn tokio_now() -> tokio::time::Instant {
    tokio::time::Instant::now()
}

/// Time elapsed since a [`monotonic`] instant.
#[expect(
    clippy::disallowed_methods,
    reason = "the sanctioned monotonic-clock read, used only outside the core"
)]
pub fn since(t: std::time::Instant) -> Duration {
    t.elapsed()
}

/// How long until wall-clock time `t_ns`, zero if it has passed.
pub fn until(t_ns: i64) -> Duration {
    let d = t_ns.saturating_sub(now_ns());
    Duration::from_nanos(d.max(0) as u64)
}
