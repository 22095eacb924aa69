//! The topic layout: where each event line of the twin goes upstream.
//!
//! ```text
//! {prefix}/{plant}/{line}/{machine}/{type}   a machine's events
//! {prefix}/{plant}/{line}/{type}             a line's events
//! {prefix}/{plant}/{type}                    the plant's events
//! ```
//!
//! `{type}` is the event's `type` field (docs/events.md), `{line}` and
//! `{machine}` the config's ids (made topic levels), `{line}` is `_` for a
//! machine on no line. Machine level: `tag`, `prediction`, `alarm` and
//! `setpoint` events of a machine's tags or models. Line level: `line`,
//! `residual`, `eye`, `jam`, `proposal`, `optimiser`, and `metering` once
//! for every line it counts. Plant level: `metering` (every one), `error`,
//! and `tag`, `prediction`, `alarm`, `setpoint` with no machine. The full
//! table is in docs/deployment.md.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::LoadedConfig;
use crate::config::upstream::{Output, UpstreamMqtt, topic_level};
use crate::ml::events::MlEvent;
use crate::ml::optimise_events::OptimiserEvent;
use crate::twin::TwinEvent;

/// The topic of every event a publisher may send, precomputed where an
/// event's place is known from the config (tags, machines).
#[derive(Debug)]
pub struct Layout {
    /// `{prefix}/{plant}`.
    base: String,
    /// Which outputs are sent.
    publish: [bool; Output::NAMES.len()],
    /// Per tag, in tag order: its `tag` topic.
    tag_topics: Vec<Arc<str>>,
    /// Tag name → its machine's topic stem `{base}/{line}/{machine}`.
    tag_machine: HashMap<Arc<str>, Arc<str>>,
    /// Machine id → `{base}/{line}/{machine}`.
    machines: HashMap<String, Arc<str>>,
    /// Topics already built for line- and plant-level events.
    cache: HashMap<(Arc<str>, &'static str), Arc<str>>,
}

/// The line level of a machine on no line.
pub const NO_LINE: &str = "_";

impl Layout {
    pub fn new(cfg: &LoadedConfig, up: &UpstreamMqtt) -> Self {
        let base = format!("{}/{}", up.topic_prefix, up.plant_id);
        let mut publish = [false; Output::NAMES.len()];
        for o in &up.publish {
            publish[*o as usize] = true;
        }
        let mut machines: HashMap<String, Arc<str>> = HashMap::new();
        for l in &cfg.config.lines {
            for m in &l.machines {
                machines.entry(m.value.clone()).or_insert_with(|| {
                    Arc::from(format!(
                        "{base}/{}/{}",
                        topic_level(&l.id.value),
                        topic_level(&m.value)
                    ))
                });
            }
        }
        for m in &cfg.config.machines {
            machines.entry(m.id.value.clone()).or_insert_with(|| {
                Arc::from(format!("{base}/{NO_LINE}/{}", topic_level(&m.id.value)))
            });
        }
        let mut tag_topics = Vec::with_capacity(cfg.tags.len());
        let mut tag_machine = HashMap::new();
        for t in cfg.tags.iter() {
            let stem = t.machine.as_ref().map(|m| {
                machines
                    .entry(m.clone())
                    .or_insert_with(|| Arc::from(format!("{base}/{NO_LINE}/{}", topic_level(m))))
                    .clone()
            });
            tag_topics.push(match &stem {
                Some(s) => Arc::from(format!("{s}/tag")),
                None => Arc::from(format!("{base}/tag")),
            });
            if let Some(s) = stem {
                tag_machine.insert(Arc::from(t.name.as_str()), s);
            }
        }
        Layout {
            base,
            publish,
            tag_topics,
            tag_machine,
            machines,
            cache: HashMap::new(),
        }
    }

    /// `{prefix}/{plant}`.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn wants(&self, o: Output) -> bool {
        self.publish[o as usize]
    }

    /// `{stem}/{kind}`, built once.
    fn under(&mut self, stem: &Arc<str>, kind: &'static str) -> Arc<str> {
        self.cache
            .entry((stem.clone(), kind))
            .or_insert_with(|| Arc::from(format!("{stem}/{kind}")))
            .clone()
    }

    fn plant(&mut self, kind: &'static str) -> Arc<str> {
        let stem: Arc<str> = Arc::from(self.base.as_str());
        self.under(&stem, kind)
    }

    fn line(&mut self, line: &str, kind: &'static str) -> Arc<str> {
        let stem: Arc<str> = Arc::from(format!("{}/{}", self.base, topic_level(line)));
        self.under(&stem, kind)
    }

    fn machine(&mut self, machine: Option<&str>, kind: &'static str) -> Arc<str> {
        let stem = machine.and_then(|m| self.machines.get(m).cloned());
        match stem {
            Some(s) => self.under(&s, kind),
            None => match machine {
                Some(m) => {
                    let s: Arc<str> =
                        Arc::from(format!("{}/{NO_LINE}/{}", self.base, topic_level(m)));
                    self.machines.insert(m.to_string(), s.clone());
                    self.under(&s, kind)
                }
                None => self.plant(kind),
            },
        }
    }

    /// Append the topics `ev` goes to (none if its output is not sent).
    pub fn route(&mut self, ev: &TwinEvent, out: &mut Vec<Arc<str>>) {
        match ev {
            TwinEvent::Tag(e) => {
                if self.wants(Output::Tags)
                    && let Some(t) = self.tag_topics.get(e.tag.index())
                {
                    out.push(t.clone());
                }
            }
            TwinEvent::Line(e) => {
                if self.wants(Output::Line) {
                    out.push(self.line(&e.line, "line"));
                }
            }
            TwinEvent::Residual(e) => {
                if self.wants(Output::Events) {
                    out.push(self.line(&e.line, "residual"));
                }
            }
            TwinEvent::Eye(e) => {
                if self.wants(Output::Events) {
                    out.push(self.line(&e.line, "eye"));
                }
            }
            TwinEvent::Jam(e) => {
                if self.wants(Output::Events) {
                    out.push(self.line(&e.line, "jam"));
                }
            }
            TwinEvent::Ml(m) => self.route_ml(m, out),
            TwinEvent::Setpoint(e) => {
                if self.wants(Output::Proposals) {
                    out.push(match self.tag_machine.get(&e.tag).cloned() {
                        Some(stem) => self.under(&stem, "setpoint"),
                        None => self.plant("setpoint"),
                    });
                }
            }
        }
    }

    fn route_ml(&mut self, m: &MlEvent, out: &mut Vec<Arc<str>>) {
        match m {
            MlEvent::Prediction(p) => {
                if self.wants(Output::Predictions) {
                    out.push(self.machine(p.machine_name(), "prediction"));
                }
            }
            MlEvent::Alarm(a) => {
                if self.wants(Output::Alarms) {
                    out.push(self.machine(a.machine.as_deref(), "alarm"));
                }
            }
            MlEvent::Error(_) | MlEvent::Optimiser(OptimiserEvent::Error(_)) => {
                if self.wants(Output::Events) {
                    out.push(self.plant("error"));
                }
            }
            MlEvent::Metering(me) => {
                if self.wants(Output::Metering) {
                    out.push(self.plant("metering"));
                    for (line, _) in &me.lines {
                        out.push(self.line(line, "metering"));
                    }
                }
            }
            MlEvent::Optimiser(OptimiserEvent::Proposal(p)) => {
                if self.wants(Output::Proposals) {
                    out.push(self.line(&p.line, "proposal"));
                }
            }
            MlEvent::Optimiser(OptimiserEvent::Summary(s)) => {
                if self.wants(Output::Proposals) {
                    out.push(self.line(&s.line, "optimiser"));
                }
            }
        }
    }

    /// The topic of an `error` line the driver adds after a tick's events
    /// (an output that stopped), if errors are sent.
    pub fn error_topic(&mut self) -> Option<Arc<str>> {
        self.wants(Output::Events).then(|| self.plant("error"))
    }
}
