//! The one place that reads the machine's clocks.
//!
//! Sources stamp samples with [`now_ns`] and the live driver paces ticks on a
//! [`RunClock`]. The core never calls either: it gets time only from its
//! injected `TickClock`. Keeping every read here makes that rule checkable
//! (clippy `disallowed-methods`).
//!
//! Time in a run is the *run clock*: the system's wall time read once, when
//! the process first asks, plus the monotonic time elapsed since. A step of
//! the system clock (NTP, an operator, a VM resuming) therefore moves neither
//! the tick pacing nor the stamps: within a run, times only go forward and at
//! the rate of the monotonic clock. The price is that a step is not followed:
//! the run keeps the wall time it started with, and the driver logs the
//! offset between the system clock and the run clock when it changes
//! (docs/architecture.md, "Clock steps"). A restart re-anchors.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Run-clock time in ns since the Unix epoch: what sources stamp samples
/// with. Never steps with the system clock.
pub fn now_ns() -> i64 {
    process_clock().now_ns()
}

/// The system's wall-clock time in ns since the Unix epoch, as it is now,
/// steps included. Only for comparing with the run clock.
#[expect(
    clippy::disallowed_methods,
    reason = "the sanctioned wall-clock read, used only to anchor and check the run clock"
)]
pub fn system_now_ns() -> i64 {
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

/// Monotonic time since the first call in this process: a stopwatch as a
/// plain `fn`, for what measures durations by difference (the ML stage's
/// compute time). A vDSO read, unlike [`thread_cpu_time`]'s system call,
/// so cheap enough around every model run.
pub fn stopwatch() -> Duration {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    since(*ORIGIN.get_or_init(monotonic))
}

/// How long until run-clock time `t_ns`, zero if it has passed.
pub fn until(t_ns: i64) -> Duration {
    process_clock().until(t_ns)
}

/// The process's run clock, anchored on first use. Borrowed, not cloned:
/// sources read it for every batch they stamp.
fn process_clock() -> &'static RunClock {
    static CLOCK: OnceLock<RunClock> = OnceLock::new();
    CLOCK.get_or_init(|| {
        RunClock(Arc::new(Source::System {
            anchor_wall_ns: system_now_ns(),
            anchor: monotonic(),
        }))
    })
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Wall time anchored once, advanced by a monotonic clock; cheap to clone.
///
/// [`RunClock::system`] is the process's clock. [`RunClock::manual`] is the
/// test hook: a clock whose monotonic time and system-clock steps are set by
/// hand, so pacing and step handling can be tested without waiting or
/// touching the machine's clock.
#[derive(Debug, Clone)]
pub struct RunClock(Arc<Source>);

#[derive(Debug)]
enum Source {
    System {
        anchor_wall_ns: i64,
        anchor: std::time::Instant,
    },
    Manual(Mutex<ManualState>),
}

#[derive(Debug, Clone, Copy)]
struct ManualState {
    anchor_wall_ns: i64,
    elapsed_ns: i64,
    /// How far the simulated system clock has been stepped from the run clock.
    system_step_ns: i64,
}

/// Moves a [`RunClock::manual`] clock.
#[derive(Debug, Clone)]
pub struct ClockHand(RunClock);

impl RunClock {
    /// The process's run clock, anchored on first use.
    pub fn system() -> RunClock {
        process_clock().clone()
    }

    /// A clock that starts at wall time `start_ns` and moves only when its
    /// [`ClockHand`] moves it.
    pub fn manual(start_ns: i64) -> (RunClock, ClockHand) {
        let clock = RunClock(Arc::new(Source::Manual(Mutex::new(ManualState {
            anchor_wall_ns: start_ns,
            elapsed_ns: 0,
            system_step_ns: 0,
        }))));
        (clock.clone(), ClockHand(clock))
    }

    fn manual_state(m: &Mutex<ManualState>) -> ManualState {
        // A poisoned lock only means a test panicked while holding it; the
        // state is plain numbers and still meaningful.
        *m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run-clock time in ns since the Unix epoch.
    pub fn now_ns(&self) -> i64 {
        match &*self.0 {
            Source::System {
                anchor_wall_ns,
                anchor,
            } => anchor_wall_ns.saturating_add(nanos(since(*anchor))),
            Source::Manual(m) => {
                let s = Self::manual_state(m);
                s.anchor_wall_ns.saturating_add(s.elapsed_ns)
            }
        }
    }

    /// What the system clock says now (for the manual clock: the run clock
    /// plus every step made with [`ClockHand::step_system`]).
    pub fn system_now_ns(&self) -> i64 {
        match &*self.0 {
            Source::System { .. } => system_now_ns(),
            Source::Manual(m) => {
                let s = Self::manual_state(m);
                s.anchor_wall_ns
                    .saturating_add(s.elapsed_ns)
                    .saturating_add(s.system_step_ns)
            }
        }
    }

    /// System clock minus run clock: zero at the anchor, and it moves when
    /// the system clock is stepped (or slews against the monotonic clock).
    pub fn offset_ns(&self) -> i64 {
        self.system_now_ns().saturating_sub(self.now_ns())
    }

    /// How long until run-clock time `t_ns`, zero if it has passed.
    pub fn until(&self, t_ns: i64) -> Duration {
        let d = t_ns.saturating_sub(self.now_ns());
        Duration::from_nanos(d.max(0) as u64)
    }

    /// A tokio deadline for run-clock time `t_ns`, for `sleep_until`.
    pub fn deadline(&self, t_ns: i64) -> tokio::time::Instant {
        tokio_now() + self.until(t_ns)
    }
}

impl ClockHand {
    /// Let `d` of monotonic time pass.
    pub fn advance(&self, d: Duration) {
        self.with(|s| s.elapsed_ns = s.elapsed_ns.saturating_add(nanos(d)));
    }

    /// Step the simulated system clock by `delta_ns` (negative: back), as
    /// NTP or an operator would. The run clock does not move.
    pub fn step_system(&self, delta_ns: i64) {
        self.with(|s| s.system_step_ns = s.system_step_ns.saturating_add(delta_ns));
    }

    fn with(&self, f: impl FnOnce(&mut ManualState)) {
        if let Source::Manual(m) = &*self.0.0 {
            f(&mut m.lock().unwrap_or_else(|e| e.into_inner()));
        }
    }
}

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), for benches on a
/// shared machine: it counts the time the thread ran, not the time other
/// processes took. Not a clock of the plant's time; zero where the platform
/// has none.
pub fn thread_cpu_time() -> Duration {
    cpu_clock(3)
}

/// This process's CPU time, all threads (`CLOCK_PROCESS_CPUTIME_ID`): for
/// benches of work spread over threads (a replay reads on one and steps the
/// core on another). Zero where the platform has none.
pub fn process_cpu_time() -> Duration {
    cpu_clock(2)
}

#[cfg(target_os = "linux")]
fn cpu_clock(clock: i32) -> Duration {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec (64-bit Linux layout).
    let rc = unsafe { clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

#[cfg(not(target_os = "linux"))]
fn cpu_clock(_clock: i32) -> Duration {
    Duration::ZERO
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000_000_000;

    #[test]
    fn r9_a_system_clock_step_moves_neither_the_run_clock_nor_its_pace() {
        let (clock, hand) = RunClock::manual(T0);
        hand.advance(Duration::from_secs(2));
        assert_eq!(clock.now_ns(), T0 + 2_000_000_000);
        hand.step_system(-3_600_000_000_000);
        assert_eq!(clock.now_ns(), T0 + 2_000_000_000, "a step back");
        assert_eq!(clock.offset_ns(), -3_600_000_000_000);
        hand.advance(Duration::from_millis(500));
        hand.step_system(7_200_000_000_000);
        assert_eq!(clock.now_ns(), T0 + 2_500_000_000, "a step forward");
        assert_eq!(clock.offset_ns(), 3_600_000_000_000);
        assert_eq!(clock.until(T0 + 3_000_000_000), Duration::from_millis(500));
    }

    #[test]
    fn the_system_run_clock_starts_at_the_wall_time_and_never_goes_back() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        // Anchored on the system clock: the two differ by what NTP did in
        // this process's lifetime, far under a minute on a test machine.
        assert!(RunClock::system().offset_ns().abs() < 60_000_000_000);
    }
}
