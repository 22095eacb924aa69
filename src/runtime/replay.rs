//! Replay: a recording's samples through a fresh core, tick for tick.
//!
//! Only the source and the clock differ from a live run: the samples come
//! from a [`RecordingReader`] instead of the plant, and the ticks are
//! stepped as fast as the CPU goes (or paced at a multiple of real time)
//! instead of on the run clock. The [`Driver`] and the core are the same,
//! so the same recording and config give the same event stream, byte for
//! byte, at any speed.
//!
//! Exactness: a recording says, for every sample, which tick had run when
//! it was pushed. When the config's tick is the recorded one, the replay
//! pushes each sample at that same tick, so every tick sees exactly the
//! samples it saw live. Under a config with another tick (a counterfactual
//! replay), each sample is pushed just before the first tick at or after
//! its receive time, which is when the core applies it anyway.
//!
//! A replay builds no source and no writer: it never touches a device.

use std::collections::VecDeque;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Driver;
use crate::config::LoadedConfig;
use crate::recording::format::config_hash;
use crate::recording::reader::CutOff;
use crate::recording::{Item, RecordingError, RecordingReader};
use crate::sinks::{Sink, SinkError};
use crate::twin::TickClock;
use crate::wallclock;

/// The longest a paced replay sleeps before it looks at its cancel token.
const PACE_SLICE: Duration = Duration::from_millis(100);

/// How fast a replay runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the CPU goes.
    Max,
    /// This many times real time (1.0 is the recorded pace).
    Times(f64),
}

impl Speed {
    /// `max`, `1x`, `10x`, `0.5x`.
    pub fn parse(s: &str) -> Result<Speed, String> {
        if s == "max" {
            return Ok(Speed::Max);
        }
        s.strip_suffix('x')
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|n| n.is_finite() && *n > 0.0)
            .map(Speed::Times)
            .ok_or_else(|| "expected `max` or a factor such as `1x`, `10x`, `0.5x`".to_string())
    }
}

pub struct ReplayOptions {
    pub speed: Speed,
    /// Write output from the first tick at or after this time; the ticks
    /// before run too (the state at `from` depends on them), silently.
    pub from_ns: Option<i64>,
    /// Stop after the last tick at or before this time.
    pub to_ns: Option<i64>,
    pub sinks: Vec<Box<dyn Sink>>,
    /// Compare every tick's events with those the recording holds, and stop
    /// at the first difference.
    pub verify: bool,
    pub cancel: CancellationToken,
}

impl ReplayOptions {
    pub fn new() -> Self {
        ReplayOptions {
            speed: Speed::Max,
            from_ns: None,
            to_ns: None,
            sinks: Vec::new(),
            verify: false,
            cancel: CancellationToken::new(),
        }
    }
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// The first tick whose events differ from the recorded ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divergence {
    pub tick: u64,
    pub recorded: Option<String>,
    pub replayed: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    pub ticks: u64,
    pub samples: u64,
    pub events: u64,
    /// Samples of tags the config does not have, skipped; the first one's
    /// tag.
    pub unknown_tag_samples: u64,
    /// Guard inputs given back (operators' commands, write outcomes, link
    /// flags, kill), and those that did not apply to the replayed state.
    pub guard_inputs: u64,
    pub guard_inputs_refused: u64,
    pub first_unknown_tag: Option<String>,
    /// Whether samples were pushed at their recorded ticks (the config's
    /// tick is the recorded one).
    pub exact: bool,
    /// Whether the config is the one recorded (same hash).
    pub same_config: bool,
    /// Samples the driver had to re-time (only under another tick).
    pub clamped: u64,
    pub cut_off: Vec<CutOff>,
    /// The last tick run.
    pub last_tick: u64,
    /// Simulated time covered.
    pub simulated: Duration,
    pub divergence: Option<Divergence>,
    pub cancelled: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Models(#[from] crate::ml::MlSetupError),
}

/// Replay `reader` through a fresh core for `cfg`.
pub fn run_replay(
    cfg: &LoadedConfig,
    reader: &mut RecordingReader,
    opts: ReplayOptions,
) -> Result<ReplaySummary, ReplayError> {
    replay_driver(cfg, reader, opts).map(|(summary, _)| summary)
}

/// [`run_replay`], also handing back the driver (and so the core) as it is
/// after the last tick run: the replayed state at `to_ns`, for what starts
/// from it (`twin whatif --at`).
pub fn replay_driver(
    cfg: &LoadedConfig,
    reader: &mut RecordingReader,
    opts: ReplayOptions,
) -> Result<(ReplaySummary, Driver), ReplayError> {
    let info = reader.info().clone();
    let tick = cfg.config.plant.tick;
    let period_ns = i64::try_from(tick.as_nanos()).unwrap_or(i64::MAX).max(1);
    let exact = period_ns == info.tick_ns;
    let same_config = config_hash(&cfg.file.text) == info.config_hash;
    if !same_config {
        info!(recorded = %info.config_hash, replayed = %config_hash(&cfg.file.text),
            "Replaying under another config than the recorded one (a counterfactual replay).");
    }
    // Predictions replay byte for byte only with the same model files.
    let now = crate::recording::format::model_hashes(cfg);
    for (id, recorded) in &info.models {
        if let Some((_, h)) = now.iter().find(|(m, _)| m == id)
            && h != recorded
        {
            warn!(model = %id, recorded = %recorded, replayed = %h,
                "The model file differs from the one recorded; its predictions and alarms may differ from the recorded run's.");
        }
    }
    if !exact {
        warn!(
            recorded_ms = info.tick_ns / 1_000_000,
            replayed_ms = period_ns / 1_000_000,
            "The config's tick is not the recorded one; samples are applied by their receive time."
        );
    }
    let clock = TickClock::new(info.epoch_ns, tick);
    // Tick n of the replay is at `clock.time_of(n)`.
    let tick_at_or_after = |t: i64| -> u64 {
        let d = t.saturating_sub(clock.time_of(0));
        if d <= 0 {
            0
        } else {
            u64::try_from((d + period_ns - 1) / period_ns).unwrap_or(u64::MAX)
        }
    };
    let tick_at_or_before = |t: i64| -> u64 {
        let d = t.saturating_sub(clock.time_of(0));
        if d <= 0 {
            0
        } else {
            u64::try_from(d / period_ns).unwrap_or(u64::MAX)
        }
    };
    // Where output starts: --from, else where the first file starts (a
    // later part of a rotated recording replays from its own start).
    let first_tick = if exact {
        info.first_tick
    } else {
        tick_at_or_after(info.time_of(info.first_tick))
    };
    let from_tick = opts
        .from_ns
        .map_or(first_tick, |t| tick_at_or_after(t).max(first_tick));
    let to_tick = opts.to_ns.map(tick_at_or_before);
    let verify = opts.verify && exact && same_config && opts.from_ns.is_none();
    if opts.verify && !verify {
        warn!(
            exact,
            same_config,
            from = opts.from_ns.is_some(),
            "--verify compares with the recorded events, which only a whole replay under the recorded config and tick reproduces; not verifying."
        );
    }
    let mut r = Run {
        driver: Driver::with_clock(cfg, clock).with_models(cfg)?,
        sinks: Some(opts.sinks),
        from_tick,
        speed: opts.speed,
        paced_from: None,
        verify,
        check: Verifier::default(),
        cancel: opts.cancel,
    };
    let mut summary = ReplaySummary {
        exact,
        same_config,
        ..ReplaySummary::default()
    };
    let mut end_tick = first_tick;
    let mut past_end = false;
    // Per channel of the file being read: its tag in `cfg`, once resolved.
    let mut tag_of: Vec<Option<Option<crate::config::TagId>>> = Vec::new();
    let mut tags_part = 0;
    reader.skip_event_lines(!verify);
    // The recording is read and decoded on a thread of its own, a batch of
    // items ahead of the core: reading (zstd, CRC, decoding) is half of a
    // replay without physics, and the two halves overlap on two cores. The
    // order of the items is the file's either way.
    let first_file = reader.files().first().cloned().unwrap_or_default();
    let fed = std::thread::scope(|scope| -> Result<(), ReplayError> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Read>>(PREFETCH_BATCHES);
        let reading = &mut *reader;
        std::thread::Builder::new()
            .name("replay-reader".to_string())
            .spawn_scoped(scope, move || prefetch(reading, &tx))
            .map_err(|e| ReplayError::Recording(RecordingError::io(&first_file, e)))?;
        // A divergence or a cancel is noticed by `run_to` on the next tick;
        // between ticks, every so many items is soon enough.
        for (n, item) in rx.iter().flatten().enumerate() {
            if n % 1024 == 0 && r.stopped() {
                break;
            }
            let (item, (part, channel)) = item?;
            match item {
                Item::Sample { tick, record } => {
                    let at = if exact {
                        tick
                    } else {
                        tick_at_or_after(record.recv_time_ns).saturating_sub(1)
                    };
                    if to_tick.is_some_and(|to| at >= to) {
                        past_end = true;
                        break;
                    }
                    r.run_to(at)?;
                    end_tick = end_tick.max(at);
                    // A channel is one tag: its name is looked up once.
                    if part != tags_part {
                        tags_part = part;
                        tag_of.clear();
                    }
                    let slot = usize::from(channel);
                    if tag_of.len() <= slot {
                        tag_of.resize(slot + 1, None);
                    }
                    let id = *tag_of[slot].get_or_insert_with(|| cfg.tags.id(&record.tag));
                    match id {
                        Some(id) => {
                            summary.samples += 1;
                            r.driver.push(record.to_sample_of(id));
                        }
                        None => {
                            summary.unknown_tag_samples += 1;
                            summary
                                .first_unknown_tag
                                .get_or_insert_with(|| record.tag.to_string());
                        }
                    }
                }
                Item::Event { t_ns, line } => {
                    end_tick = end_tick.max(tick_at_or_before(t_ns));
                    if r.verify {
                        r.check.recorded.push_back((tick_at_or_before(t_ns), line));
                    }
                }
                Item::Tick(t) => {
                    let at = if exact {
                        t.tick
                    } else {
                        tick_at_or_before(t.t_ns)
                    };
                    end_tick = end_tick.max(at);
                }
                // An input the guard took live, given back at the same
                // point: after the same tick, in the same order, before
                // the tick that takes it (docs/guard.md, "Replay").
                Item::Guard { t_ns, record } => {
                    let at = if exact {
                        record.tick
                    } else {
                        tick_at_or_before(t_ns)
                    };
                    if to_tick.is_some_and(|to| at >= to) {
                        past_end = true;
                        break;
                    }
                    r.run_to(at)?;
                    end_tick = end_tick.max(at);
                    summary.guard_inputs += 1;
                    if let Some(mut st) = crate::guard::state_mut(r.driver.core_mut())
                        && let Err(e) = st.apply_input(&record.input)
                    {
                        summary.guard_inputs_refused += 1;
                        if summary.guard_inputs_refused == 1 {
                            warn!(tick = at, error = %e, input = ?record.input,
                                "A recorded guard input does not apply to the replayed state (another config?); its decisions will differ from the recorded run's.");
                        }
                    }
                }
            }
        }
        Ok(())
    });
    fed?;
    // Without --to the replay ends where the recording does; with it, at
    // --to, unless the recording ends first.
    let last = match to_tick {
        Some(to) if past_end => to,
        Some(to) => to.min(end_tick),
        None => end_tick,
    };
    r.run_to(last)?;
    if r.sinks.is_some() {
        // The whole replay was before --from: nothing to write, but the
        // outputs still open and close.
        r.attach()?;
    }
    if r.verify {
        r.check.compare(u64::MAX, b"");
    }
    summary.cancelled = r.cancel.is_cancelled();
    if let Some(e) = r.driver.finish().into_iter().next() {
        return Err(e.into());
    }
    let stats = r.driver.stats();
    summary.ticks = stats.ticks;
    summary.events = stats.events;
    summary.clamped = stats.clamped;
    summary.cut_off = reader.cut_off().to_vec();
    summary.last_tick = r.driver.clock().tick();
    summary.simulated = Duration::from_nanos(
        u64::try_from(
            r.driver
                .clock()
                .now_ns()
                .saturating_sub(r.driver.clock().time_of(first_tick)),
        )
        .unwrap_or(0),
    );
    summary.divergence = r.check.divergence;
    Ok((summary, r.driver))
}

/// Items read ahead, in batches of [`PREFETCH_ITEMS`], at most
/// [`PREFETCH_BATCHES`] batches ahead of the core.
const PREFETCH_ITEMS: usize = 1024;
const PREFETCH_BATCHES: usize = 8;

/// An item with the file and channel it came from (see
/// [`RecordingReader::sample_channel`]), or the error that ends the reading.
type Read = Result<(Item, (usize, u16)), RecordingError>;

/// Read `reader` to its end (or its first error) into `tx`; stop early when
/// the replay no longer listens.
fn prefetch(reader: &mut RecordingReader, tx: &std::sync::mpsc::SyncSender<Vec<Read>>) {
    let mut batch = Vec::with_capacity(PREFETCH_ITEMS);
    while let Some(item) = reader.next_item() {
        let failed = item.is_err();
        batch.push(item.map(|i| (i, reader.sample_channel())));
        if failed || batch.len() == PREFETCH_ITEMS {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(PREFETCH_ITEMS));
            if tx.send(full).is_err() || failed {
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch);
    }
}

struct Run {
    driver: Driver,
    /// The outputs, until the replay reaches --from.
    sinks: Option<Vec<Box<dyn Sink>>>,
    from_tick: u64,
    speed: Speed,
    /// Wall time and tick time pacing started at (for `Speed::Times`).
    paced_from: Option<(std::time::Instant, i64)>,
    verify: bool,
    check: Verifier,
    cancel: CancellationToken,
}

/// `--verify`: the recorded event lines not yet compared, and the first
/// difference found.
#[derive(Default)]
struct Verifier {
    /// Recorded lines with their tick, in order.
    recorded: VecDeque<(u64, Vec<u8>)>,
    divergence: Option<Divergence>,
}

impl Run {
    fn stopped(&self) -> bool {
        self.check.divergence.is_some() || self.cancel.is_cancelled()
    }

    fn attach(&mut self) -> Result<(), SinkError> {
        if let Some(sinks) = self.sinks.take() {
            for s in sinks {
                self.driver.add_sink(s)?;
            }
        }
        Ok(())
    }

    /// Step until tick `n` has run.
    fn run_to(&mut self, n: u64) -> Result<(), ReplayError> {
        while self.driver.clock().tick() < n {
            if self.stopped() {
                return Ok(());
            }
            if self.sinks.is_some() && self.driver.clock().tick() + 1 >= self.from_tick {
                self.attach()?;
            }
            let step = self.driver.step();
            let t_ns = step.t_ns;
            if self.verify {
                self.check.compare(step.tick, step.jsonl);
            }
            if let Some(e) = self.driver.take_failures().into_iter().next() {
                return Err(e.into());
            }
            if let Speed::Times(f) = self.speed {
                self.pace(f, t_ns);
            }
        }
        Ok(())
    }

    fn pace(&mut self, factor: f64, t_ns: i64) {
        let (wall0, t0) = *self
            .paced_from
            .get_or_insert_with(|| (wallclock::monotonic(), t_ns));
        // A tiny factor (`--speed 1e-300x`) makes the wait too long for a
        // Duration: wait "for ever" then, rather than panic.
        let due = Duration::try_from_secs_f64((t_ns.saturating_sub(t0)) as f64 / 1e9 / factor)
            .unwrap_or(Duration::MAX);
        // In slices, so Ctrl-C or SIGTERM stops a slow replay within one,
        // not after a whole tick of recorded time times the slow-down.
        loop {
            let spent = wallclock::since(wall0);
            if due <= spent || self.cancel.is_cancelled() {
                return;
            }
            std::thread::sleep((due - spent).min(PACE_SLICE));
        }
    }
}

impl Verifier {
    /// Compare the replayed lines of `tick` with the recorded ones of that
    /// tick (and any recorded before it that were never replayed).
    fn compare(&mut self, tick: u64, jsonl: &[u8]) {
        if self.divergence.is_some() {
            return;
        }
        let mut replayed = jsonl.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        loop {
            let recorded = match self.recorded.front() {
                Some((t, _)) if *t <= tick => self.recorded.pop_front(),
                _ => None,
            };
            let mine = if recorded.as_ref().is_some_and(|(t, _)| *t < tick) {
                None
            } else {
                replayed.next()
            };
            match (recorded, mine) {
                (None, None) => return,
                (Some((_, a)), Some(b)) if a == b => continue,
                (rec, mine) => {
                    self.divergence = Some(Divergence {
                        tick: rec.as_ref().map_or(tick, |(t, _)| *t.min(&tick)),
                        recorded: rec.map(|(_, l)| String::from_utf8_lossy(&l).into_owned()),
                        replayed: mine.map(|l| String::from_utf8_lossy(l).into_owned()),
                    });
                    return;
                }
            }
        }
    }
}
