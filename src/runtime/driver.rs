//! The one driver of the core: every run (live, replay, tests, benches)
//! pushes samples and steps ticks through it.
//!
//! It owns the core, the run's epoch, the receive-time clamp and the sinks.
//! What it does not own is time: the caller says when to step, from the
//! monotonic run clock (live, see `pacing`) or from a recording or a test's
//! own arithmetic (replay, tests). That is what lets a live run and its
//! replay produce the same stream.

use tracing::error;

use crate::config::LoadedConfig;
use crate::sinks::{Sink, SinkError, TickOutput};
use crate::twin::{Sample, TickClock, TwinCore, TwinEvent};

/// Counts over the driver's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    pub ticks: u64,
    pub events: u64,
    pub samples: u64,
    /// Samples whose receive time the clamp moved (see [`Driver::push`]).
    pub clamped: u64,
}

/// One tick's output, as [`Driver::step`] returns it.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub tick: u64,
    pub t_ns: i64,
    pub events: &'a [TwinEvent],
    /// `events` encoded as JSON lines.
    pub jsonl: &'a [u8],
}

/// A sink in the fan-out, and whether it sees samples too.
struct Slot {
    sink: Box<dyn Sink>,
    samples: bool,
}

pub struct Driver {
    core: TwinCore,
    sinks: Vec<Slot>,
    /// Whether any sink wants samples: the push path's only extra cost
    /// when none does.
    sample_sinks: bool,
    /// Outputs that stopped since the last tick, to be said in its stream.
    stopped: Vec<SinkError>,
    /// The last tick's events, and their encoding (a buffer reused every
    /// tick).
    events: Vec<TwinEvent>,
    jsonl: Vec<u8>,
    failures: Vec<SinkError>,
    stats: DriverStats,
    /// A live run's audit log and writer (`attach_guard_io`); never in a
    /// replay.
    guard_io: Option<super::guard_io::GuardIo>,
}

impl Driver {
    /// A driver of a fresh core for `cfg` whose tick 0 is at `start_ns`
    /// (aligned down to a whole tick, see `TickClock::new`).
    pub fn new(cfg: &LoadedConfig, start_ns: i64) -> Self {
        Self::with_clock(cfg, TickClock::new(start_ns, cfg.config.plant.tick))
    }

    /// A driver of a fresh core with its clock given whole.
    pub fn with_clock(cfg: &LoadedConfig, clock: TickClock) -> Self {
        Driver {
            core: TwinCore::new(cfg, clock),
            sinks: Vec::new(),
            sample_sinks: false,
            stopped: Vec::new(),
            events: Vec::new(),
            jsonl: Vec::with_capacity(64 * 1024),
            failures: Vec::new(),
            stats: DriverStats::default(),
            guard_io: None,
        }
    }

    /// Load `cfg`'s models (those with a `task`) and add the ML stage to
    /// the core. A config without such models loads nothing and never
    /// touches ONNX Runtime. Call it before the first tick.
    pub fn with_models(mut self, cfg: &LoadedConfig) -> Result<Self, crate::ml::MlSetupError> {
        crate::ml::setup(&mut self.core, cfg)?;
        // The guard decides on the optimiser's proposals of the same tick,
        // so it joins after the ML stage. No writer is attached here: a
        // run that writes attaches one (`guard::GuardState::attach_writer`).
        crate::guard::install(&mut self.core, cfg);
        // Compute time is the monotonic time spent in `run()` (ORT runs on
        // the calling thread): it goes to the log, never into an event
        // (docs/ml.md, "Metering").
        crate::ml::stage::set_stopwatch(&mut self.core, crate::wallclock::stopwatch);
        Ok(self)
    }

    /// Carry the guard's decisions out around every tick from now on: its
    /// inputs (outcomes, links) before, its records and writes after
    /// (`guard_io`). Only a live run calls this.
    pub fn attach_guard_io(&mut self, io: super::guard_io::GuardIo) {
        self.guard_io = Some(io);
    }

    /// The attached guard I/O, for the shutdown summary.
    pub fn guard_io(&self) -> Option<&super::guard_io::GuardIo> {
        self.guard_io.as_ref()
    }

    /// Add an output; it sees every tick from the next one on.
    /// Its [`Sink::start`] runs now; if that fails the sink is not added.
    pub fn add_sink(&mut self, mut sink: Box<dyn Sink>) -> Result<(), SinkError> {
        sink.start(&self.core.clock())?;
        let samples = sink.wants_samples();
        self.sample_sinks |= samples;
        self.sinks.push(Slot { sink, samples });
        Ok(())
    }

    /// The run's epoch: the time of tick 0, from which tick `n` is at
    /// `epoch + n * period`. A recording keeps it so that its replay ticks
    /// at the same times.
    pub fn epoch_ns(&self) -> i64 {
        self.core.clock().time_of(0)
    }

    pub fn clock(&self) -> TickClock {
        self.core.clock()
    }

    /// Time of the next tick [`Driver::step`] will run.
    pub fn next_tick_ns(&self) -> i64 {
        let c = self.core.clock();
        c.time_of(c.tick() + 1)
    }

    pub fn core(&self) -> &TwinCore {
        &self.core
    }

    /// The core, for what needs it mutably (`TwinCore::tag_states`).
    pub fn core_mut(&mut self) -> &mut TwinCore {
        &mut self.core
    }

    /// The core, once the run is over.
    pub fn into_core(self) -> TwinCore {
        self.core
    }

    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// Hand over a sample.
    ///
    /// The core applies a sample on the first tick at or after its receive
    /// time. A sample can reach the driver after that tick already ran (it
    /// was stamped just before the tick and delivered just after); for the
    /// core it is then received right after the last tick that ran, and is
    /// applied on the next one. Clamping here, before the core sees it,
    /// makes the pushed stream (what a recorder keeps) say exactly which
    /// tick each sample was applied on, so a replay applies it on the same
    /// tick. Source times are left alone.
    pub fn push(&mut self, mut sample: Sample) {
        self.clamp(&mut sample);
        self.stats.samples += 1;
        if self.sample_sinks {
            self.tap(std::slice::from_ref(&sample));
        }
        self.core.push(sample);
    }

    /// Hand over a batch of samples, in order; each is clamped as by
    /// [`Driver::push`].
    pub fn push_batch(&mut self, mut batch: Vec<Sample>) {
        for s in &mut batch {
            self.clamp(s);
        }
        self.stats.samples += batch.len() as u64;
        if self.sample_sinks {
            self.tap(&batch);
        }
        self.core.push_batch(batch);
    }

    /// Hand the guard's inputs of the coming tick to the sinks that record
    /// samples (a replay gives them back at the same point). Taken every
    /// tick, recorded or not, so the log never grows.
    fn tap_guard_inputs(&mut self) {
        let Some(mut st) = crate::guard::state_mut(&mut self.core) else {
            return;
        };
        let inputs = st.take_inputs();
        if inputs.is_empty() || !self.sample_sinks {
            return;
        }
        let tick = self.core.clock().tick();
        let (failures, stopped) = (&mut self.failures, &mut self.stopped);
        self.sinks.retain_mut(|s| {
            !s.samples || keep(s.sink.write_guard_inputs(tick, &inputs), failures, stopped)
        });
    }

    /// Hand pushed samples to the sinks that record them.
    fn tap(&mut self, samples: &[Sample]) {
        let tick = self.core.clock().tick();
        let (failures, stopped) = (&mut self.failures, &mut self.stopped);
        self.sinks.retain_mut(|s| {
            !s.samples || keep(s.sink.write_samples(tick, samples), failures, stopped)
        });
    }

    fn clamp(&mut self, s: &mut Sample) {
        let floor = self.core.clock().now_ns().saturating_add(1);
        if s.recv_time_ns < floor {
            s.recv_time_ns = floor;
            self.stats.clamped += 1;
        }
    }

    /// Run one tick and fan its output out to every sink. A sink that fails
    /// is dropped from the fan-out (the others still get the tick) and its
    /// error kept for [`Driver::take_failures`].
    pub fn step(&mut self) -> Step<'_> {
        // Wall time, for `/metrics` only: it never reaches an event.
        let began = crate::wallclock::monotonic();
        if let Some(io) = &mut self.guard_io {
            io.before_tick(&mut self.core);
        }
        self.tap_guard_inputs();
        self.core.advance();
        // Records are durable before any write is sent and before the
        // decisions reach a sink (docs/audit.md, the ordering contract).
        match &mut self.guard_io {
            Some(io) => io.after_tick(&mut self.core),
            // No one carries a replay's decisions out (a replay that was
            // given a recorded `writer` input still makes intents).
            None => {
                if let Some(mut st) = crate::guard::state_mut(&mut self.core) {
                    st.take_outputs();
                }
            }
        }
        self.core.drain_events_into(&mut self.events);
        self.jsonl.clear();
        self.core.encode_events(&self.events, &mut self.jsonl);
        self.stats.ticks += 1;
        self.stats.events += self.events.len() as u64;
        let clock = self.core.clock();
        for e in self.stopped.drain(..) {
            encode_stopped(clock.now_ns(), &e, &mut self.jsonl);
            self.stats.events += 1;
        }
        if !self.sinks.is_empty() {
            let out = TickOutput {
                tick: clock.tick(),
                t_ns: clock.now_ns(),
                events: &self.events,
                jsonl: &self.jsonl,
                core: &self.core,
                tick_time: crate::wallclock::since(began),
            };
            let (failures, stopped) = (&mut self.failures, &mut self.stopped);
            self.sinks
                .retain_mut(|s| keep(s.sink.write_tick(&out), failures, stopped));
        }
        Step {
            tick: clock.tick(),
            t_ns: clock.now_ns(),
            events: &self.events,
            jsonl: &self.jsonl,
        }
    }

    /// Step until the current tick's time is at or after `t_ns` (a replay's
    /// "advance to"); returns how many ticks ran. Their output went to the
    /// sinks.
    pub fn advance_to(&mut self, t_ns: i64) -> u64 {
        let mut n = 0;
        while self.core.clock().now_ns() < t_ns {
            self.step();
            n += 1;
        }
        n
    }

    /// Whether a sink failed since the last [`Driver::take_failures`].
    pub fn has_failures(&self) -> bool {
        !self.failures.is_empty()
    }

    /// Errors of sinks that failed since the last call, oldest first.
    pub fn take_failures(&mut self) -> Vec<SinkError> {
        std::mem::take(&mut self.failures)
    }

    /// End the run: every remaining sink flushes. Returns the errors of
    /// those that could not, with any failure not yet taken.
    pub fn finish(&mut self) -> Vec<SinkError> {
        let end = crate::ml::stage::end_of_run(&mut self.core);
        if !end.is_empty() {
            self.jsonl.clear();
            self.core.encode_events(&end, &mut self.jsonl);
            self.stats.events += end.len() as u64;
            let clock = self.core.clock();
            let out = TickOutput {
                tick: clock.tick(),
                t_ns: clock.now_ns(),
                events: &end,
                jsonl: &self.jsonl,
                core: &self.core,
                tick_time: std::time::Duration::ZERO,
            };
            let (failures, stopped) = (&mut self.failures, &mut self.stopped);
            self.sinks
                .retain_mut(|s| keep(s.sink.write_end(&out), failures, stopped));
        }
        for mut s in self.sinks.drain(..) {
            match s.sink.finish() {
                Ok(()) => {}
                // Said already, in the log; the stream has ended.
                Err(SinkError::Stopped { .. }) => {}
                Err(e) => self.failures.push(e),
            }
        }
        self.take_failures()
    }
}

/// Whether a sink stays in the fan-out after a call that returned `r`: a
/// failed sink leaves it, its error kept for the runner, or, if it only
/// stopped, for the next tick's `error` event.
fn keep(
    r: Result<(), SinkError>,
    failures: &mut Vec<SinkError>,
    stopped: &mut Vec<SinkError>,
) -> bool {
    match r {
        Ok(()) => true,
        Err(e @ SinkError::Stopped { .. }) => {
            error!(error = %e, "An output stopped; the twin keeps mirroring without it.");
            stopped.push(e);
            false
        }
        Err(e) => {
            failures.push(e);
            false
        }
    }
}

/// The `error` event of an output that stopped (docs/events.md).
fn encode_stopped(t_ns: i64, e: &SinkError, out: &mut Vec<u8>) {
    let SinkError::Stopped {
        sink,
        target,
        detail,
    } = e
    else {
        return;
    };
    #[derive(serde::Serialize)]
    struct Line<'a> {
        v: u32,
        #[serde(rename = "type")]
        kind: &'static str,
        t: String,
        component: &'a str,
        target: &'a str,
        error: &'a str,
        effect: &'static str,
    }
    let line = Line {
        v: 1,
        kind: "error",
        t: crate::twin::events::rfc3339(t_ns),
        component: sink,
        target,
        error: detail,
        effect: "stopped; the twin keeps mirroring without it",
    };
    if serde_json::to_writer(&mut *out, &line).is_ok() {
        out.push(b'\n');
    }
}
