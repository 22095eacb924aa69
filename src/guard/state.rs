//! The guard's state in the core ([`GuardState`], a resource) and the API
//! the driver and the control paths call between ticks.
//!
//! Everything that comes from outside (an operator's proposal, approval,
//! rejection or reset, a write's outcome) is queued here and taken on the
//! next tick, at that tick's time: a decision's time is always a tick's,
//! never the moment a call happened to come in. What the guard decides
//! leaves through outboxes the driver drains ([`GuardState::take_outputs`]):
//! audit records first, then write intents (docs/audit.md's ordering
//! contract; `guard::carry` does it).

use std::collections::{BTreeMap, BTreeSet};

use bevy_ecs::prelude::Resource;

use super::audit::{Actor, Record};
use super::decide::{Forecast, Proposal, SetpointState};
use super::events::SetpointEvent;
use super::inputs::GuardInput;
use crate::config::TagId;
use crate::config::TagTable;
use crate::config::guard::{GuardConfig, Mode, Readback, WriteTarget};
use crate::config::knob::Knob;

/// The connection a setpoint is written through, for its `up` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Link {
    /// Index into `PlantConfig::modbus`.
    Modbus(usize),
    /// Index into `PlantConfig::mqtt`.
    Mqtt(usize),
    /// Index into `PlantConfig::sparkplug`.
    Sparkplug(usize),
}

impl Link {
    pub fn of(target: &WriteTarget) -> Link {
        match target {
            WriteTarget::Modbus(m) => Link::Modbus(m.device),
            WriteTarget::Mqtt { source, .. } => Link::Mqtt(*source),
            WriteTarget::Sparkplug { source, .. } => Link::Sparkplug(*source),
        }
    }
}

/// A write the guard decided on, for the sinks side to carry out.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteIntent {
    pub id: u64,
    /// The proposal it carries out.
    pub proposal: u64,
    pub tag: TagId,
    /// The setpoint's tag name.
    pub name: String,
    /// In engineering units. The writer encodes it for its target (raw =
    /// (value - offset) / scale, the register type and word order), since
    /// that encoding is the link's business, not the guard's.
    pub value: f64,
    pub target: WriteTarget,
    pub readback: Readback,
    /// The tick it was decided at.
    pub t_ns: i64,
}

/// What became of a write intent, reported by the driver
/// ([`GuardState::report_outcome`]).
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// Sent and acknowledged by the device; the read-back is still due.
    Sent,
    /// The register read back after the write (`Readback::Target`).
    ReadBack(f64),
    /// The device refused it (a Modbus exception, named): nothing changed.
    Refused(String),
    /// A transport failure: whether the device got it is unknown. The
    /// guard treats it as a mismatch and locks the setpoint.
    Failed(String),
    /// Never sent: its audit record could not be appended.
    NotSent(String),
}

/// What the guard can refuse at once, before a tick.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("`{0}` is not a [[setpoints]] tag")]
    UnknownSetpoint(String),
    #[error("setpoint `{0}` is off (mode = \"off\"): it takes no proposals")]
    Off(String),
    #[error("no pending proposal {0} (it was decided, expired, or never existed)")]
    UnknownProposal(u64),
    #[error("setpoint `{0}` is not locked")]
    NotLocked(String),
    #[error("an operator must be named")]
    NoOperator,
}

/// A command from outside, taken on the next tick in call order.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Command {
    Operator {
        id: u64,
        setpoint: usize,
        value: f64,
        operator: String,
    },
    Approve {
        id: u64,
        operator: String,
    },
    Reject {
        id: u64,
        operator: String,
    },
    Reset {
        setpoint: usize,
        operator: String,
    },
    Kill {
        on: bool,
        operator: String,
    },
}

/// An advisory proposal awaiting an operator.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingProposal {
    pub proposal: Proposal,
    pub setpoint: usize,
    /// The value that would be written (clamped if it had to be).
    pub value: f64,
    pub expires_tick: u64,
    pub expires_ns: i64,
}

/// How an operator's (or an approval's) value is forecast: the line model
/// and knob the setpoint turns.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct KnobSetup {
    /// Index into the core's `Lines`.
    pub line: usize,
    pub knob: Knob,
    pub horizon: std::time::Duration,
    pub max_jam_risk: f64,
    pub arrival_interval: Option<std::time::Duration>,
}

/// The guard in the core.
#[derive(Resource, Debug)]
pub struct GuardState {
    pub(super) cfg: GuardConfig,
    pub(super) table: std::sync::Arc<TagTable>,
    /// One per `cfg.setpoints` entry.
    pub(super) states: Vec<SetpointState>,
    pub(super) knobs: Vec<Option<KnobSetup>>,
    /// (model id, machine) → the tags its row reads.
    pub(super) model_inputs: BTreeMap<(String, Option<String>), Vec<TagId>>,
    /// Each optimised model's jam-risk limit.
    pub(super) max_jam_risk: BTreeMap<String, f64>,
    pub(super) next_proposal: u64,
    pub(super) next_intent: u64,
    pub(super) kill: Option<String>,
    pub(super) audit_failed: Option<String>,
    pub(super) links_down: BTreeSet<Link>,
    pub(super) commands: Vec<Command>,
    pub(super) outcomes: Vec<(u64, WriteOutcome)>,
    pub(super) pending: Vec<PendingProposal>,
    pub(super) events: Vec<SetpointEvent>,
    pub(super) records: Vec<Record>,
    pub(super) intents: Vec<WriteIntent>,
    /// A writer carries intents out and reports their outcomes.
    pub(super) writer: bool,
    /// An audit log takes the records.
    pub(super) audit: bool,
    /// Every input taken in from outside since the driver last took them,
    /// in call order, for the recorder (`super::inputs`).
    pub(super) inputs: Vec<GuardInput>,
}

/// What the driver takes after a tick: records to append, then intents to
/// carry out, in that order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GuardOutputs {
    pub records: Vec<Record>,
    pub intents: Vec<WriteIntent>,
}

impl GuardState {
    pub(super) fn new(cfg: &GuardConfig, table: &TagTable, start_tick: u64) -> GuardState {
        GuardState {
            cfg: cfg.clone(),
            table: std::sync::Arc::new(table.clone()),
            states: cfg
                .setpoints
                .iter()
                .map(|_| SetpointState {
                    start_tick,
                    ..SetpointState::default()
                })
                .collect(),
            knobs: vec![None; cfg.setpoints.len()],
            model_inputs: BTreeMap::new(),
            max_jam_risk: BTreeMap::new(),
            next_proposal: 1,
            next_intent: 1,
            kill: None,
            audit_failed: None,
            links_down: BTreeSet::new(),
            commands: Vec::new(),
            outcomes: Vec::new(),
            pending: Vec::new(),
            events: Vec::new(),
            records: Vec::new(),
            intents: Vec::new(),
            writer: false,
            audit: false,
            inputs: Vec::new(),
        }
    }

    pub(super) fn setpoint_index(&self, tag: &str) -> Option<usize> {
        let id = self.table.id(tag)?;
        self.cfg.setpoints.iter().position(|s| s.tag == id)
    }

    pub(super) fn proposal_id(&mut self) -> u64 {
        let id = self.next_proposal;
        self.next_proposal += 1;
        id
    }

    /// An operator proposes `value` for setpoint `tag`. Decided on the next
    /// tick by the setpoint's mode, like a model's proposal; its only input
    /// is the setpoint's own tag. Returns the proposal's id.
    pub fn propose_operator(
        &mut self,
        tag: &str,
        value: f64,
        operator: &str,
    ) -> Result<u64, GuardError> {
        let setpoint = self
            .setpoint_index(tag)
            .ok_or_else(|| GuardError::UnknownSetpoint(tag.to_string()))?;
        if self.cfg.setpoints[setpoint].mode == Mode::Off {
            return Err(GuardError::Off(tag.to_string()));
        }
        let operator = named(operator)?;
        let id = self.proposal_id();
        self.inputs.push(GuardInput::Propose {
            tag: tag.to_string(),
            value,
            operator: operator.clone(),
        });
        self.commands.push(Command::Operator {
            id,
            setpoint,
            value,
            operator,
        });
        Ok(id)
    }

    /// An operator approves pending proposal `id`. On the next tick it is
    /// re-checked against every rule on that tick's inputs; only if it
    /// passes does it become a write.
    pub fn approve(&mut self, id: u64, operator: &str) -> Result<(), GuardError> {
        let operator = named(operator)?;
        self.find_pending(id)?;
        self.inputs.push(GuardInput::Approve {
            id,
            operator: operator.clone(),
        });
        self.commands.push(Command::Approve { id, operator });
        Ok(())
    }

    /// An operator rejects pending proposal `id` (taken on the next tick).
    pub fn reject(&mut self, id: u64, operator: &str) -> Result<(), GuardError> {
        let operator = named(operator)?;
        self.find_pending(id)?;
        self.inputs.push(GuardInput::Reject {
            id,
            operator: operator.clone(),
        });
        self.commands.push(Command::Reject { id, operator });
        Ok(())
    }

    /// An operator unlocks setpoint `tag` after a read-back mismatch (taken
    /// on the next tick).
    pub fn reset(&mut self, tag: &str, operator: &str) -> Result<(), GuardError> {
        let operator = named(operator)?;
        let setpoint = self
            .setpoint_index(tag)
            .ok_or_else(|| GuardError::UnknownSetpoint(tag.to_string()))?;
        if self.states[setpoint].locked.is_none() {
            return Err(GuardError::NotLocked(tag.to_string()));
        }
        self.inputs.push(GuardInput::Reset {
            tag: tag.to_string(),
            operator: operator.clone(),
        });
        self.commands.push(Command::Reset { setpoint, operator });
        Ok(())
    }

    /// The driver reports what became of write intent `intent`; taken on
    /// the next tick.
    pub fn report_outcome(&mut self, intent: u64, outcome: WriteOutcome) {
        self.inputs.push(GuardInput::Outcome {
            intent,
            outcome: (&outcome).into(),
        });
        self.outcomes.push((intent, outcome));
    }

    /// An operator engages (`on`) or lifts the kill switch from a control
    /// path (`twin kill`, the HTTP API). Taken on the next tick, before any
    /// proposal of that tick: from then on every write is blocked (rule
    /// `kill_switch`), and each setpoint gets a `kill_on` decision, audited
    /// with the operator as the actor. Lifting it leaves the config's
    /// `kill_switch` and the kill tag in force. Asking for the state it is
    /// already in decides nothing.
    pub fn kill(&mut self, on: bool, operator: &str) -> Result<(), GuardError> {
        let operator = named(operator)?;
        self.inputs.push(GuardInput::Kill {
            on,
            operator: operator.clone(),
        });
        self.commands.push(Command::Kill { on, operator });
        Ok(())
    }

    /// Whether an operator's kill switch is on (not the config's or the
    /// kill tag's).
    pub fn killed(&self) -> bool {
        self.kill.is_some()
    }

    /// The audit log refused an append: with no record there is no write
    /// (docs/audit.md, SR 2.9), so everything is blocked until a restart
    /// with a working log.
    pub fn audit_failed(&mut self, why: String) {
        if self.audit_failed.is_none() {
            self.inputs
                .push(GuardInput::AuditFailed { why: why.clone() });
        }
        self.audit_failed.get_or_insert(why);
    }

    /// The sources side says whether `link` is connected. A link is up
    /// until said otherwise (a replay never says: a disconnected device
    /// shows in its recorded tags' quality, which blocks as well). Pending
    /// proposals written through a link that goes down expire on the next
    /// tick: none is kept across a reconnect.
    pub fn set_link_up(&mut self, link: Link, up: bool) {
        let changed = if up {
            self.links_down.remove(&link)
        } else {
            self.links_down.insert(link)
        };
        if changed {
            self.inputs.push(GuardInput::Link {
                link: link.into(),
                up,
            });
        }
    }

    pub fn link_up(&self, link: Link) -> bool {
        !self.links_down.contains(&link)
    }

    /// A writer carries out this run's intents and reports their outcomes.
    /// Without one (a replay) intents are dropped and a read-back through
    /// the register (`Readback::Target`) is not waited for.
    pub fn attach_writer(&mut self) {
        if !self.writer {
            self.inputs.push(GuardInput::Writer);
        }
        self.writer = true;
    }

    /// An audit log takes this run's records. Without one they are not
    /// kept (the events carry the same decisions).
    pub fn attach_audit(&mut self) {
        self.audit = true;
    }

    /// The inputs taken in since the last call, in call order (the driver
    /// hands them to the recorder before each tick).
    pub fn take_inputs(&mut self) -> Vec<GuardInput> {
        std::mem::take(&mut self.inputs)
    }

    /// Give a recorded input back (a replay), through the method that took
    /// it live, so it is queued and taken as it was then. An error means
    /// the replayed state is not the recorded one (another config): the
    /// input cannot apply.
    pub fn apply_input(&mut self, input: &GuardInput) -> Result<(), GuardError> {
        match input {
            GuardInput::Writer => self.attach_writer(),
            GuardInput::Outcome { intent, outcome } => {
                self.report_outcome(*intent, outcome.clone().into())
            }
            GuardInput::Link { link, up } => self.set_link_up((*link).into(), *up),
            GuardInput::Propose {
                tag,
                value,
                operator,
            } => {
                self.propose_operator(tag, *value, operator)?;
            }
            GuardInput::Approve { id, operator } => self.approve(*id, operator)?,
            GuardInput::Reject { id, operator } => self.reject(*id, operator)?,
            GuardInput::Reset { tag, operator } => self.reset(tag, operator)?,
            GuardInput::Kill { on, operator } => self.kill(*on, operator)?,
            GuardInput::AuditFailed { why } => self.audit_failed(why.clone()),
        }
        Ok(())
    }

    /// Records to append (first) and intents to carry out (after), since
    /// the last call.
    pub fn take_outputs(&mut self) -> GuardOutputs {
        GuardOutputs {
            records: std::mem::take(&mut self.records),
            intents: std::mem::take(&mut self.intents),
        }
    }

    /// The advisory queue, oldest first: for the live table and the
    /// control socket.
    pub fn pending(&self) -> &[PendingProposal] {
        &self.pending
    }

    /// The name of a setpoint's tag, by `TagId`.
    pub fn tag_name(&self, id: TagId) -> &str {
        self.table.try_get(id).map_or("?", |d| d.name.as_str())
    }

    /// The tag name of setpoint `i` (an index into `[[setpoints]]`, as
    /// `PendingProposal::setpoint`).
    pub fn setpoint_name(&self, i: usize) -> &str {
        self.cfg.setpoints.get(i).map_or("?", |s| s.name.as_str())
    }

    /// Locked setpoints and why.
    pub fn locked(&self) -> Vec<(&str, &str)> {
        self.cfg
            .setpoints
            .iter()
            .zip(&self.states)
            .filter_map(|(sp, st)| st.locked.as_deref().map(|w| (sp.name.as_str(), w)))
            .collect()
    }

    fn find_pending(&self, id: u64) -> Result<(), GuardError> {
        let queued = self
            .commands
            .iter()
            .any(|c| matches!(c, Command::Approve { id: i, .. } | Command::Reject { id: i, .. } if *i == id));
        if queued || !self.pending.iter().any(|p| p.proposal.id == id) {
            return Err(GuardError::UnknownProposal(id));
        }
        Ok(())
    }
}

fn named(operator: &str) -> Result<String, GuardError> {
    let o = operator.trim();
    if o.is_empty() {
        return Err(GuardError::NoOperator);
    }
    Ok(o.to_string())
}

/// The forecast of an optimiser's proposal, as the guard judges it.
pub(super) fn optimiser_forecast(
    p: &crate::ml::optimise_events::Proposal,
    max_jam_risk: f64,
) -> Forecast {
    let f = &p.best.forecast;
    let r = |x: f64| {
        if x.is_finite() {
            (x * 1e6).round() / 1e6 + 0.0
        } else {
            0.0
        }
    };
    Forecast {
        lost: f.lost,
        jam_risk: f.jam_risk,
        max_jam_risk,
        json: serde_json::json!({
            "source": "optimiser",
            "horizon_s": p.horizon.as_secs_f64(),
            "throughput_per_min": r(f.throughput_per_min),
            "out": f.out,
            "lost": f.lost,
            "jam_risk": r(f.jam_risk),
            "max_jam_risk": max_jam_risk,
        }),
    }
}

/// The actor of an optimiser proposal.
pub(super) fn model_actor(p: &crate::ml::optimise_events::Proposal) -> Actor {
    Actor::Model {
        id: p.model.to_string(),
        sha256: p.sha256.to_string(),
    }
}
