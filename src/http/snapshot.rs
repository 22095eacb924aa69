//! What the HTTP surface shows, taken from the tick loop as a [`Sink`].
//!
//! The handlers never touch the core: [`HttpSink`] follows each tick's
//! events (tags, alarms, metering, guard decisions, counts by type) and, at
//! most every [`PUBLISH_EVERY`] of tick time, puts a fresh [`Snapshot`]
//! behind an `Arc`. The lock around it is held for a pointer swap (the
//! tick) or an `Arc` clone (a request), never while building or encoding,
//! so a slow client can neither stall a tick nor see half of one.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Serialize;

use crate::config::LoadedConfig;
use crate::ml::events::MlEvent;
use crate::ml::meter::Counts;
use crate::ml::optimise_events::OptimiserEvent;
use crate::sinks::{Sink, SinkError, TickOutput};
use crate::sources::health::HealthBoard;
use crate::twin::events::rfc3339;
use crate::twin::{Quality, TwinEvent, Value};

/// How often, in tick time, a new snapshot is published at most.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// Upper bounds of the tick duration histogram, in seconds.
pub const TICK_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The config's summary (`GET /api/v1/plant`); fixed for the run.
#[derive(Debug, Clone, Serialize)]
pub struct Plant {
    pub name: String,
    pub tick_ms: f64,
    pub tags: usize,
    pub machines: Vec<MachineSummary>,
    pub lines: Vec<LineSummary>,
    pub models: Vec<String>,
    pub setpoints: Vec<SetpointSummary>,
    pub sources: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MachineSummary {
    pub id: String,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Role → tag.
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LineSummary {
    pub id: String,
    pub machines: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SetpointSummary {
    pub tag: String,
    pub mode: &'static str,
    pub min: f64,
    pub max: f64,
}

impl Plant {
    pub fn of(cfg: &LoadedConfig) -> Plant {
        let c = &cfg.config;
        let mut sources: Vec<String> = c
            .modbus
            .iter()
            .map(|d| format!("modbus:{}", d.name.value))
            .collect();
        sources.extend(c.mqtt.iter().map(|m| format!("mqtt:{}", m.name.value)));
        sources.extend(
            c.sparkplug
                .iter()
                .map(|s| format!("sparkplug:{}", s.name.value)),
        );
        Plant {
            name: c.plant.name.clone(),
            tick_ms: c.plant.tick.as_secs_f64() * 1e3,
            tags: cfg.tags.len(),
            machines: c
                .machines
                .iter()
                .map(|m| MachineSummary {
                    id: m.id.value.clone(),
                    kind: m.kind.value,
                    name: m.name.clone(),
                    tags: m
                        .tags
                        .iter()
                        .map(|(r, t)| (r.value.clone(), t.value.clone()))
                        .collect(),
                })
                .collect(),
            lines: c
                .lines
                .iter()
                .map(|l| LineSummary {
                    id: l.id.value.clone(),
                    machines: l.machines.iter().map(|m| m.value.clone()).collect(),
                })
                .collect(),
            models: c.models.iter().map(|m| m.id.value.clone()).collect(),
            setpoints: cfg
                .guard
                .setpoints
                .iter()
                .map(|s| SetpointSummary {
                    tag: s.name.clone(),
                    mode: s.mode.as_str(),
                    min: s.min,
                    max: s.max,
                })
                .collect(),
            sources,
        }
    }
}

/// A tag as its last event left it (`GET /api/v1/tags`).
#[derive(Debug, Clone, Serialize)]
pub struct TagRow {
    pub tag: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<Arc<str>>,
    pub value: Option<JsonValue>,
    pub quality: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The source's time of the value, if it gave one. Times are kept as
    /// numbers and written as RFC 3339 only when a request asks: the tick
    /// formats nothing.
    #[serde(
        rename = "source_time",
        skip_serializing_if = "Option::is_none",
        serialize_with = "as_rfc3339"
    )]
    pub source_time_ns: Option<i64>,
    /// The tick time of the tag's last event.
    #[serde(
        rename = "updated",
        skip_serializing_if = "Option::is_none",
        serialize_with = "as_rfc3339"
    )]
    pub updated_ns: Option<i64>,
    /// For `/metrics`: the numeric view of the value (booleans 0/1).
    #[serde(skip)]
    pub number: Option<f64>,
}

fn as_rfc3339<S: serde::Serializer>(t_ns: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match t_ns {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// A tag's value as JSON: a number, a boolean or text.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum JsonValue {
    Bool(bool),
    Num(f64),
    Text(Arc<str>),
}

/// A raised alarm (`GET /api/v1/alarms`).
#[derive(Debug, Clone, Serialize)]
pub struct AlarmRow {
    pub model: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<Arc<str>>,
    pub priority: &'static str,
    pub value: f64,
    pub threshold: f64,
    pub reason: String,
    pub since: String,
}

/// An advisory proposal waiting for an operator.
#[derive(Debug, Clone, Serialize)]
pub struct ProposalRow {
    pub id: u64,
    pub tag: String,
    pub value: f64,
    pub requested: f64,
    pub actor: String,
    pub expires: String,
    /// The guard's word on it when it was queued: its rule (if one
    /// applied), its reason, and the forecast that vetted it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<&'static str>,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<serde_json::Value>,
}

/// What the guard said as it queued a proposal (its `pending` event).
#[derive(Debug, Clone)]
struct PendingWord {
    rule: Option<&'static str>,
    reason: String,
    forecast: Option<serde_json::Value>,
}

/// A model's latest prediction for a machine (`GET /api/v1/alarms`).
#[derive(Debug, Clone, Serialize)]
pub struct PredictionRow {
    pub model: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<Arc<str>>,
    pub task: &'static str,
    /// fault: the most likely class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<Arc<str>>,
    /// fault: the highest fault risk; anomaly: the score; rul: the estimate.
    pub score: f64,
    /// fault: risk per class.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub risk: BTreeMap<Arc<str>, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uncertain: Option<String>,
    pub t: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LockRow {
    pub tag: String,
    pub why: String,
}

/// The guard's queue and switches (`GET /api/v1/proposals`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct GuardView {
    pub pending: Vec<ProposalRow>,
    pub locked: Vec<LockRow>,
    /// Whether an operator's kill switch is on (not the config's
    /// `kill_switch` or kill tag).
    pub kill: bool,
}

/// Run totals of ML counts (`ml::meter::Counts`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CountsJson {
    pub runs: u64,
    pub rows: u64,
    pub skipped_runs: u64,
    pub skipped_rows: u64,
    pub busy_rows: u64,
}

impl CountsJson {
    fn add(&mut self, c: &Counts) {
        self.runs += c.runs;
        self.rows += c.rows;
        self.skipped_runs += c.skipped_runs;
        self.skipped_rows += c.skipped_rows;
        self.busy_rows += c.busy_rows;
    }
}

/// One model's metering (`GET /api/v1/metering`): the closed intervals'
/// counts summed over the run so far, and its compute time.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ModelMetering {
    pub model: Arc<str>,
    pub total: CountsJson,
    pub machines: BTreeMap<Arc<str>, CountsJson>,
    pub lines: BTreeMap<Arc<str>, CountsJson>,
    /// Wall time spent in the model's `run()` (not deterministic: it is
    /// in no event).
    pub compute_seconds: f64,
    /// Runs that took longer than a tick.
    pub overruns: u64,
}

/// The tick duration histogram (cumulative bucket counts as Prometheus
/// wants them are made when encoding).
#[derive(Debug, Clone)]
pub struct TickHistogram {
    /// Per bucket of [`TICK_BUCKETS`], then one for above the last.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Default for TickHistogram {
    fn default() -> Self {
        TickHistogram {
            counts: vec![0; TICK_BUCKETS.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }
}

impl TickHistogram {
    fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = TICK_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(TICK_BUCKETS.len());
        self.counts[i] += 1;
        self.sum += s;
        self.count += 1;
    }
}

/// Everything a request may read, as of one tick.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub tick: u64,
    pub t_ns: i64,
    pub tags: Vec<TagRow>,
    pub alarms: Vec<AlarmRow>,
    /// The latest prediction per (model, machine), setpoint models aside.
    pub predictions: Vec<PredictionRow>,
    /// The modelled lines (`GET /api/v1/lines`).
    pub lines: Vec<super::lines::LineView>,
    /// Whether `lines` was built (at the first publish after a tick):
    /// before, the models do not exist yet.
    pub lines_ready: bool,
    /// `None`: the config has no guard (every setpoint off).
    pub guard: Option<GuardView>,
    pub metering: Vec<ModelMetering>,
    /// Events so far, by their stream `type`.
    pub events: BTreeMap<&'static str, u64>,
    /// Guard decisions so far, by (decision, rule or `none`).
    pub decisions: BTreeMap<(&'static str, &'static str), u64>,
    pub tick_time: TickHistogram,
    /// Whether the run has ended (the last snapshot).
    pub finished: bool,
}

/// The published snapshot and the run's fixed parts, shared by the sink
/// (writer) and the server (readers).
#[derive(Clone)]
pub struct Shared {
    current: Arc<RwLock<Arc<Snapshot>>>,
    pub plant: Arc<Plant>,
    pub health: HealthBoard,
    /// The live event lines' fan-out (`GET /api/v1/events`).
    pub events: super::events::EventHub,
}

impl Shared {
    pub fn new(cfg: &LoadedConfig, health: HealthBoard) -> Self {
        Shared {
            current: Arc::new(RwLock::new(Arc::new(Snapshot::default()))),
            plant: Arc::new(Plant::of(cfg)),
            health,
            events: super::events::EventHub::default(),
        }
    }

    /// The newest snapshot (an `Arc` clone under the lock, nothing more).
    pub fn get(&self) -> Arc<Snapshot> {
        // A poisoned lock still holds a whole `Arc`: a panic cannot happen
        // between the swap's two halves.
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn publish(&self, s: Snapshot) {
        let s = Arc::new(s);
        match self.current.write() {
            Ok(mut g) => *g = s,
            Err(p) => *p.into_inner() = s,
        }
    }
}

/// The event stream `type` of an event (docs/events.md).
pub fn event_type(e: &TwinEvent) -> &'static str {
    match e {
        TwinEvent::Tag(_) => "tag",
        TwinEvent::Line(_) => "line",
        TwinEvent::Residual(_) => "residual",
        TwinEvent::Eye(_) => "eye",
        TwinEvent::Jam(_) => "jam",
        TwinEvent::Ml(MlEvent::Prediction(_)) => "prediction",
        TwinEvent::Ml(MlEvent::Alarm(_)) => "alarm",
        TwinEvent::Ml(MlEvent::Error(_)) => "error",
        TwinEvent::Ml(MlEvent::Metering(_)) => "metering",
        TwinEvent::Ml(MlEvent::Optimiser(OptimiserEvent::Proposal(_))) => "proposal",
        TwinEvent::Ml(MlEvent::Optimiser(OptimiserEvent::Summary(_))) => "optimiser",
        TwinEvent::Ml(MlEvent::Optimiser(OptimiserEvent::Error(_))) => "error",
        TwinEvent::Setpoint(_) => "setpoint",
    }
}

/// An alarm's identity: (model, machine, class).
type AlarmKey = (Arc<str>, Option<Arc<str>>, Option<Arc<str>>);

/// The sink that keeps the HTTP surface's snapshot.
pub struct HttpSink {
    shared: Shared,
    /// The working copy, updated every tick, published now and then.
    work: Snapshot,
    /// Raised alarms by (model, machine, class).
    alarms: BTreeMap<AlarmKey, AlarmRow>,
    metering: BTreeMap<Arc<str>, ModelMetering>,
    predictions: BTreeMap<(Arc<str>, Option<Arc<str>>), PredictionRow>,
    /// The guard's `pending` decisions by proposal id, until published
    /// ones no longer pending are dropped.
    pending: BTreeMap<u64, PendingWord>,
    lines: super::lines::LineFollower,
    /// The optimiser's latest vetted proposal per setpoint tag: (model,
    /// its forecast as JSON), for the pending rows the model proposed.
    optimised: BTreeMap<Arc<str>, (Arc<str>, serde_json::Value)>,
    last_publish_ns: Option<i64>,
}

impl HttpSink {
    /// A sink publishing into `shared`, with `cfg`'s tags, none seen yet.
    pub fn new(cfg: &LoadedConfig, shared: Shared) -> Self {
        let tags = cfg
            .tags
            .iter()
            .map(|t| TagRow {
                tag: Arc::from(t.name.as_str()),
                machine: t.machine.as_deref().map(Arc::from),
                unit: t.unit.as_deref().map(Arc::from),
                value: None,
                quality: Quality::Bad.as_str(),
                reason: None,
                source_time_ns: None,
                updated_ns: None,
                number: None,
            })
            .collect();
        let work = Snapshot {
            tags,
            ..Snapshot::default()
        };
        // The server may answer before the run's first tick: it shows the
        // tag list from the start, every tag without a value yet.
        shared.publish(work.clone());
        HttpSink {
            shared,
            work,
            alarms: BTreeMap::new(),
            metering: BTreeMap::new(),
            predictions: BTreeMap::new(),
            pending: BTreeMap::new(),
            lines: super::lines::LineFollower::new(cfg),
            optimised: BTreeMap::new(),
            last_publish_ns: None,
        }
    }

    fn follow(&mut self, out: &TickOutput<'_>) {
        self.work.tick = out.tick;
        self.work.t_ns = out.t_ns;
        for e in out.events {
            *self.work.events.entry(event_type(e)).or_default() += 1;
            self.lines.follow(e);
            match e {
                TwinEvent::Tag(t) => {
                    let Some(row) = self.work.tags.get_mut(t.tag.index()) else {
                        continue;
                    };
                    row.value = t.value.as_ref().map(|v| match v {
                        Value::Bool(b) => JsonValue::Bool(*b),
                        Value::Num(n) => JsonValue::Num(*n),
                        Value::Text(s) => JsonValue::Text(s.clone()),
                    });
                    row.number = t
                        .value
                        .as_ref()
                        .map(Value::as_f64)
                        .filter(|n| n.is_finite());
                    row.quality = t.quality.as_str();
                    row.reason = t.reason.map(|r| r.as_str());
                    row.source_time_ns = t.source_time_ns;
                    row.updated_ns = Some(t.t_ns);
                }
                TwinEvent::Ml(MlEvent::Alarm(a)) => {
                    let key = (a.model.clone(), a.machine.clone(), a.class.clone());
                    if a.state == "raised" {
                        self.alarms.insert(
                            key,
                            AlarmRow {
                                model: a.model.clone(),
                                machine: a.machine.clone(),
                                class: a.class.clone(),
                                priority: a.priority.as_str(),
                                value: a.value,
                                threshold: a.threshold,
                                reason: a.reason.clone(),
                                since: rfc3339(a.t_ns),
                            },
                        );
                    } else {
                        self.alarms.remove(&key);
                    }
                }
                // Interval counts only: the run's closing `metering` repeats
                // their sum.
                TwinEvent::Ml(MlEvent::Metering(m)) if m.scope == "interval" => {
                    let mm =
                        self.metering
                            .entry(m.model.clone())
                            .or_insert_with(|| ModelMetering {
                                model: m.model.clone(),
                                ..ModelMetering::default()
                            });
                    mm.total.add(&m.counts);
                    for (machine, c) in &m.machines {
                        mm.machines.entry(machine.clone()).or_default().add(c);
                    }
                    for (line, c) in &m.lines {
                        mm.lines.entry(line.clone()).or_default().add(c);
                    }
                }
                TwinEvent::Ml(MlEvent::Prediction(p))
                    if p.task() != crate::config::ml::Task::Setpoint =>
                {
                    self.predictions.insert(
                        (p.model().clone(), p.machine().cloned()),
                        PredictionRow {
                            model: p.model().clone(),
                            machine: p.machine().cloned(),
                            task: p.task().as_str(),
                            class: p.class().cloned(),
                            score: p.score,
                            risk: p.risk().iter().map(|(k, v)| (k.clone(), v)).collect(),
                            threshold: p.threshold(),
                            unit: p.unit().cloned(),
                            uncertain: p.uncertain.clone(),
                            t: rfc3339(p.t_ns()),
                        },
                    );
                }
                TwinEvent::Ml(MlEvent::Optimiser(OptimiserEvent::Proposal(p))) => {
                    let f = |s: &crate::ml::vetting::Scored| {
                        serde_json::json!({
                            "throughput_per_min": s.forecast.throughput_per_min,
                            "out": s.forecast.out,
                            "lost": s.forecast.lost,
                            "jam_risk": s.forecast.jam_risk,
                            "energy": s.energy,
                            "wip_end": s.forecast.wip_end,
                        })
                    };
                    let forecast = serde_json::json!({
                        "source": "optimiser",
                        "horizon_s": p.horizon.as_secs_f64(),
                        "based_on": rfc3339(p.based_on_ns),
                        "baseline": f(&p.round.baseline),
                        "candidate": f(&p.best),
                        "gain_per_min": p.best.objective - p.round.baseline.objective,
                    });
                    for tag in p.tags.iter() {
                        self.optimised
                            .insert(tag.clone(), (p.model.clone(), forecast.clone()));
                    }
                }
                TwinEvent::Setpoint(sp) => {
                    if let (crate::guard::events::SetpointDecision::Pending, Some(id)) =
                        (sp.decision, sp.proposal)
                    {
                        self.pending.insert(
                            id,
                            PendingWord {
                                rule: sp.rule.map(|r| r.as_str()),
                                reason: sp.reason.clone(),
                                forecast: sp.forecast.clone(),
                            },
                        );
                    }
                    let rule = sp.rule.map_or("none", |r| r.as_str());
                    *self
                        .work
                        .decisions
                        .entry((sp.decision.as_str(), rule))
                        .or_default() += 1;
                }
                _ => {}
            }
        }
    }

    /// Take what only the core knows (the guard's queue, compute time) and
    /// publish.
    fn publish(&mut self, out: &TickOutput<'_>) {
        self.work.alarms = self.alarms.values().cloned().collect();
        self.work.predictions = self.predictions.values().cloned().collect();
        self.work.lines = self.lines.views(out.core, out.t_ns);
        self.work.lines_ready = true;
        let words = &mut self.pending;
        let optimised = &self.optimised;
        self.work.guard = crate::guard::state(out.core).map(|st| {
            let pending = st.pending();
            words.retain(|id, _| pending.iter().any(|p| p.proposal.id == *id));
            GuardView {
                pending: pending
                    .iter()
                    .map(|p| {
                        let word = words.get(&p.proposal.id);
                        ProposalRow {
                            id: p.proposal.id,
                            tag: st.setpoint_name(p.setpoint).to_string(),
                            value: p.value,
                            requested: p.proposal.requested,
                            actor: p.proposal.actor.name().to_string(),
                            expires: rfc3339(p.expires_ns),
                            rule: word.and_then(|w| w.rule),
                            reason: word.map(|w| w.reason.clone()).unwrap_or_default(),
                            // The guard's own forecast if it made one, else the
                            // optimiser's that proposed this value.
                            forecast: word.and_then(|w| w.forecast.clone()).or_else(|| {
                                let tag = st.setpoint_name(p.setpoint);
                                optimised
                                    .get(tag)
                                    .filter(|(model, _)| **model == *p.proposal.actor.name())
                                    .map(|(_, f)| f.clone())
                            }),
                        }
                    })
                    .collect(),
                locked: st
                    .locked()
                    .into_iter()
                    .map(|(t, w)| LockRow {
                        tag: t.to_string(),
                        why: w.to_string(),
                    })
                    .collect(),
                kill: st.killed(),
            }
        });
        let compute = crate::ml::stage::compute_time(out.core);
        for (id, time, overruns) in compute.models {
            let mm = self
                .metering
                .entry(id.clone())
                .or_insert_with(|| ModelMetering {
                    model: id.clone(),
                    ..ModelMetering::default()
                });
            mm.compute_seconds = time.as_secs_f64();
            mm.overruns = overruns;
        }
        self.work.metering = self.metering.values().cloned().collect();
        self.shared.publish(self.work.clone());
        self.last_publish_ns = Some(out.t_ns);
    }
}

impl Drop for HttpSink {
    /// A run that stops without `finish` (a failed sink) still ends its
    /// event streams rather than leaving them open with nothing to come.
    fn drop(&mut self) {
        self.shared.events.close();
    }
}

impl Sink for HttpSink {
    /// The run's clock is known: the snapshot is of its tick 0.
    fn start(&mut self, clock: &crate::twin::TickClock) -> Result<(), SinkError> {
        self.work.tick = clock.tick();
        self.work.t_ns = clock.now_ns();
        self.shared.publish(self.work.clone());
        Ok(())
    }

    fn write_tick(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        self.work.tick_time.observe(out.tick_time);
        self.follow(out);
        self.shared.events.publish(out.jsonl);
        let every = i64::try_from(PUBLISH_EVERY.as_nanos()).unwrap_or(i64::MAX);
        if self
            .last_publish_ns
            .is_none_or(|t| out.t_ns.saturating_sub(t) >= every)
        {
            self.publish(out);
        }
        Ok(())
    }

    fn write_end(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        self.follow(out);
        self.shared.events.publish(out.jsonl);
        self.publish(out);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.work.finished = true;
        self.shared.publish(self.work.clone());
        self.shared.events.close();
        Ok(())
    }
}
