//! `twin demo`: the virtual packaging line and the twin on it, in one process.
//!
//! The demo plant ships inside the binary, so the command works from any
//! directory on a fresh machine. Everything listens on loopback, on free ports.
//! With `--headless` nothing listens and no clock runs: the plant and the
//! twin run in lockstep on one simulated clock (`sim::lockstep`), as fast as
//! the CPU allows.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tracing::{error, info, warn};

use super::load::{Bundled, load, load_text_with, render_report};
use super::output::Stderr;
use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::config::LoadedConfig;
use crate::runtime::{RunOptions, run_live};
use crate::sim::lockstep::{self, EventFile, LockstepOptions};
use crate::sim::scenario::{self, Scenario};
use crate::sim::{SimOptions, start};
use crate::sinks::Sink;

/// The demo plant, `plant-configs/packaging-line.toml`.
pub const DEMO_CONFIG: &str = include_str!("../../plant-configs/packaging-line.toml");

/// The model files the demo plant runs, built into the binary with it, by
/// `path` as [`DEMO_CONFIG`] writes it: the built-in demo shows predictions
/// from any folder, without the repository's `models/`.
const DEMO_MODELS: &[(&str, &[u8])] = &[
    (
        "../models/demo_fault.onnx",
        include_bytes!("../../models/demo_fault.onnx"),
    ),
    (
        "../models/demo_setpoint.onnx",
        include_bytes!("../../models/demo_setpoint.onnx"),
    ),
];

/// The built-in model files of the demo config's models, by model id.
fn builtin_models(cfg: &LoadedConfig) -> Bundled {
    cfg.config
        .models
        .iter()
        .filter_map(|m| {
            let (_, bytes) = DEMO_MODELS.iter().find(|(p, _)| *p == m.path.value)?;
            Some((m.id.value.clone(), Arc::from(*bytes)))
        })
        .collect()
}

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
    /// Inject the faults of this scenario file (plant-configs/scenarios/).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Seed of the plant's noise.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Write the plant's ground-truth fault labels as JSON lines. Default
    /// with --events FILE: next to it, `E.jsonl` → `E.labels.jsonl`.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// No sockets and no clock: the plant and the twin on one simulated
    /// clock, as fast as the CPU allows, for --for of sim time. The same
    /// config, scenario and seed give byte-identical events and labels.
    #[arg(long)]
    pub headless: bool,
    /// Append every setpoint decision to this audit log (hash-chained,
    /// fsync'd; docs/audit.md). Required when a setpoint is advisory or
    /// closed_loop.
    #[arg(long, value_name = "PATH")]
    pub audit: Option<PathBuf>,
    /// Take operator commands (`twin approve`, `reject`, `reset`, `kill`,
    /// `pending`, `propose`) on a Unix socket at PATH, mode 0600: only its owner and
    /// root may connect (docs/guard.md, "Operator control").
    #[arg(long, value_name = "PATH")]
    pub control: Option<PathBuf>,
    #[command(flatten)]
    pub http: super::HttpArgs,
}

/// A usage error, as clap reports one.
const EXIT_USAGE: i32 = 2;

/// Where the labels go: `--labels`, or next to an event file (not stdout).
fn labels(args: &DemoArgs) -> Option<PathBuf> {
    let events = args.events.as_deref().filter(|e| *e != "-").map(Path::new);
    super::sim::labels_path(events, args.labels.as_deref())
}

pub fn run(args: DemoArgs, log: Option<&str>) -> i32 {
    let (events, table) = super::outputs(args.events.as_deref(), args.no_table);
    let table = table && !args.headless;
    super::init_logging(log, table);
    if args.headless && args.duration.is_none() {
        error!(
            "--headless needs --for: how much sim time to run, e.g. --for 8h (a headless run has no clock to stop it by)"
        );
        return EXIT_USAGE;
    }
    let loaded = match &args.config {
        Some(p) => load(p, Stderr::Queue),
        None => load_text_with(
            Path::new("plant-configs/packaging-line.toml"),
            DEMO_CONFIG,
            builtin_models,
            Stderr::Queue,
        ),
    };
    let cfg = match loaded {
        Ok(c) => c,
        Err(code) => return code,
    };
    let scenario = match &args.scenario {
        Some(p) => match scenario::load_file(p, &cfg) {
            Ok(s) => Some(s),
            Err(report) => {
                Stderr::Queue.write(&render_report(&report, false));
                return EXIT_CONFIG;
            }
        },
        None => None,
    };
    if args.headless && (args.audit.is_some() || args.control.is_some() || args.http.http.is_some())
    {
        error!(
            "--audit, --control and --http are for live runs: a --headless run writes nothing to a plant, takes no operator commands and runs too fast to watch (its decisions are in the events)"
        );
        return EXIT_USAGE;
    }
    let http = match args.http.prepare() {
        Ok(h) => h,
        Err(code) => return code,
    };
    if !args.headless
        && let Err(code) = super::check_audit(&cfg, args.audit.as_deref())
    {
        return code;
    }
    if let (true, Some(duration)) = (args.headless, args.duration) {
        return headless(&args, &cfg, scenario.as_ref(), duration);
    }
    let stream = match super::open_events(events, &args.events_policy) {
        Ok(s) => s,
        Err(code) => return code,
    };
    super::block_on(|shutdown| async move {
        let opts = SimOptions {
            modbus_ports: [("*".to_string(), 0)].into_iter().collect(),
            mqtt_port: Some(0),
            seed: args.seed,
            labels: labels(&args),
            scenario,
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
        // `--config` runs any plant here, not only the packaging line; name
        // it, and the addresses as `name=address` rather than a Rust struct.
        let endpoints = sim
            .endpoints
            .modbus
            .iter()
            .chain(&sim.endpoints.mqtt)
            .map(|(name, addr)| format!("{name}={addr}"))
            .collect::<Vec<_>>()
            .join(" ");
        info!(plant = %cfg.config.plant.name, endpoints, "Virtual plant running.");
        // The table is added below, once it can show the HTTP address.
        let mut run = RunOptions::standard(&cfg, args.duration, stream, false);
        run.audit = args.audit.clone();
        let http_control;
        (run.control, http_control) =
            match super::control_paths(args.control.as_deref(), http.as_ref(), &shutdown) {
                Ok(c) => c,
                Err(code) => {
                    sim_stop.cancel();
                    return code;
                }
            };
        let (sink, url) = match super::start_http(
            http,
            &cfg,
            run.health.clone(),
            http_control,
            &shutdown,
        )
        .await
        {
            Ok(Some((sink, url))) => (Some(sink), Some(url)),
            Ok(None) => (None, None),
            Err(code) => {
                sim_stop.cancel();
                return code;
            }
        };
        // With the table on the log is quiet, so the table says where the
        // API is; without it, the log's `HTTP server listening.` line does.
        if table {
            run.sinks
                .push(Box::new(super::live_table(&cfg, &run, url.as_deref())));
        }
        if let Some(sink) = sink {
            run.sinks.push(Box::new(sink));
        }
        if let Some(r) = args.record.recorder(&cfg, "live") {
            run.sinks.push(Box::new(r));
        }
        let mut upstream = match crate::sinks::mqtt::start(&cfg) {
            Ok(u) => u,
            Err(e) => {
                error!("{e}");
                sim_stop.cancel();
                return super::EXIT_CONFIG;
            }
        };
        run.sinks.extend(upstream.take_sinks());
        let code = match run_live(&cfg, &sim.endpoints, run, shutdown.clone()).await {
            Ok(_) => 0,
            Err(e) => {
                error!("{e}");
                e.exit_code()
            }
        };
        upstream.join().await;
        sim_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(3), sim.task).await;
        code
    })
}

/// `--headless`: the lockstep run, its event file and labels.
fn headless(
    args: &DemoArgs,
    cfg: &crate::config::LoadedConfig,
    scenario: Option<&Scenario>,
    duration: Duration,
) -> i32 {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    if !cfg.config.upstream.is_empty() || !cfg.config.sparkplug_nodes.is_empty() {
        // Sim time runs far ahead of the wall clock here: a broker's
        // consumers would take its lines for the plant's present.
        warn!(
            "--headless publishes nothing upstream: [[sinks.mqtt]] and [[sinks.sparkplug]] are for live runs (the events are in --events)"
        );
    }
    if let Some(target) = args.events.as_deref() {
        match EventFile::create(target) {
            Ok(f) => sinks.push(Box::new(f)),
            Err(e) => {
                error!(path = target, error = %e, "Cannot open the event stream for writing.");
                return EXIT_FAILURE;
            }
        }
    }
    if let Some(r) = args.record.recorder(cfg, "headless") {
        // No plant to keep up with: the recording waits for the disk
        // rather than stop.
        sinks.push(Box::new(r.waiting_when_full()));
    }
    let opts = LockstepOptions {
        seed: args.seed,
        labels: labels(args),
        stop: Some(super::stop_flag_on_signals()),
        ..LockstepOptions::new(duration)
    };
    let wall = crate::wallclock::monotonic();
    match lockstep::run(cfg, scenario, &opts, sinks) {
        Ok(r) => {
            let secs = crate::wallclock::since(wall).as_secs_f64();
            info!(
                sim_s = r.sim.as_secs_f64(),
                wall_s = secs,
                x_real_time = r.sim.as_secs_f64() / secs.max(1e-9),
                ticks = r.ticks,
                events = r.events,
                samples = r.samples,
                labels = r.labels,
                stopped_by_signal = r.stopped,
                "Headless demo done."
            );
            0
        }
        Err(e) => {
            error!("{e}");
            EXIT_FAILURE
        }
    }
}
