//! The integration-test binary: one module per area, as in ripgrep.

mod config_corpus;
mod determinism;
mod e2e;
mod faults;
mod interop_pymodbus;
mod interop_sparkplug;
mod modbus_faults;
mod mqtt;
mod outputs;
mod sim_truth;
mod snapshot;
mod util;
mod whatif;
