//! The live run: sources → driver → sinks, paced by the run clock.
//!
//! This is the only place where live time meets the core. Each wake-up it
//! hands the driver every sample received so far and lets the [`Pacer`] run
//! the ticks that are due; the core decides on its own, from receive times,
//! which tick each sample belongs to. A replay drives the same [`Driver`]
//! with recorded samples and a simulated clock, and gets the same events.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{Driver, Pacer};
use crate::config::LoadedConfig;
use crate::endpoints::Endpoints;
use crate::sinks::events::EventStream;
use crate::sinks::table::LiveTable;
use crate::sinks::{Sink, SinkError};
use crate::sources::{self, health::HealthBoard};
use crate::wallclock::RunClock;

pub struct RunOptions {
    /// Stop after this long (run clock).
    pub duration: Option<Duration>,
    /// Where the output goes; each sees every tick.
    pub sinks: Vec<Box<dyn Sink>>,
    /// The sources' health, shared with whatever shows it.
    pub health: HealthBoard,
    /// What paces the ticks and where the run's epoch comes from. Sources
    /// stamp with the process's run clock (`wallclock::now_ns`), so a live
    /// run keeps the default; another clock is for tests of the loop.
    pub clock: RunClock,
    /// The guard's audit log (`--audit`). Required when a setpoint is
    /// advisory or closed-loop ([`audit_required`]).
    pub audit: Option<std::path::PathBuf>,
    /// Operator commands (`runtime::control`), applied between ticks.
    pub control: Option<super::control::ControlRx>,
}

/// Why a config cannot run live without an audit log, if it cannot: a
/// setpoint that can write (advisory, closed loop) needs one, since every
/// write decision must be recorded (IEC 62443-3-3 SR 2.8). Shadow-only
/// configs run without one; their decisions are then in the events only.
pub fn audit_required(cfg: &LoadedConfig) -> Option<String> {
    let writing: Vec<&str> = cfg
        .guard
        .setpoints
        .iter()
        .filter(|s| s.mode.writes())
        .map(|s| s.name.as_str())
        .collect();
    (!writing.is_empty()).then(|| {
        let (which, their) = match writing.as_slice() {
            [one] => (format!("setpoint {one} can"), "its"),
            _ => (format!("setpoints {} can", writing.join(", ")), "their"),
        };
        format!(
            "{which} write to the plant (advisory or closed_loop), so a live run needs --audit PATH: every write decision must be recorded durably (IEC 62443-3-3 SR 2.8); or set {their} mode to shadow"
        )
    })
}

impl RunOptions {
    /// No sinks yet, the process's run clock.
    pub fn new(duration: Option<Duration>) -> Self {
        RunOptions {
            duration,
            sinks: Vec::new(),
            health: HealthBoard::default(),
            clock: RunClock::system(),
            audit: None,
            control: None,
        }
    }

    /// The command line's outputs: the event stream if one was opened, and
    /// the live table if asked for.
    pub fn standard(
        cfg: &LoadedConfig,
        duration: Option<Duration>,
        events: Option<EventStream>,
        table: bool,
    ) -> Self {
        let mut opts = RunOptions::new(duration);
        if let Some(stream) = events {
            opts.sinks.push(Box::new(stream));
        }
        if table {
            opts.sinks
                .push(Box::new(LiveTable::new(cfg, opts.health.clone())));
        }
        opts
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub ticks: u64,
    pub events: u64,
    pub samples: u64,
    /// The run's epoch (time of tick 0), ns since the Unix epoch.
    pub epoch_ns: i64,
    /// How far behind the run clock the tick loop was at worst.
    pub max_behind: Duration,
    /// Steps of the system clock seen during the run.
    pub clock_steps: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Build(#[from] sources::BuildError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Models(#[from] crate::ml::MlSetupError),
    #[error("{0}")]
    AuditRequired(String),
    #[error(transparent)]
    Audit(#[from] crate::guard::audit::AuditError),
}

impl RunError {
    /// The exit code: a credential or TLS file or variable that the config
    /// names and that cannot be used is the config's problem, as a token
    /// file or `--http-tls-cert` is (EX_CONFIG); the rest are runtime
    /// failures.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Build(sources::BuildError::Mqtt(_)) => crate::cli::EXIT_CONFIG,
            _ => crate::cli::EXIT_FAILURE,
        }
    }
}

pub async fn run_live(
    cfg: &LoadedConfig,
    endpoints: &Endpoints,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunSummary, RunError> {
    if opts.audit.is_none()
        && let Some(why) = audit_required(cfg)
    {
        return Err(RunError::AuditRequired(why));
    }
    let clock = opts.clock;
    let start = clock.now_ns();
    let mut driver = Driver::new(cfg, start).with_models(cfg)?;
    // Outputs first: one that cannot start (a recording on a path that
    // cannot be written) stops the run before it touches the plant.
    for sink in opts.sinks {
        driver.add_sink(sink)?;
    }
    let stop_sources = shutdown.child_token();
    let built = sources::build_with_links(cfg, endpoints, &stop_sources)?;
    let health = opts.health;
    if crate::guard::state(driver.core()).is_some() || cfg.guard.watchdog.is_some() {
        // The log is opened before any source starts: a log that cannot be
        // opened (locked by another twin, a broken chain) stops the run
        // before it reads the plant.
        let log = match &opts.audit {
            Some(path) => Some(crate::guard::audit::AuditLog::open(path, start)?),
            None => None,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let modbus = crate::sources::modbus::writer::ModbusWriter::from_config(cfg, &built.links)
            .map(std::sync::Arc::new);
        let handle = tokio::runtime::Handle::current();
        // A writer only with a log: no write without its record.
        let writer: Option<Box<dyn crate::guard::SetpointWriter + Send>> = if log.is_some()
            && crate::guard::state(driver.core()).is_some()
            && cfg.guard.setpoints.iter().any(|s| s.mode.writes())
        {
            let w = super::guard_io::LiveWriter::new(
                cfg,
                modbus.clone(),
                &built,
                handle.clone(),
                tx.clone(),
                &stop_sources,
            )
            .map_err(sources::BuildError::from)?;
            Some(Box::new(w))
        } else {
            None
        };
        let heartbeat = match (&cfg.guard.watchdog, &modbus) {
            (Some(wd), Some(w)) => Some(super::guard_io::Heartbeat::new(wd, w.clone(), handle)),
            _ => None,
        };
        let io = super::guard_io::GuardIo::new(
            driver.core_mut(),
            cfg,
            log,
            writer,
            (tx, rx),
            health.clone(),
            heartbeat,
        );
        driver.attach_guard_io(io);
    }
    let recorded = cfg.recorded_tags();
    if !recorded.is_empty() {
        warn!(
            tags = recorded.len(),
            first = recorded[0],
            "Some tags are declared in [[sources.recorded]]: only recordings provide them, so in a live run they stay no_data. Replay an import to see them (`twin replay`)."
        );
    }
    // Batches, so this bounds polls/messages in flight, not samples.
    let (tx, mut rx) = mpsc::channel(4_096);
    let mut tasks = Vec::new();
    for s in built.sources {
        info!(source = s.name(), "Starting source.");
        let source_health = health.register(s.name(), s.kind());
        tasks.push(tokio::spawn(s.start(sources::SourceContext {
            tx: tx.clone(),
            shutdown: stop_sources.clone(),
            health: source_health,
        })));
    }
    drop(tx);

    let mut pacer = Pacer::new(clock.clone());
    let deadline = opts
        .duration
        .map(|d| start.saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)));

    info!(plant = %cfg.config.plant.name, tick = ?cfg.config.plant.tick, tags = cfg.tags.len(),
        epoch_ns = driver.epoch_ns(), "Twin running.");
    let mut failed = None;
    let mut control = opts.control;
    // One timer for the tick, re-armed once per wake-up.
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    loop {
        let next = driver.next_tick_ns();
        if deadline.is_some_and(|d| next > d) {
            break;
        }
        timer.as_mut().reset(clock.deadline(next));
        // Between ticks, batches are moved into the core's inbox as they
        // arrive, so the channel never fills up however many messages a tick
        // brings; the core still applies each sample on its tick.
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                () = &mut timer => break,
                req = next_control(&mut control) => match req {
                    Some(req) => {
                        let reply = super::control::apply(driver.core_mut(), &req.op, &req.operator);
                        // A requester that went away needs no answer.
                        let _ = req.reply.send(reply);
                    }
                    None => control = None,
                },
                batch = rx.recv() => match batch {
                    Some(batch) => driver.push_batch(batch),
                    // Every source has stopped; keep ticking for staleness.
                    None => (&mut timer).await,
                },
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        while let Ok(batch) = rx.try_recv() {
            driver.push_batch(batch);
        }
        let wake = pacer.wake(&mut driver);
        // An output that failed ends the run: the event stream's reader going
        // away (`| head`) is a normal end, anything else an error.
        let failures = driver.take_failures();
        if !failures.is_empty() {
            for e in failures {
                match e {
                    SinkError::Closed { .. } => {
                        info!(error = %e, "An output's reader went away; stopping.");
                    }
                    SinkError::Io { .. } | SinkError::Stopped { .. } => {
                        failed.get_or_insert(e);
                    }
                }
            }
            break;
        }
        if wake.due {
            // Catching up: let the sources' tasks in before the next burst.
            tokio::task::yield_now().await;
        }
    }

    stop_sources.cancel();
    for t in tasks {
        if tokio::time::timeout(Duration::from_secs(3), t)
            .await
            .is_err()
        {
            warn!("A source did not stop within 3 s; abandoning it.");
        }
    }
    for e in driver.finish() {
        warn!(error = %e, "An output could not be flushed at shutdown.");
    }
    for (name, h) in health.snapshot() {
        info!(source = %name, kind = h.kind, up = h.up, reason = h.reason.map_or("", |r| r.as_str()), ok = h.ok,
            failures = h.failures, rejected = h.rejected, recoveries = h.recoveries, clock_skew = h.clock_skew,
            "Source health at shutdown.");
    }
    if let Some((seq, head)) = driver.guard_io().and_then(|io| io.audit_head()) {
        info!(seq, head = %head, "Audit log closed; note its head to anchor the chain (docs/audit.md).");
    }
    let stats = driver.stats();
    let core_stats = driver.core().stats();
    let summary = RunSummary {
        ticks: stats.ticks,
        events: stats.events,
        samples: stats.samples,
        epoch_ns: driver.epoch_ns(),
        max_behind: pacer.max_behind(),
        clock_steps: pacer.clock_steps(),
    };
    info!(
        ticks = summary.ticks,
        events = summary.events,
        samples = summary.samples,
        clamped = stats.clamped,
        out_of_order = core_stats.out_of_order,
        non_finite = core_stats.non_finite,
        future_source_time = core_stats.future_source_time,
        max_behind_ms = summary.max_behind.as_millis() as u64,
        clock_steps = summary.clock_steps,
        "Twin stopped."
    );
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(summary),
    }
}

/// The next control request, or never without a control channel.
async fn next_control(
    control: &mut Option<super::control::ControlRx>,
) -> Option<super::control::ControlRequest> {
    match control {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
