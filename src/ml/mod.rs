//! ONNX models in the loop (issue 11): the ONNX Runtime environment and the
//! sessions of the config's `[[models]]`, checked against the config at
//! start-up.
//!
//! Like the rest of the core, nothing here reads the clock; loading reads
//! the model files and opens the runtime library, once, before the first
//! tick.

pub mod io;
pub mod load;
pub mod runtime;
pub mod session;
