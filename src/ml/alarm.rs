//! Alarms in ISA-18.2's habits, one state machine per (model, machine, class):
//! a model's risk or score raises an alarm only after staying at or above
//! the threshold for the on-delay, and clears it only after staying below
//! the threshold minus the deadband for the off-delay, so a value wandering
//! around the threshold never chatters (docs/ml.md, "Features and alarms").
//!
//! Time is the tick count the caller passes in, so the delays mean the same
//! whatever the model's cadence (which rises and falls with demand) and a
//! replay makes the same transitions. The machine reports transitions as
//! values; turning them into `alarm` events is the ML stage's job.

use std::fmt;

use thiserror::Error;

/// An alarm's limits. Delays are in ticks (the caller converts the config's
/// durations with the plant's tick).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlarmLimits {
    /// Raise at or above this.
    pub threshold: f64,
    /// Clear below `threshold - deadband`.
    pub deadband: f64,
    /// Ticks the value must stay at or above the threshold before raising;
    /// 0 raises on the first such value.
    pub on_delay: u64,
    /// Ticks the value must stay below the clear level before clearing.
    pub off_delay: u64,
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum AlarmLimitsError {
    #[error("the alarm threshold must be a finite number, not {0}")]
    Threshold(f64),
    #[error("the alarm deadband must be a finite number at or above 0, not {0}")]
    Deadband(f64),
}

impl AlarmLimits {
    /// The level the value must fall below to clear.
    pub fn clear_level(&self) -> f64 {
        self.threshold - self.deadband
    }

    fn validate(self) -> Result<Self, AlarmLimitsError> {
        if !self.threshold.is_finite() {
            return Err(AlarmLimitsError::Threshold(self.threshold));
        }
        if !(self.deadband.is_finite() && self.deadband >= 0.0) {
            return Err(AlarmLimitsError::Deadband(self.deadband));
        }
        Ok(self)
    }
}

/// Where the alarm stands. The two pending states remember the tick their
/// condition started; shelving (a later issue) is orthogonal to these, a
/// flag beside the state that mutes announcements while the machine keeps
/// tracking the process, so it will not need new states here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmState {
    Normal,
    /// At or above the threshold since `since`, waiting out the on-delay.
    PendingRaise {
        since: u64,
    },
    Raised,
    /// Below the clear level since `since`, waiting out the off-delay.
    PendingClear {
        since: u64,
    },
}

impl AlarmState {
    /// Whether the alarm is announced as active (raised, or raised and
    /// waiting to clear).
    pub fn is_active(self) -> bool {
        matches!(self, AlarmState::Raised | AlarmState::PendingClear { .. })
    }
}

/// How good the value fed to the alarm is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputQuality {
    Good,
    /// Computed from a row with a bad, stale or short feature window.
    Uncertain,
}

/// Why a transition happened; its `Display` is the event's `reason`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    /// At or above `threshold` since tick `since`, `held` ticks by now, which
    /// meets the on-delay.
    AtOrAbove {
        threshold: f64,
        since: u64,
        held: u64,
        on_delay: u64,
    },
    /// Below `clear_level` since tick `since`, `held` ticks by now, which
    /// meets the off-delay.
    Below {
        clear_level: f64,
        since: u64,
        held: u64,
        off_delay: u64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Reason::AtOrAbove {
                threshold,
                held,
                on_delay,
                ..
            } => write!(
                f,
                "at or above {} for {held} ticks (on-delay {on_delay})",
                Level(threshold)
            ),
            Reason::Below {
                clear_level,
                held,
                off_delay,
                ..
            } => write!(
                f,
                "below {} (threshold minus deadband) for {held} ticks (off-delay {off_delay})",
                Level(clear_level)
            ),
        }
    }
}

/// A level for people: to 6 decimals, so 0.6 − 0.2 reads `0.4`, not
/// `0.39999999999999997` (the comparison itself uses the exact value).
struct Level(f64);

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = (self.0 * 1e6).round() / 1e6;
        if r.is_finite() {
            write!(f, "{r}")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

/// A change the event stream announces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transition {
    /// The value that completed the delay.
    pub value: f64,
    pub threshold: f64,
    pub reason: Reason,
}

/// Why an input changed nothing on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    Uncertain,
    /// NaN or infinite (the stage reports those as `error` events; the alarm
    /// must not move on them either).
    NotFinite,
}

/// What one input did.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Step {
    /// Nothing to announce (the state may have moved between a pending state
    /// and its neighbour; [`Alarm::state`] says where it is).
    Quiet,
    /// The input could not be trusted: state and timers are as they were.
    Held(HoldReason),
    Raised(Transition),
    Cleared(Transition),
}

/// One alarm's state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    limits: AlarmLimits,
    state: AlarmState,
}

impl Alarm {
    pub fn new(limits: AlarmLimits) -> Result<Self, AlarmLimitsError> {
        Ok(Alarm {
            limits: limits.validate()?,
            state: AlarmState::Normal,
        })
    }

    pub fn limits(&self) -> &AlarmLimits {
        &self.limits
    }

    pub fn state(&self) -> AlarmState {
        self.state
    }

    /// Whether [`Alarm::update`] with `value` would leave the alarm as it
    /// is and announce nothing, whatever the input's quality: a settled
    /// alarm (normal, or raised) on its own side of its limit. Most of a
    /// fault model's alarms are, most of the time; this answers without
    /// the delays' bookkeeping (the stage checks it first for every alarm
    /// of every row).
    #[inline]
    pub fn stays(&self, value: f64) -> bool {
        match self.state {
            AlarmState::Normal => value < self.limits.threshold,
            AlarmState::Raised => value >= self.limits.clear_level() && value.is_finite(),
            _ => false,
        }
    }

    /// Feeds the value the model gave at tick `tick` (ticks never go back;
    /// if they did, no time would count as passed).
    ///
    /// An uncertain or non-finite value holds: it neither starts, resets nor
    /// completes a delay. A pending delay keeps its start, so the next good
    /// value on the same side completes it if enough ticks have passed; the
    /// uncertain stretch is taken to have stayed on that side, as both ends
    /// of it did.
    pub fn update(&mut self, tick: u64, value: f64, quality: InputQuality) -> Step {
        if !value.is_finite() {
            return Step::Held(HoldReason::NotFinite);
        }
        if quality == InputQuality::Uncertain {
            return Step::Held(HoldReason::Uncertain);
        }
        let l = self.limits;
        let above = value >= l.threshold;
        let below = value < l.clear_level();
        let (next, step) = match self.state {
            AlarmState::Normal | AlarmState::PendingRaise { .. } if !above => {
                (AlarmState::Normal, Step::Quiet)
            }
            AlarmState::Normal => self.raise_after(tick, tick, value),
            AlarmState::PendingRaise { since } => self.raise_after(since, tick, value),
            AlarmState::Raised | AlarmState::PendingClear { .. } if !below => {
                (AlarmState::Raised, Step::Quiet)
            }
            AlarmState::Raised => self.clear_after(tick, tick, value),
            AlarmState::PendingClear { since } => self.clear_after(since, tick, value),
        };
        self.state = next;
        step
    }

    fn raise_after(&self, since: u64, tick: u64, value: f64) -> (AlarmState, Step) {
        let held = tick.saturating_sub(since);
        if held < self.limits.on_delay {
            return (AlarmState::PendingRaise { since }, Step::Quiet);
        }
        let reason = Reason::AtOrAbove {
            threshold: self.limits.threshold,
            since,
            held,
            on_delay: self.limits.on_delay,
        };
        (
            AlarmState::Raised,
            Step::Raised(self.transition(value, reason)),
        )
    }

    fn clear_after(&self, since: u64, tick: u64, value: f64) -> (AlarmState, Step) {
        let held = tick.saturating_sub(since);
        if held < self.limits.off_delay {
            return (AlarmState::PendingClear { since }, Step::Quiet);
        }
        let reason = Reason::Below {
            clear_level: self.limits.clear_level(),
            since,
            held,
            off_delay: self.limits.off_delay,
        };
        (
            AlarmState::Normal,
            Step::Cleared(self.transition(value, reason)),
        )
    }

    fn transition(&self, value: f64, reason: Reason) -> Transition {
        Transition {
            value,
            threshold: self.limits.threshold,
            reason,
        }
    }
}

#[cfg(test)]
#[path = "alarm_tests.rs"]
mod tests;
