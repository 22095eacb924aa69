//! The `twin` command line: one module per subcommand. The binary only parses
//! arguments and maps the outcome to an exit code.

pub mod check;
pub mod demo;
mod load;
pub mod run;
pub mod sim;
pub mod snapshot;
pub mod whatif;

use std::io::IsTerminal;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Exit code for an invalid config (sysexits EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;
/// Exit code for a runtime failure.
pub const EXIT_FAILURE: i32 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "twin",
    version,
    about = "Industrial digital-twin runtime: live mirror of a plant over Modbus TCP and MQTT, in one deterministic process.",
    propagate_version = true
)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `twin=debug`.
    /// Logs go to stderr.
    #[arg(long, global = true, env = "TWIN_LOG")]
    pub log: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate plant configs without touching the plant.
    Check(check::CheckArgs),
    /// Connect to the plant's devices and brokers and run the twin.
    Run(run::RunArgs),
    /// Serve a virtual plant for a config: Modbus TCP servers and MQTT publishers.
    Sim(sim::SimArgs),
    /// Start the virtual packaging line and the twin on it, in one process.
    Demo(demo::DemoArgs),
    /// Forecast a line under candidate setpoints (belt speeds, cycle times).
    Whatif(whatif::WhatifArgs),
    /// Draw a config's lines from above (SVG), after simulating them for a while.
    Snapshot(snapshot::SnapshotArgs),
}

/// Parse a duration such as `30s`, `5m` or `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 30s, 5m, 250ms)"))
}

/// Install the log subscriber. `quiet_default` lowers the default level when
/// the live table owns the terminal.
pub fn init_logging(filter: Option<&str>, quiet_default: bool) {
    // rumqttd logs every connection at info; keep the embedded broker quiet.
    let default = if quiet_default {
        "warn"
    } else {
        "info,rumqttd=warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_new(filter.unwrap_or(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// A token cancelled on SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let term = async {
            #[cfg(unix)]
            {
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            }
            #[cfg(not(unix))]
            std::future::pending::<()>().await
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received; shutting down."),
            _ = term => tracing::info!("SIGTERM received; shutting down."),
        }
        t.cancel();
    });
    token
}

/// Where the event stream goes and whether the live table is shown.
pub fn outputs(events: Option<&str>, no_table: bool) -> (Option<&str>, bool) {
    let table = !no_table && events != Some("-") && std::io::stdout().is_terminal();
    (events, table)
}

pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Check(args) => {
            init_logging(cli.log.as_deref(), false);
            check::run(&args)
        }
        Command::Run(args) => run::run(args, cli.log.as_deref()),
        Command::Sim(args) => sim::run(args, cli.log.as_deref()),
        Command::Demo(args) => demo::run(args, cli.log.as_deref()),
        Command::Whatif(args) => {
            init_logging(cli.log.as_deref(), false);
            whatif::run(&args)
        }
        Command::Snapshot(args) => {
            init_logging(cli.log.as_deref(), false);
            snapshot::run(&args)
        }
    }
}

/// Open the event stream, if one was asked for; log and give the exit code
/// if it cannot be opened.
pub(crate) fn open_events(
    events: Option<&str>,
) -> Result<Option<crate::sinks::events::EventStream>, i32> {
    events
        .map(crate::sinks::events::EventStream::open)
        .transpose()
        .map_err(|e| {
            tracing::error!(path = ?events, error = %e, "Cannot open the event stream for writing.");
            EXIT_FAILURE
        })
}

/// Run an async command body on a fresh runtime, with a shutdown token that
/// SIGINT and SIGTERM cancel. Returns the body's exit code.
pub(crate) fn block_on<F, Fut>(body: F) -> i32
where
    F: FnOnce(CancellationToken) -> Fut,
    Fut: std::future::Future<Output = i32>,
{
    // One worker thread runs every source (I/O tasks wake each other on one
    // thread, no cross-thread hand-offs); the core's tick loop runs on the
    // calling thread (`block_on`), so a long tick (physics, inference in later
    // stages) never delays a poll, and a burst of I/O never delays a tick.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "Cannot start the async runtime.");
            return EXIT_FAILURE;
        }
    };
    rt.block_on(async move { body(shutdown_on_signals()).await })
}
