//! `twin run CONFIG`: the live twin.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tracing::error;

use super::EXIT_FAILURE;
use super::load::load;
use super::output::Stderr;
use crate::endpoints::Endpoints;
use crate::runtime::{RunOptions, run_live};

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Plant config file.
    pub config: PathBuf,
    /// Write the event stream (JSON lines) to PATH, or `-` for stdout.
    #[arg(long, value_name = "PATH|-")]
    pub events: Option<String>,
    #[command(flatten)]
    pub events_policy: super::EventsPolicy,
    #[command(flatten)]
    pub record: super::RecordArgs,
    /// Stop after this long, e.g. `30s` or `10m`.
    #[arg(long = "for", value_name = "DURATION", value_parser = super::parse_duration)]
    pub duration: Option<Duration>,
    /// Read endpoint overrides from a JSON file (as written by `twin sim --endpoints-out`).
    #[arg(long, value_name = "FILE")]
    pub endpoints: Option<PathBuf>,
    /// Connect Modbus device DEVICE at HOST:PORT instead of its configured address.
    #[arg(long = "modbus", value_name = "DEVICE=HOST:PORT", value_parser = super::parse_modbus_override)]
    pub modbus: Vec<String>,
    /// Connect MQTT or Sparkplug source SOURCE to the broker at URL
    /// (mqtt://host:port or mqtts://host:port).
    #[arg(long = "mqtt", value_name = "SOURCE=URL", value_parser = super::parse_override)]
    pub mqtt: Vec<String>,
    /// Do not show the live table even if stdout is a terminal.
    #[arg(long)]
    pub no_table: bool,
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

pub(crate) fn endpoints(
    file: Option<&std::path::Path>,
    modbus: &[String],
    mqtt: &[String],
) -> Result<Endpoints, crate::endpoints::EndpointsError> {
    let mut ep = match file {
        Some(f) => Endpoints::load(f)?,
        None => Endpoints::default(),
    };
    Endpoints::apply(&mut ep.modbus, modbus)?;
    Endpoints::apply(&mut ep.mqtt, mqtt)?;
    Ok(ep)
}

pub fn run(args: RunArgs, log: Option<&str>) -> i32 {
    let (events, table) = super::outputs(args.events.as_deref(), args.no_table);
    super::init_logging(log, table);
    let cfg = match load(&args.config, Stderr::Queue) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(code) = super::check_audit(&cfg, args.audit.as_deref()) {
        return code;
    }
    let ep = match endpoints(args.endpoints.as_deref(), &args.modbus, &args.mqtt) {
        Ok(e) => e,
        Err(e) => {
            error!("{e}");
            return EXIT_FAILURE;
        }
    };
    let http = match args.http.prepare() {
        Ok(h) => h,
        Err(code) => return code,
    };
    let stream = match super::open_events(events, &args.events_policy) {
        Ok(s) => s,
        Err(code) => return code,
    };
    super::block_on(|shutdown| async move {
        // The table is added below, once it can show the HTTP address.
        let mut opts = RunOptions::standard(&cfg, args.duration, stream, false);
        opts.audit = args.audit.clone();
        let http_control;
        (opts.control, http_control) =
            match super::control_paths(args.control.as_deref(), http.as_ref(), &shutdown) {
                Ok(c) => c,
                Err(code) => return code,
            };
        let (sink, url) =
            match super::start_http(http, &cfg, opts.health.clone(), http_control, &shutdown).await
            {
                Ok(Some((sink, url))) => (Some(sink), Some(url)),
                Ok(None) => (None, None),
                Err(code) => return code,
            };
        if table {
            opts.sinks
                .push(Box::new(super::live_table(&cfg, &opts, url.as_deref())));
        }
        if let Some(sink) = sink {
            opts.sinks.push(Box::new(sink));
        }
        if let Some(r) = args.record.recorder(&cfg, "live") {
            opts.sinks.push(Box::new(r));
        }
        let mut upstream = match crate::sinks::mqtt::start(&cfg) {
            Ok(u) => u,
            Err(e) => {
                // Its credentials or TLS files, as the config names them.
                error!("{e}");
                return super::EXIT_CONFIG;
            }
        };
        opts.sinks.extend(upstream.take_sinks());
        let code = match run_live(&cfg, &ep, opts, shutdown).await {
            Ok(_) => 0,
            Err(e) => {
                error!("{e}");
                e.exit_code()
            }
        };
        // What the publishers still hold goes to the broker first, within
        // their drain_timeout.
        upstream.join().await;
        code
    })
}
