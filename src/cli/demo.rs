//! `twin demo`: the virtual packaging line and the twin on it, in one process.
//!
//! The demo plant ships inside the binary, so the command works from any
//! directory on a fresh machine. Everything listens on loopback, on free ports.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use tracing::{error, info};

use super::EXIT_FAILURE;
use super::load::{load, load_text};
use super::output::Stderr;
use crate::runtime::{RunOptions, run_live};
use crate::sim::{SimOptions, start};

/// The demo plant, `plant-configs/packaging-line.toml`.
pub const DEMO_CONFIG: &str = include_str!("../../plant-configs/packaging-line.toml");

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Write the event stream (JSON lines) to PATH, or `-` for stdout.
    #[arg(long, value_name = "PATH|-")]
    pub events: Option<String>,
    #[command(flatten)]
    pub events_policy: super::EventsPolicy,
    #[command(flatten)]
    pub record: super::RecordArgs,
    /// Stop after this long, e.g. `30s`.
    #[arg(long = "for", value_name = "DURATION", value_parser = super::parse_duration)]
    pub duration: Option<Duration>,
    /// Use this plant config instead of the built-in packaging line.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Do not show the live table even if stdout is a terminal.
    #[arg(long)]
    pub no_table: bool,
}

pub fn run(args: DemoArgs, log: Option<&str>) -> i32 {
    let (events, table) = super::outputs(args.events.as_deref(), args.no_table);
    super::init_logging(log, table);
    let loaded = match &args.config {
        Some(p) => load(p, Stderr::Queue),
        None => load_text(
            Path::new("plant-configs/packaging-line.toml"),
            DEMO_CONFIG,
            Stderr::Queue,
        ),
    };
    let cfg = match loaded {
        Ok(c) => c,
        Err(code) => return code,
    };
    let stream = match super::open_events(events, &args.events_policy) {
        Ok(s) => s,
        Err(code) => return code,
    };
    super::block_on(|shutdown| async move {
        let opts = SimOptions {
            modbus_ports: [("*".to_string(), 0)].into_iter().collect(),
            mqtt_port: Some(0),
            ..SimOptions::default()
        };
        let sim_stop = shutdown.child_token();
        let sim = match start(&cfg, opts, sim_stop.clone()).await {
            Ok(h) => h,
            Err(e) => {
                error!("{e}");
                return EXIT_FAILURE;
            }
        };
        info!(endpoints = ?sim.endpoints, "Virtual packaging line running.");
        let mut run = RunOptions::standard(&cfg, args.duration, stream, table);
        if let Some(r) = args.record.recorder(&cfg, "live") {
            run.sinks.push(Box::new(r));
        }
        let code = match run_live(&cfg, &sim.endpoints, run, shutdown.clone()).await {
            Ok(_) => 0,
            Err(e) => {
                error!("{e}");
                EXIT_FAILURE
            }
        };
        sim_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(3), sim.task).await;
        code
    })
}
