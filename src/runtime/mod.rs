//! Running the twin: sources → [`Driver`] (the core) → sinks.
//!
//! - [`driver`]: the one driver every run uses (live, replay, tests,
//!   benches): it owns the core, the run's epoch, the receive-time clamp and
//!   the fan-out to sinks.
//! - [`pacing`]: when a live run steps the driver: on the monotonic run
//!   clock, with bounded catch-up and clock-step detection.
//! - [`control`]: operator commands (approve, reject, reset, kill) to a
//!   live run, applied between ticks.
//! - [`guard_io`]: a live run's audit log, setpoint writer and link
//!   flags around every tick.
//! - [`live`]: the live run itself, wiring sources and sinks to the two.
//! - [`replay`]: a recording's samples through the same driver, on a
//!   simulated clock.

pub mod control;
pub mod driver;
pub mod guard_io;
pub mod live;
pub mod pacing;
pub mod replay;

pub use driver::{Driver, DriverStats, Step};
pub use live::{RunError, RunOptions, RunSummary, run_live};
pub use pacing::{Pacer, Wake};
pub use replay::{ReplayError, ReplayOptions, ReplaySummary, Speed, replay_driver, run_replay};

#[cfg(test)]
mod tests;
