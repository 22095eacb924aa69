//! The guard: setpoint safety between a proposal (a model's or an
//! operator's) and a write to the plant (issue 12; docs/guard.md). Its rules
//! are bounds, rate limits, modes (off, shadow, advisory, closed loop), the
//! freshness of every input a proposal used, interlocks, the device's link,
//! the physics lookahead, and the audit of every decision.
//!
//! Data flow: proposals come in from the optimiser (`ml::optimise` hands
//! them over in [`crate::ml::optimise::OptimiserProposals`]) and from
//! operators ([`GuardState::propose_operator`]); the guard's stage
//! ([`stage`]) decides on them each tick ([`decide`], rules in [`rules`]),
//! and what it lets through leaves the core as [`WriteIntent`]s with their
//! audit records, which the driver carries out ([`carry`]). The decisions
//! are a pure function of the core's state and take their time from the
//! tick clock, so a replay decides the same and writes nothing; [`audit`],
//! the durable record of each decision, is appended by the driver before
//! the decision is carried out (the ordering contract in [`audit`]).

pub mod audit;
pub mod carry;
pub mod decide;
pub mod events;
pub mod inputs;
pub mod rules;
pub mod stage;
pub mod state;
mod tick;

pub use carry::{SetpointWriter, carry_out};
pub use events::{SetpointDecision, SetpointEvent};
pub use inputs::{GuardInput, GuardInputRecord};
pub use rules::RuleId;
pub use stage::{install, state, state_mut};
pub use state::{
    GuardError, GuardOutputs, GuardState, Link, PendingProposal, WriteIntent, WriteOutcome,
};

#[cfg(test)]
mod tests;
