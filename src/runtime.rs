//! The live driver: sources → core → sinks, paced by the wall clock.
//!
//! This is the only place where live time meets the core. Each tick it hands
//! the core every sample received so far and advances it to the current wall
//! time; the core decides on its own, from receive times, which tick each
//! sample belongs to. A replay driver does the same with recorded samples and
//! a simulated clock, and gets the same events.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::LoadedConfig;
use crate::endpoints::Endpoints;
use crate::sinks::events::EventStream;
use crate::sinks::table::LiveTable;
use crate::sources;
use crate::twin::{TickClock, TwinCore};
use crate::wallclock;

pub struct RunOptions {
    /// Stop after this long (wall clock).
    pub duration: Option<Duration>,
    pub events: Option<EventStream>,
    /// Show the live table on stdout.
    pub table: bool,
}

#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub ticks: u64,
    pub events: u64,
    pub samples: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Build(#[from] sources::BuildError),
    #[error("cannot write the event stream to {target}: {source}")]
    Events {
        target: String,
        source: std::io::Error,
    },
}

const TABLE_REFRESH: Duration = Duration::from_millis(500);

pub async fn run_live(
    cfg: &LoadedConfig,
    endpoints: &Endpoints,
    mut opts: RunOptions,
    shutdown: CancellationToken,
) -> Result<RunSummary, RunError> {
    let stop_sources = shutdown.child_token();
    let built = sources::build(cfg, endpoints, &stop_sources)?;
    // Batches, so this bounds polls/messages in flight, not samples.
    let (tx, mut rx) = mpsc::channel(4_096);
    let mut tasks = Vec::new();
    let health = sources::health::HealthBoard::default();
    for s in built {
        info!(source = s.name(), "Starting source.");
        let source_health = health.register(s.name(), s.kind());
        tasks.push(tokio::spawn(s.start(sources::SourceContext {
            tx: tx.clone(),
            shutdown: stop_sources.clone(),
            health: source_health,
        })));
    }
    drop(tx);

    let start = wallclock::now_ns();
    let mut core = TwinCore::new(cfg, TickClock::new(start, cfg.config.plant.tick));
    let deadline = opts
        .duration
        .map(|d| start.saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)));
    let mut table = opts.table.then(|| LiveTable::new(cfg));
    let mut last_draw = wallclock::monotonic() - TABLE_REFRESH;
    let mut summary = RunSummary::default();
    let mut buf = Vec::with_capacity(64 * 1024);

    info!(plant = %cfg.config.plant.name, tick = ?cfg.config.plant.tick, tags = cfg.tags.len(), "Twin running.");
    // A sample delivered after the tick its receive time belongs to has
    // already run is, for the core, received after that tick. Clamping makes
    // the pushed stream (what a recorder keeps) replay to exactly the ticks it
    // was applied on live.
    let push =
        |core: &mut TwinCore, summary: &mut RunSummary, mut batch: Vec<crate::twin::Sample>| {
            let applied_up_to = core.clock().now_ns();
            summary.samples += batch.len() as u64;
            for s in &mut batch {
                s.recv_time_ns = s.recv_time_ns.max(applied_up_to + 1);
            }
            core.push_batch(batch);
        };
    // One timer for the tick, re-armed once per tick.
    let timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(timer);
    loop {
        let clock = core.clock();
        let next = clock.time_of(clock.tick() + 1);
        if deadline.is_some_and(|d| next > d) {
            break;
        }
        timer
            .as_mut()
            .reset(wallclock::tokio_now() + wallclock::until(next));
        // Between ticks, batches are moved into the core's inbox as they
        // arrive, so the channel never fills up however many messages a tick
        // brings; the core still applies each sample on its tick.
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                () = &mut timer => break,
                batch = rx.recv() => match batch {
                    Some(batch) => push(&mut core, &mut summary, batch),
                    // Every source has stopped; keep ticking for staleness.
                    None => (&mut timer).await,
                },
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
        while let Ok(batch) = rx.try_recv() {
            push(&mut core, &mut summary, batch);
        }
        // Catch up tick by tick if the process was stalled.
        let now = wallclock::now_ns();
        while core.clock().time_of(core.clock().tick() + 1) <= now {
            core.advance();
            summary.ticks += 1;
        }
        let events = core.drain_events();
        summary.events += events.len() as u64;
        if let Some(stream) = opts.events.as_mut() {
            buf.clear();
            core.encode_events(&events, &mut buf);
            if let Err(source) = stream.write_batch(&buf) {
                if source.kind() == std::io::ErrorKind::BrokenPipe {
                    info!(
                        target = stream.target(),
                        "Event stream reader went away; stopping."
                    );
                    break;
                }
                stop_sources.cancel();
                return Err(RunError::Events {
                    target: stream.target().to_string(),
                    source,
                });
            }
        }
        if let Some(t) = table.as_mut()
            && wallclock::since(last_draw) >= TABLE_REFRESH
        {
            last_draw = wallclock::monotonic();
            let clock = core.clock();
            let text = t.render(
                clock.now_ns(),
                clock.tick(),
                &core.tag_states(),
                summary.events,
                &health.snapshot(),
                &core.lines().iter().map(|l| l.summary()).collect::<Vec<_>>(),
            );
            if t.draw(&text).is_err() {
                table = None;
            }
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
    if let Some(stream) = opts.events.as_mut() {
        let _ = stream.flush();
    }
    for (name, h) in health.snapshot() {
        info!(source = %name, kind = h.kind, up = h.up, reason = h.reason.map_or("", |r| r.as_str()), ok = h.ok,
            failures = h.failures, rejected = h.rejected, recoveries = h.recoveries, clock_skew = h.clock_skew,
            "Source health at shutdown.");
    }
    let stats = core.stats();
    info!(
        ticks = summary.ticks,
        events = summary.events,
        samples = summary.samples,
        out_of_order = stats.out_of_order,
        non_finite = stats.non_finite,
        future_source_time = stats.future_source_time,
        "Twin stopped."
    );
    Ok(summary)
}
