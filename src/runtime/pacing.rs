//! Pacing live ticks on the monotonic run clock.
//!
//! A live run steps the driver whenever the run clock (`wallclock::RunClock`:
//! wall time at start plus monotonic time since) reaches the next tick's
//! time. Two things can go wrong with time, and both are handled here:
//!
//! - **The system clock steps** (NTP, an operator, a resumed VM). The run
//!   clock does not follow it, so neither the pacing nor the sources' stamps
//!   move; the step is noticed as a change of the offset between the system
//!   clock and the run clock, logged and counted.
//! - **The process stalls** (swapped out, stopped with SIGSTOP, a tick
//!   that took too long). The ticks it missed are still run, one by one,
//!   because staleness and the physics need every tick; but at most
//!   [`MAX_TICKS_PER_WAKE`] per wake-up, so between bursts the loop takes in
//!   samples and notices a shutdown. How far behind the loop was is logged
//!   and reported in the run summary.

use std::time::Duration;

use tracing::{info, warn};

use super::Driver;
use crate::wallclock::RunClock;

/// Ticks run per wake-up at most. At the usual 10–100 ms ticks that is
/// 0.2–2 s of plant time per burst, a few ms of work at demo scale: catch-up
/// still outruns real time by far, and a burst never shuts out the channel
/// or a shutdown for long.
pub const MAX_TICKS_PER_WAKE: u32 = 20;

/// A change of the system clock's offset from the run clock larger than this
/// is reported as a step. NTP slews far slower (at most 0.5 ms/s), so only a
/// real step, or hours of slewing, crosses it.
pub const STEP_THRESHOLD: Duration = Duration::from_secs(1);

/// What one wake-up did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wake {
    /// Ticks run.
    pub ticks: u32,
    /// How long the earliest tick due had been due when the loop woke (zero
    /// when it woke early).
    pub behind_ns: i64,
    /// Ticks are still due: wake again at once.
    pub due: bool,
}

pub struct Pacer {
    clock: RunClock,
    max_ticks: u32,
    /// System clock minus run clock, as last reported.
    offset_ns: i64,
    steps: u64,
    max_behind_ns: i64,
    /// The worst lag of the catch-up in progress, if one is.
    catching_up: Option<i64>,
}

impl Pacer {
    pub fn new(clock: RunClock) -> Self {
        Pacer {
            offset_ns: clock.offset_ns(),
            clock,
            max_ticks: MAX_TICKS_PER_WAKE,
            steps: 0,
            max_behind_ns: 0,
            catching_up: None,
        }
    }

    pub fn clock(&self) -> &RunClock {
        &self.clock
    }

    /// Run the ticks that are due by the run clock, at most
    /// [`MAX_TICKS_PER_WAKE`] and none after a sink failed, and check the
    /// system clock for a step.
    pub fn wake(&mut self, driver: &mut Driver) -> Wake {
        self.watch_for_steps();
        let now = self.clock.now_ns();
        let behind_ns = now.saturating_sub(driver.next_tick_ns()).max(0);
        self.max_behind_ns = self.max_behind_ns.max(behind_ns);
        let mut ticks = 0;
        // A failed sink ends the burst: the runner decides what happens next.
        while ticks < self.max_ticks && driver.next_tick_ns() <= now && !driver.has_failures() {
            driver.step();
            ticks += 1;
        }
        let due = driver.next_tick_ns() <= now;
        self.catching_up = match (due, self.catching_up) {
            (true, None) => {
                warn!(
                    behind_ms = behind_ns / 1_000_000,
                    max_ticks_per_wake = self.max_ticks,
                    "Tick loop fell behind the run clock; catching up in bursts."
                );
                Some(behind_ns)
            }
            (true, Some(worst)) => Some(worst.max(behind_ns)),
            (false, Some(worst)) => {
                info!(
                    behind_ms = worst / 1_000_000,
                    "Tick loop caught up with the run clock."
                );
                None
            }
            (false, None) => None,
        };
        Wake {
            ticks,
            behind_ns,
            due,
        }
    }

    fn watch_for_steps(&mut self) {
        let offset = self.clock.offset_ns();
        let step = offset.saturating_sub(self.offset_ns);
        if step.unsigned_abs() > STEP_THRESHOLD.as_nanos() as u64 {
            warn!(
                step_ms = step / 1_000_000,
                offset_ms = offset / 1_000_000,
                "System clock stepped; ticks and timestamps keep the run clock."
            );
            self.offset_ns = offset;
            self.steps += 1;
        }
    }

    /// The worst lag seen at a wake-up.
    pub fn max_behind(&self) -> Duration {
        Duration::from_nanos(self.max_behind_ns.max(0) as u64)
    }

    /// System-clock steps seen.
    pub fn clock_steps(&self) -> u64 {
        self.steps
    }

    /// System clock minus run clock, as last seen.
    pub fn clock_offset_ns(&self) -> i64 {
        self.offset_ns
    }
}
