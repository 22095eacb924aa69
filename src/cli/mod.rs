//! The `twin` command line: one module per subcommand. The binary only parses
//! arguments and maps the outcome to an exit code.

pub mod audit;
pub mod check;
pub mod control;
pub mod demo;
pub mod diff;
pub mod expect;
pub mod export;
pub mod import;
mod load;
pub mod logging;
mod output;
mod record;
pub mod recover;
pub mod replay;
pub mod report;
pub mod run;
pub mod sim;
pub mod snapshot;
pub mod whatif;

use std::io::IsTerminal;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

pub use record::{RecordArgs, Rotate};

use crate::sinks::events::{EventOptions, EventStream, Overflow};

/// Exit code for an invalid config (sysexits EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;
/// Exit code when something the command needs is missing from the machine
/// (sysexits EX_UNAVAILABLE): `twin check` without the ONNX Runtime library
/// for a config's models.
pub const EXIT_UNAVAILABLE: i32 = 69;
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
    #[arg(long, global = true, env = "TWIN_LOG", value_name = "FILTER")]
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
    /// Replay a recording through the twin, as fast as the CPU goes.
    Replay(replay::ReplayArgs),
    /// Write a clean copy of a recording that a crash cut off.
    Recover(recover::RecoverArgs),
    /// What changed between two event streams: events added, removed, changed.
    Diff(diff::DiffArgs),
    /// Check an event stream against expectations (EXPECT.toml); JUnit XML for CI.
    Expect(expect::ExpectArgs),
    /// Foreign data (CSV, JSON lines) into a recording.
    Import(import::ImportArgs),
    /// A recording's samples as CSV.
    Export(export::ExportArgs),
    /// Write one self-contained HTML report (plots, tables) of an event stream.
    Report(report::ReportArgs),
    /// Query the guard's audit log (filters, CSV), or `verify` its hash chain.
    Audit(audit::AuditArgs),
    /// Approve a pending advisory proposal on a running twin (--control).
    Approve(control::IdArgs),
    /// Reject a pending advisory proposal on a running twin (--control).
    Reject(control::IdArgs),
    /// Unlock a setpoint locked after a read-back mismatch (--control).
    Reset(control::ResetArgs),
    /// Stop every setpoint write on a running twin, or lift that with --off.
    Kill(control::KillArgs),
    /// List a running twin's pending proposals and locked setpoints.
    Pending(control::PendingArgs),
    /// Propose a setpoint value as an operator (decided by its mode).
    Propose(control::ProposeArgs),
}

/// Parse a duration such as `30s`, `5m` or `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 30s, 5m, 250ms)"))
}

/// A period or interval: a duration above zero. Zero would make a timer
/// panic or spin (`twin sim --update 0s` did), or put every row at one time.
pub fn parse_period(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be above zero (use e.g. 250ms, 1s, 5m)".to_string()),
        d => Ok(d),
    }
}

/// A `NAME=VALUE` endpoint override, checked for its shape only (the names
/// are checked against the config later), so a malformed one is a usage
/// error like any other unparsable value.
pub fn parse_override(s: &str) -> Result<String, String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok(s.to_string()),
        _ => Err("expected NAME=VALUE: a device or source name, then its address".to_string()),
    }
}

/// A `DEVICE=HOST:PORT` Modbus override. The address is checked as the
/// config checks a device's `address`: without it `--modbus plc=10.0.0.5`
/// (no port) or a port over 65535 was taken, and the device then stayed
/// unreachable for the whole run with only a warning in the log.
pub fn parse_modbus_override(s: &str) -> Result<String, String> {
    parse_override(s)?;
    let addr = s.split_once('=').map_or("", |(_, v)| v);
    if crate::endpoints::is_host_port(addr) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "the address \"{addr}\" is not HOST:PORT with a port 1..=65535, e.g. plc=192.168.10.21:502"
        ))
    }
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
    let (env_filter, refused) =
        match tracing_subscriber::EnvFilter::try_new(filter.unwrap_or(default)) {
            Ok(f) => (f, None),
            Err(e) => (tracing_subscriber::EnvFilter::new(default), Some(e)),
        };
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(logging::Stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // Its internal errors go to `eprintln!`, which panics when stderr
        // fails; our writer never reports one anyway.
        .log_internal_errors(false)
        .finish()
        .with(logging::BenignBrokerNoise::default())
        .try_init();
    // A typo in `--log` must not silently change what the user sees.
    if let (Some(e), Some(f)) = (refused, filter) {
        tracing::warn!(filter = f, error = %e, default, "The log filter does not parse; using the default.");
    }
}

/// A token cancelled on SIGINT or SIGTERM. It is cancelled before anything
/// is logged, so a stop never depends on stderr.
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
        let signal = tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term => "SIGTERM",
        };
        t.cancel();
        tracing::info!(signal, "Signal received; shutting down.");
    });
    token
}

/// How the event stream behaves when its reader falls behind
/// (`twin run` and `twin demo`).
#[derive(Debug, Clone, clap::Args)]
pub struct EventsPolicy {
    /// When the event reader falls behind by more than --events-buffer:
    /// `drop` whole ticks and write a `gap` line once it catches up, or
    /// `fail` the run (exit 1).
    #[arg(long = "events-overflow", value_name = "drop|fail", default_value = "drop", value_parser = parse_overflow, requires = "events")]
    pub overflow: Overflow,
    /// Bytes of events held for a reader that falls behind, e.g. `8MiB`,
    /// `512KiB`.
    #[arg(long = "events-buffer", value_name = "SIZE", default_value = "8MiB", value_parser = parse_size, requires = "events")]
    pub buffer: usize,
}

fn parse_overflow(s: &str) -> Result<Overflow, String> {
    match s {
        "drop" => Ok(Overflow::Drop),
        "fail" => Ok(Overflow::Fail),
        _ => Err("expected `drop` or `fail`".to_string()),
    }
}

/// A byte count: a number with an optional `B`, `KiB`, `MiB` or `GiB`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let scale: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit `{other}` (use B, KiB, MiB or GiB, e.g. 8MiB)"
            ));
        }
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|n| *n > 0)
        .ok_or_else(|| "expected a size above zero, e.g. 8MiB or 512KiB".to_string())
}

/// Where the event stream goes and whether the live table is shown.
pub fn outputs(events: Option<&str>, no_table: bool) -> (Option<&str>, bool) {
    let table = !no_table && events != Some("-") && std::io::stdout().is_terminal();
    (events, table)
}

/// A usage error, as clap reports one.
pub const EXIT_USAGE: i32 = 2;

/// A live run of a config whose setpoints can write needs `--audit`
/// (`runtime::live::audit_required`); without it, a usage error that says
/// why.
pub(crate) fn check_audit(
    cfg: &crate::config::LoadedConfig,
    audit: Option<&std::path::Path>,
) -> Result<(), i32> {
    match (audit, crate::runtime::live::audit_required(cfg)) {
        (None, Some(why)) => {
            tracing::error!("{why}");
            Err(EXIT_USAGE)
        }
        _ => Ok(()),
    }
}

pub fn run(cli: Cli) -> i32 {
    let code = run_command(cli);
    logging::finish();
    code
}

fn run_command(cli: Cli) -> i32 {
    match cli.command {
        Command::Check(args) => {
            init_logging(cli.log.as_deref(), false);
            check::run(&args)
        }
        Command::Run(args) => run::run(args, cli.log.as_deref()),
        Command::Sim(args) => sim::run(args, cli.log.as_deref()),
        Command::Demo(args) => demo::run(args, cli.log.as_deref()),
        Command::Whatif(args) => {
            // A live read's run logs are noise next to the forecast.
            init_logging(cli.log.as_deref(), true);
            whatif::run(&args)
        }
        Command::Snapshot(args) => {
            init_logging(cli.log.as_deref(), false);
            snapshot::run(&args)
        }
        Command::Replay(args) => replay::run(args, cli.log.as_deref()),
        Command::Recover(args) => {
            init_logging(cli.log.as_deref(), false);
            recover::run(&args)
        }
        Command::Diff(args) => {
            init_logging(cli.log.as_deref(), false);
            diff::run(&args)
        }
        Command::Expect(args) => {
            init_logging(cli.log.as_deref(), false);
            expect::run(&args)
        }
        Command::Import(args) => {
            init_logging(cli.log.as_deref(), false);
            import::run(&args)
        }
        Command::Export(args) => {
            init_logging(cli.log.as_deref(), false);
            export::run(&args)
        }
        Command::Report(args) => {
            init_logging(cli.log.as_deref(), false);
            report::run(&args)
        }
        Command::Audit(args) => {
            init_logging(cli.log.as_deref(), false);
            audit::run(&args)
        }
        Command::Approve(a) => control_client(cli.log.as_deref(), || control::approve(&a)),
        Command::Reject(a) => control_client(cli.log.as_deref(), || control::reject(&a)),
        Command::Reset(a) => control_client(cli.log.as_deref(), || control::reset(&a)),
        Command::Kill(a) => control_client(cli.log.as_deref(), || control::kill(&a)),
        Command::Pending(a) => control_client(cli.log.as_deref(), || control::pending(&a)),
        Command::Propose(a) => control_client(cli.log.as_deref(), || control::propose(&a)),
    }
}

fn control_client(log: Option<&str>, f: impl FnOnce() -> i32) -> i32 {
    init_logging(log, false);
    f()
}

/// `--http ADDR` and its token file (`twin run`, `twin demo`, `twin
/// replay`; docs/api.md).
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Serve the HTTP API and Prometheus /metrics on ADDR, e.g.
    /// `127.0.0.1:8080` (port 0: the system picks one; the log says which).
    /// Without --http-tokens it is read-only and loopback only.
    #[arg(long, value_name = "ADDR")]
    pub http: Option<std::net::SocketAddr>,
    /// The bearer tokens of the HTTP API: lines `name role token`, role
    /// `viewer` or `operator`; the file must be private (mode 0600).
    /// Tokens are never taken on the command line.
    #[arg(long, value_name = "FILE", env = "TWIN_HTTP_TOKENS_FILE")]
    pub http_tokens: Option<std::path::PathBuf>,
    /// Serve HTTPS with this certificate: PEM, the server's certificate
    /// first, then its chain. Needs --http-tls-key.
    #[arg(
        long,
        value_name = "FILE",
        requires = "http",
        requires = "http_tls_key"
    )]
    pub http_tls_cert: Option<std::path::PathBuf>,
    /// The private key of --http-tls-cert: PEM, unencrypted (keep the file
    /// private). Needs --http-tls-cert.
    #[arg(
        long,
        value_name = "FILE",
        requires = "http",
        requires = "http_tls_cert"
    )]
    pub http_tls_key: Option<std::path::PathBuf>,
}

impl HttpArgs {
    /// Check `--http` before the run starts: the token file, the no-token
    /// loopback rule, the TLS certificate and key. `None` without `--http`;
    /// the exit code on an error (a usage error, or a bad token, certificate
    /// or key file as a bad config).
    pub(crate) fn prepare(&self) -> Result<Option<crate::http::HttpConfig>, i32> {
        let Some(addr) = self.http else {
            return Ok(None);
        };
        let cfg = crate::http::HttpConfig::new(addr, self.http_tokens.as_deref()).and_then(|c| {
            match (&self.http_tls_cert, &self.http_tls_key) {
                (Some(cert), Some(key)) => c.with_tls(cert, key),
                // clap has them both or neither.
                _ => Ok(c),
            }
        });
        match cfg {
            Ok(c) => Ok(Some(c)),
            Err(e) => {
                tracing::error!("{e}");
                Err(match e {
                    crate::http::HttpError::Tokens(_) | crate::http::HttpError::Tls(_) => {
                        EXIT_CONFIG
                    }
                    _ => EXIT_USAGE,
                })
            }
        }
    }
}

/// The operator paths of a live run: the Unix socket (`--control`) and the
/// HTTP surface (`--http` with tokens) share one channel into the tick
/// loop. Serves the socket if asked; returns the receiver for the loop (if
/// anyone can send) and the HTTP surface's sender.
pub(crate) fn control_paths(
    socket: Option<&std::path::Path>,
    http: Option<&crate::http::HttpConfig>,
    shutdown: &CancellationToken,
) -> Result<
    (
        Option<crate::runtime::control::ControlRx>,
        Option<crate::runtime::control::ControlTx>,
    ),
    i32,
> {
    let http = http.is_some_and(|h| h.takes_control());
    if socket.is_none() && !http {
        return Ok((None, None));
    }
    let (tx, rx) = crate::runtime::control::channel();
    if let Some(path) = socket
        && let Err(e) = crate::runtime::control::serve(path, tx.clone(), shutdown.clone())
    {
        tracing::error!("{e}");
        return Err(EXIT_FAILURE);
    }
    Ok((Some(rx), http.then_some(tx)))
}

/// The live table of a run, with the HTTP API's address under its header
/// when there is one.
pub(crate) fn live_table(
    cfg: &crate::config::LoadedConfig,
    opts: &crate::runtime::RunOptions,
    http: Option<&str>,
) -> crate::sinks::table::LiveTable {
    let table = crate::sinks::table::LiveTable::new(cfg, opts.health.clone());
    match http {
        Some(url) => table.with_note(format!("HTTP API and /metrics: {url} (docs/api.md)")),
        None => table,
    }
}

/// Start the HTTP surface (if `--http`): its sink for the run's fan-out,
/// and the URL it listens on.
pub(crate) async fn start_http(
    http: Option<crate::http::HttpConfig>,
    cfg: &crate::config::LoadedConfig,
    health: crate::sources::health::HealthBoard,
    control: Option<crate::runtime::control::ControlTx>,
    shutdown: &CancellationToken,
) -> Result<Option<(crate::http::HttpSink, String)>, i32> {
    let Some(http) = http else {
        return Ok(None);
    };
    let shared = crate::http::Shared::new(cfg, health);
    let sink = crate::http::HttpSink::new(cfg, shared.clone());
    match crate::http::serve(http, shared, control, shutdown.clone()).await {
        Ok(addr) => Ok(Some((sink, format!("http://{addr}")))),
        Err(e) => {
            tracing::error!("{e}");
            Err(EXIT_FAILURE)
        }
    }
}

/// Open the event stream, if one was asked for; log and give the exit code
/// if it cannot be opened.
pub(crate) fn open_events(
    events: Option<&str>,
    policy: &EventsPolicy,
) -> Result<Option<EventStream>, i32> {
    let options = EventOptions {
        overflow: policy.overflow,
        buffer_bytes: policy.buffer,
    };
    events
        .map(|target| EventStream::open_with(target, options))
        .transpose()
        .map_err(|e| {
            tracing::error!(path = events.unwrap_or(""), error = %e, "Cannot open the event stream for writing.");
            EXIT_FAILURE
        })
}

/// For the synchronous headless runs: a flag that SIGINT and SIGTERM set, so
/// the run stops at its next step and closes its files as at the end of
/// `--for` (without it a Ctrl-C killed the process, leaving a recording to
/// `twin recover` and no summary). The signals are watched on a thread of
/// its own, registered before this returns.
pub(crate) fn stop_flag_on_signals() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("twin-signals".into())
        .spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                let _ = ready_tx.send(());
                return;
            };
            rt.block_on(async move {
                let token = shutdown_on_signals();
                // Let the watcher task register its handlers first.
                tokio::task::yield_now().await;
                let _ = ready_tx.send(());
                token.cancelled().await;
                set.store(true, Ordering::Relaxed);
            });
        });
    if spawned.is_ok() {
        let _ = ready_rx.recv_timeout(Duration::from_secs(2));
    }
    flag
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_buffer_sizes_parse_with_binary_units() {
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("8MB").is_err_and(|e| e.contains("MiB")));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
        assert_eq!(parse_overflow("fail"), Ok(Overflow::Fail));
        assert!(parse_overflow("block").is_err());
    }

    #[test]
    fn the_tls_files_come_both_or_neither_and_with_http() {
        use clap::Parser;
        let parse = |extra: &[&str]| {
            let mut args = vec!["twin", "demo", "--no-table"];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let http = ["--http", "127.0.0.1:0"];
        let cert = ["--http-tls-cert", "server.crt"];
        let key = ["--http-tls-key", "server.key"];
        for alone in [&cert, &key] {
            let e = parse(&[&http[..], &alone[..]].concat()).expect_err("one without the other");
            assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        }
        let e = parse(&[&cert[..], &key[..]].concat()).expect_err("TLS without --http");
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(e.to_string().contains("--http <ADDR>"), "{e}");
        let both = [&http[..], &cert[..], &key[..]].concat();
        let Ok(Cli {
            command: Command::Demo(args),
            ..
        }) = parse(&both)
        else {
            panic!("--http with both files parses as a demo");
        };
        assert_eq!(
            args.http.http_tls_key.as_deref(),
            Some(std::path::Path::new("server.key"))
        );
    }
}
