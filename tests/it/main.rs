//! The integration-test binary: one module per area, as in ripgrep.

mod anomaly_path;
mod cli_output;
mod config_corpus;
mod determinism;
mod e2e;
mod faults;
mod import_export;
mod interop_pymodbus;
mod interop_sparkplug;
mod live_model;
mod lockstep;
mod ml_optimise;
mod ml_platform;
mod ml_runtime;
mod ml_stage;
mod modbus_faults;
mod mqtt;
mod outputs;
mod qa;
mod recording;
mod report;
mod sim_truth;
mod snapshot;
mod sparkplug_limits;
mod util;
mod whatif;
