//! `twin`: an industrial digital-twin runtime.
//!
//! Data flows left to right through the modules and never back:
//! [`config`] → [`sources`] → [`twin`] (the deterministic core) → [`sinks`].
//! [`physics`] is the rapier model of the lines, beside the core.
//! [`runtime`] drives the core: live from the sources, or in a replay from
//! a [`recording`] (the MCAP format the recorder sink writes and the replay
//! reads). [`qa`] checks and compares event streams (expectations, JUnit,
//! diff), and [`report`] turns them into an HTML page.
//! [`guard`] vets setpoint proposals before anything is written to the
//! plant, and keeps the audit log of its decisions.
//! [`sim`] is the virtual plant the other end of the wire talks to, and
//! [`cli`] wires it all together for the `twin` binary.

pub mod broker;
pub mod cli;
pub mod config;
pub mod endpoints;
pub mod guard;
pub mod http;
pub mod ml;
pub mod physics;
pub mod qa;
pub mod recording;
pub mod report;
pub mod runtime;
pub mod sim;
pub mod sinks;
pub mod sources;
pub mod twin;
pub mod wallclock;
