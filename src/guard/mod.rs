//! The guard: setpoint safety between a proposal (a model's or an
//! operator's) and a write to the plant (issue 12). Its rules are bounds,
//! rate limits, modes (off, shadow, advisory, closed loop), the freshness of
//! every input a proposal used, interlocks, and the audit of every decision.
//!
//! Data flow: proposals come in from the ML stage or the control path; what
//! the guard lets through goes to the writers in `sinks`. The guard's
//! decisions are a pure function of the core's state and take their time
//! from the tick clock; [`audit`], the durable record of each decision, is
//! its one piece of I/O, and a decision is not carried out before its record
//! is on disk (the ordering contract in [`audit`]).

pub mod audit;
