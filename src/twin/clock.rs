//! The tick clock: the core's only notion of time.
//!
//! It is injected, never read from the machine: live mode starts it at the
//! wall-clock time the run began, replay at the recording's start, tests at
//! whatever they like. Tick `n` happens at `epoch + n * period`.

use bevy_ecs::prelude::Resource;
use std::time::Duration;

#[derive(Resource, Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickClock {
    epoch_ns: i64,
    period_ns: i64,
    tick: u64,
}

impl TickClock {
    /// A clock whose tick 0 is at `epoch_ns`, aligned down to a whole period so
    /// that tick times are round numbers in the event stream.
    pub fn new(epoch_ns: i64, period: Duration) -> Self {
        let period_ns = i64::try_from(period.as_nanos()).unwrap_or(i64::MAX).max(1);
        TickClock {
            epoch_ns: epoch_ns - epoch_ns.rem_euclid(period_ns),
            period_ns,
            tick: 0,
        }
    }

    pub fn tick(&self) -> u64 {
        self.tick
    }

    pub fn period_ns(&self) -> i64 {
        self.period_ns
    }

    /// Time of the current tick.
    pub fn now_ns(&self) -> i64 {
        self.time_of(self.tick)
    }

    /// Time of tick `n`.
    pub fn time_of(&self, n: u64) -> i64 {
        self.epoch_ns
            .saturating_add((n as i64).saturating_mul(self.period_ns))
    }

    pub(crate) fn advance(&mut self) {
        self.tick += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_is_aligned_to_the_period() {
        let c = TickClock::new(1_234_567_891, Duration::from_millis(100));
        assert_eq!(c.now_ns(), 1_200_000_000);
        assert_eq!(c.time_of(3), 1_500_000_000);
    }
}
