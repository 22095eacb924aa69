//! One tick of the guard, on a snapshot of the core ([`View`]): write
//! outcomes and read-backs first, then advisory expiry, then the
//! operators' commands in the order they came, then this tick's optimiser
//! proposals (docs/guard.md, "A tick").

use super::audit::Actor;
use super::decide::{
    Context, Forecast, Forecaster, Globals, InFlight, Outcome, Proposal, Purpose, SetpointState,
    Verdict, View, decide, fmt,
};
use super::events::{SetpointDecision as D, SetpointEvent};
use super::rules::RuleId;
use super::state::{Command, GuardState, Link, PendingProposal, WriteIntent, WriteOutcome};
use crate::config::guard::{Mode, Readback};
use crate::ml::optimise_events::Proposal as MlProposal;
use crate::physics::lookahead::Candidate;
use crate::twin::Lines;

/// Forecasts a setpoint's value with the twin's own line model, on the
/// tick thread: one lookahead over the horizon (about 40 ms per simulated
/// minute on the demo line). Only operator proposals in closed loop and
/// approvals need it, at an operator's pace.
pub(super) struct LineForecaster<'a> {
    pub state: &'a GuardState,
    pub lines: Option<&'a Lines>,
}

impl Forecaster for LineForecaster<'_> {
    fn forecast(
        &mut self,
        tag: crate::config::TagId,
        value: f64,
    ) -> Result<Option<Forecast>, String> {
        let Some(i) = self.state.cfg.setpoints.iter().position(|s| s.tag == tag) else {
            return Ok(None);
        };
        let Some(k) = &self.state.knobs[i] else {
            return Ok(None);
        };
        let line = self
            .lines
            .and_then(|l| l.0.get(k.line))
            .ok_or("the line has no model in the twin")?;
        if line.status.uncertain {
            return Err(format!(
                "line {}'s state is uncertain, so a forecast from it would vet nothing",
                line.id
            ));
        }
        let mut c = Candidate {
            arrival_interval: k.arrival_interval,
            ..Candidate::default()
        };
        c.set(k.knob, value);
        let f = crate::ml::vetting::settled_forecast(line.model(), &c, k.horizon)
            .map_err(|e| e.to_string())?;
        let r = |x: f64| {
            if x.is_finite() {
                (x * 1e6).round() / 1e6 + 0.0
            } else {
                0.0
            }
        };
        Ok(Some(Forecast {
            lost: f.lost,
            jam_risk: f.jam_risk,
            max_jam_risk: k.max_jam_risk,
            json: serde_json::json!({
                "source": "guard",
                "horizon_s": k.horizon.as_secs_f64(),
                "throughput_per_min": r(f.throughput_per_min),
                "out": f.out,
                "lost": f.lost,
                "jam_risk": r(f.jam_risk),
                "max_jam_risk": k.max_jam_risk,
            }),
        }))
    }
}

impl GuardState {
    fn globals(&self) -> Globals {
        let kill = self
            .audit_failed
            .as_ref()
            .map(|w| format!("the audit log failed ({w}): no record, no write"))
            .or_else(|| {
                self.cfg
                    .kill_switch
                    .then(|| "[guard].kill_switch is on".to_string())
            })
            .or_else(|| self.kill.as_ref().map(|w| format!("kill switch: {w}")));
        Globals {
            kill,
            kill_tag: self.cfg.kill_tag,
        }
    }

    /// Whether this tick has anything to do: the guard builds its view of
    /// the tags only then.
    pub fn busy(&self) -> bool {
        !self.commands.is_empty()
            || !self.outcomes.is_empty()
            || !self.pending.is_empty()
            || self.states.iter().any(|s| s.inflight.is_some())
    }

    /// One tick: `proposals` are the optimiser's of this tick (drained).
    pub fn step(
        &mut self,
        view: &View<'_>,
        lines: Option<&Lines>,
        proposals: &mut Vec<MlProposal>,
    ) {
        self.take_outcomes(view);
        self.check_readbacks(view);
        self.expire(view);
        for c in std::mem::take(&mut self.commands) {
            self.command(view, lines, c);
        }
        for p in proposals.drain(..) {
            self.optimiser_proposal(view, lines, &p);
        }
    }

    fn emit(&mut self, e: SetpointEvent) {
        if self.audit {
            self.records.push(e.record());
        }
        self.events.push(e);
    }

    /// An event about setpoint `i` at this tick, the rest empty.
    fn event(&self, view: &View<'_>, i: usize, decision: D, actor: Actor) -> SetpointEvent {
        let sp = &self.cfg.setpoints[i];
        SetpointEvent {
            t_ns: view.now_ns,
            tag: sp.name.as_str().into(),
            decision,
            rule: None,
            reason: String::new(),
            mode: sp.mode,
            actor,
            proposal: None,
            intent: None,
            old: view.number(sp.tag),
            requested: None,
            value: None,
            inputs: Vec::new(),
            expires_ns: None,
            forecast: None,
        }
    }

    fn take_outcomes(&mut self, view: &View<'_>) {
        for (intent, outcome) in std::mem::take(&mut self.outcomes) {
            let Some(i) = self
                .states
                .iter()
                .position(|s| s.inflight.as_ref().is_some_and(|f| f.intent == intent))
            else {
                tracing::warn!(intent, "A write outcome for no write in flight; ignored.");
                continue;
            };
            match outcome {
                WriteOutcome::Sent => {
                    if let Some(f) = &mut self.states[i].inflight {
                        f.sent = true;
                    }
                }
                WriteOutcome::ReadBack(v) => self.judge_readback(view, i, v),
                WriteOutcome::Refused(why) => {
                    self.undone(
                        view,
                        i,
                        RuleId::DeviceRefused,
                        format!("the device refused the write: {why}"),
                    );
                }
                WriteOutcome::NotSent(why) => {
                    self.undone(view, i, RuleId::NotSent, format!("never sent: {why}"));
                }
                WriteOutcome::Failed(why) => {
                    self.mismatch(
                        view,
                        i,
                        RuleId::WriteFailed,
                        format!("the write failed, the device may or may not have it: {why}"),
                        None,
                    );
                }
            }
        }
    }

    /// A write that did not happen: blocked after the fact, and the rate
    /// limits no longer count it.
    fn undone(&mut self, view: &View<'_>, i: usize, rule: RuleId, reason: String) {
        let Some(f) = self.states[i].inflight.take() else {
            return;
        };
        self.states[i].last_write = f.previous;
        let mut e = self.event(view, i, D::Blocked, Actor::System);
        e.rule = Some(rule);
        e.reason = reason;
        e.proposal = Some(f.proposal);
        e.intent = Some(f.intent);
        e.requested = Some(f.value);
        self.emit(e);
    }

    fn judge_readback(&mut self, view: &View<'_>, i: usize, read: f64) {
        let tol = self.cfg.setpoints[i].readback_tolerance;
        let Some(f) = &self.states[i].inflight else {
            return;
        };
        if (read - f.value).abs() <= tol {
            let f = f.clone();
            self.states[i].inflight = None;
            let mut e = self.event(view, i, D::ReadbackOk, Actor::System);
            e.reason = format!("read back {} (wrote {})", fmt(read), fmt(f.value));
            e.proposal = Some(f.proposal);
            e.intent = Some(f.intent);
            e.requested = Some(f.value);
            e.value = Some(read);
            self.emit(e);
        } else {
            let reason = format!(
                "read back {} after writing {}: off by more than the tolerance {tol}",
                fmt(read),
                fmt(f.value)
            );
            self.mismatch(view, i, RuleId::Readback, reason, Some(read));
        }
    }

    /// A read-back that does not match (or a write whose fate is unknown):
    /// an alarm (`readback_mismatch`) and a lock.
    fn mismatch(
        &mut self,
        view: &View<'_>,
        i: usize,
        rule: RuleId,
        reason: String,
        read: Option<f64>,
    ) {
        let Some(f) = self.states[i].inflight.take() else {
            return;
        };
        tracing::error!(setpoint = %self.cfg.setpoints[i].name, %reason, "Setpoint read-back mismatch; the setpoint is locked until an operator resets it.");
        let mut e = self.event(view, i, D::ReadbackMismatch, Actor::System);
        e.rule = Some(rule);
        e.reason = reason.clone();
        e.proposal = Some(f.proposal);
        e.intent = Some(f.intent);
        e.requested = Some(f.value);
        e.value = read;
        self.emit(e);
        let why = format!(
            "write {} at {}: {reason}",
            f.intent,
            crate::twin::events::rfc3339(view.now_ns)
        );
        self.states[i].locked = Some(why);
        let mut e = self.event(view, i, D::Locked, Actor::System);
        e.rule = Some(rule);
        e.reason = format!("no more writes until an operator resets it: {reason}");
        e.intent = Some(f.intent);
        self.emit(e);
    }

    fn check_readbacks(&mut self, view: &View<'_>) {
        for i in 0..self.states.len() {
            let Some(f) = &self.states[i].inflight else {
                continue;
            };
            let sp = &self.cfg.setpoints[i];
            if let Readback::Tag(t) = sp.readback
                && let Some(v) = view.number(t)
                && view
                    .tag(t)
                    .is_some_and(|s| s.quality == crate::twin::Quality::Good)
                && (v - f.value).abs() <= sp.readback_tolerance
                && view
                    .tag(t)
                    .and_then(|s| s.source_time_ns)
                    .is_some_and(|st| st >= view.time_of(f.issued_tick))
            {
                self.judge_readback(view, i, v);
                continue;
            }
            if view.tick.saturating_sub(f.issued_tick) > u64::from(sp.readback_timeout_ticks) {
                let last = match sp.readback {
                    Readback::Tag(t) => view.number(t),
                    Readback::Target => None,
                };
                let reason = format!(
                    "no matching read-back within {} ms{}",
                    sp.readback_timeout.as_millis(),
                    last.map(|v| format!(" (last read {})", fmt(v)))
                        .unwrap_or_default()
                );
                self.mismatch(view, i, RuleId::Readback, reason, last);
            }
        }
    }

    fn expire(&mut self, view: &View<'_>) {
        let mut keep = Vec::with_capacity(self.pending.len());
        for p in std::mem::take(&mut self.pending) {
            let link = Link::of(&self.cfg.setpoints[p.setpoint].target);
            let why = if !self.link_up(link) {
                Some("the device it is written to disconnected: a proposal is never kept across a reconnect".to_string())
            } else if view.tick >= p.expires_tick {
                Some(format!(
                    "not approved within {} s",
                    self.cfg.advisory_expiry.as_secs()
                ))
            } else {
                None
            };
            match why {
                Some(reason) => {
                    let mut e = self.event(view, p.setpoint, D::Expired, Actor::System);
                    e.reason = reason;
                    e.proposal = Some(p.proposal.id);
                    e.requested = Some(p.proposal.requested);
                    e.value = Some(p.value);
                    self.emit(e);
                }
                None => keep.push(p),
            }
        }
        self.pending = keep;
    }

    /// A newer pending proposal for setpoint `i` replaces the older ones:
    /// an operator answers the latest advice, and the queue does not grow
    /// with every round of a model that proposes every few seconds.
    fn supersede(&mut self, view: &View<'_>, i: usize, by: u64) {
        let (old, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|p| p.setpoint == i);
        self.pending = keep;
        for p in old {
            let mut e = self.event(view, i, D::Expired, Actor::System);
            e.reason = format!("superseded by proposal {by}");
            e.proposal = Some(p.proposal.id);
            e.requested = Some(p.proposal.requested);
            e.value = Some(p.value);
            self.emit(e);
        }
    }

    fn command(&mut self, view: &View<'_>, lines: Option<&Lines>, c: Command) {
        match c {
            Command::Operator {
                id,
                setpoint,
                value,
                operator,
            } => {
                let p = Proposal {
                    id,
                    actor: Actor::Operator { name: operator },
                    tag: self.cfg.setpoints[setpoint].tag,
                    requested: value,
                    based_on_ns: view.now_ns,
                    inputs: Vec::new(),
                    forecast: None,
                    group: None,
                };
                let o = self.decide(view, lines, setpoint, &p, Purpose::Propose);
                self.apply(view, setpoint, &p, o, Purpose::Propose);
            }
            Command::Approve { id, operator } => {
                let Some(k) = self.pending.iter().position(|p| p.proposal.id == id) else {
                    return;
                };
                let pending = self.pending.remove(k);
                let i = pending.setpoint;
                let mut e = self.event(
                    view,
                    i,
                    D::Approved,
                    Actor::Operator {
                        name: operator.clone(),
                    },
                );
                e.reason = format!(
                    "approved by {operator}; re-checked against every rule on this tick's inputs"
                );
                e.proposal = Some(id);
                e.requested = Some(pending.proposal.requested);
                e.value = Some(pending.value);
                self.emit(e);
                // The operator now stands behind the value: the write is
                // theirs, decided on what the plant shows now, with a fresh
                // forecast (the model's is as old as the proposal).
                let p = Proposal {
                    actor: Actor::Operator { name: operator },
                    based_on_ns: view.now_ns,
                    forecast: None,
                    ..pending.proposal
                };
                let o = self.decide(view, lines, i, &p, Purpose::Approve);
                self.apply(view, i, &p, o, Purpose::Approve);
            }
            Command::Reject { id, operator } => {
                let Some(k) = self.pending.iter().position(|p| p.proposal.id == id) else {
                    return;
                };
                let pending = self.pending.remove(k);
                let mut e = self.event(
                    view,
                    pending.setpoint,
                    D::Rejected,
                    Actor::Operator {
                        name: operator.clone(),
                    },
                );
                e.reason = format!("rejected by {operator}");
                e.proposal = Some(id);
                e.requested = Some(pending.proposal.requested);
                e.value = Some(pending.value);
                self.emit(e);
            }
            Command::Reset { setpoint, operator } => {
                let Some(was) = self.states[setpoint].locked.take() else {
                    return;
                };
                let mut e = self.event(
                    view,
                    setpoint,
                    D::Reset,
                    Actor::Operator {
                        name: operator.clone(),
                    },
                );
                e.reason = format!("unlocked by {operator}; it was locked since {was}");
                self.emit(e);
            }
            Command::Kill { on, operator } => {
                if self.kill.is_some() == on {
                    return;
                }
                self.kill = on.then(|| format!("twin kill by {operator}"));
                let (decision, reason) = if on {
                    (
                        D::KillOn,
                        format!("kill switch engaged by {operator}: no write until it is lifted"),
                    )
                } else {
                    (
                        D::KillOff,
                        format!(
                            "kill switch lifted by {operator}; the config's kill_switch and the kill tag still apply"
                        ),
                    )
                };
                // One decision per setpoint that can be proposed to, so each
                // setpoint's own audit trail shows when it could not write.
                for i in 0..self.cfg.setpoints.len() {
                    if self.cfg.setpoints[i].mode == Mode::Off {
                        continue;
                    }
                    let mut e = self.event(
                        view,
                        i,
                        decision,
                        Actor::Operator {
                            name: operator.clone(),
                        },
                    );
                    e.reason = reason.clone();
                    self.emit(e);
                }
            }
        }
    }

    fn decide(
        &self,
        view: &View<'_>,
        lines: Option<&Lines>,
        i: usize,
        p: &Proposal,
        purpose: Purpose,
    ) -> Outcome {
        let sp = &self.cfg.setpoints[i];
        let globals = self.globals();
        let cx = Context {
            view: *view,
            globals: &globals,
            purpose,
            link_up: self.link_up(Link::of(&sp.target)),
        };
        let mut f = LineForecaster { state: self, lines };
        decide(sp, &self.states[i], p, &cx, &mut f)
    }

    fn optimiser_proposal(&mut self, view: &View<'_>, lines: Option<&Lines>, mp: &MlProposal) {
        let actor = super::state::model_actor(mp);
        let max_jam = self
            .max_jam_risk
            .get(&*mp.model)
            .copied()
            .unwrap_or(crate::config::optimise::MAX_JAM_RISK);
        let forecast = super::state::optimiser_forecast(mp, max_jam);
        let inputs = self
            .model_inputs
            .get(&(
                mp.model.to_string(),
                mp.machine.as_deref().map(str::to_string),
            ))
            .cloned()
            .unwrap_or_default();
        let group = self.next_proposal;
        let mut decided: Vec<(usize, Proposal, Outcome)> = Vec::new();
        for (k, (tag, value)) in mp.tags.iter().zip(&mp.best.values).enumerate() {
            let Some(i) = self.setpoint_index(tag) else {
                continue;
            };
            // A setpoint the proposal holds at the value the forecast
            // started from is not a request: writing it would only copy a
            // measured value (which wanders about its reference) back.
            if mp.current.get(k).is_some_and(|c| (c - value).abs() <= 1e-9) {
                continue;
            }
            let p = Proposal {
                id: self.proposal_id(),
                actor: actor.clone(),
                tag: self.cfg.setpoints[i].tag,
                requested: *value,
                based_on_ns: mp.based_on_ns,
                inputs: inputs.clone(),
                forecast: Some(forecast.clone()),
                group: Some(group),
            };
            let o = self.decide(view, lines, i, &p, Purpose::Propose);
            decided.push((i, p, o));
        }
        // group: the forecast vetted the setpoints together, so in closed
        // loop either all that change are written or none is.
        let blocked: Option<String> = decided.iter().find_map(|(i, _, o)| match &o.verdict {
            Verdict::Blocked(r, _) if self.cfg.setpoints[*i].mode == Mode::ClosedLoop => {
                Some(format!("{} was blocked ({r})", self.cfg.setpoints[*i].name))
            }
            _ => None,
        });
        for (i, p, mut o) in decided {
            if let (Some(why), Verdict::Pass(_), Mode::ClosedLoop) =
                (&blocked, &o.verdict, self.cfg.setpoints[i].mode)
            {
                o.verdict = Verdict::Blocked(
                    RuleId::Group,
                    format!("{why}, and the forecast vetted this proposal's setpoints together"),
                );
            }
            self.apply(view, i, &p, o, Purpose::Propose);
        }
    }

    /// Carries a decision out: events, records, and for a write the intent
    /// and its read-back bookkeeping.
    fn apply(&mut self, view: &View<'_>, i: usize, p: &Proposal, o: Outcome, purpose: Purpose) {
        let base = |s: &GuardState, d: D| {
            let mut e = s.event(view, i, d, p.actor.clone());
            e.proposal = Some(p.id);
            e.old = o.old;
            e.requested = Some(p.requested);
            e.inputs = o.inputs.clone();
            e
        };
        if let Some((bound, why)) = &o.clamped
            && !matches!(o.verdict, Verdict::Ignored)
        {
            let mut e = base(self, D::Clamped);
            e.rule = Some(RuleId::Bounds);
            e.reason = why.clone();
            e.value = Some(*bound);
            self.emit(e);
        }
        let mode = self.cfg.setpoints[i].mode;
        match o.verdict {
            Verdict::Ignored => {}
            Verdict::Blocked(rule, reason) => {
                let mut e = base(self, D::Blocked);
                e.rule = Some(rule);
                e.reason = reason;
                e.forecast = o.forecast;
                self.emit(e);
            }
            Verdict::Skipped(reason) => {
                let mut e = base(self, D::Skipped);
                e.rule = Some(RuleId::Deadband);
                e.reason = reason;
                self.emit(e);
            }
            Verdict::Pass(value) => match (mode, purpose) {
                (Mode::Shadow, Purpose::Propose) => {
                    self.states[i].last_write = Some((view.tick, value));
                    let mut e = base(self, D::Shadow);
                    e.reason = format!(
                        "shadow mode: would write {}; nothing is written",
                        fmt(value)
                    );
                    e.value = Some(value);
                    self.emit(e);
                }
                (Mode::Advisory, Purpose::Propose) => {
                    self.supersede(view, i, p.id);
                    let ticks = self.cfg.advisory_expiry_ticks.max(1);
                    let expires_tick = view.tick + u64::from(ticks);
                    let expires_ns = view.time_of(expires_tick);
                    let mut e = base(self, D::Pending);
                    e.reason = format!(
                        "awaits an operator's approval of {} (proposal {})",
                        fmt(value),
                        p.id
                    );
                    e.value = Some(value);
                    e.expires_ns = Some(expires_ns);
                    self.emit(e);
                    self.pending.push(PendingProposal {
                        proposal: p.clone(),
                        setpoint: i,
                        value,
                        expires_tick,
                        expires_ns,
                    });
                }
                _ => self.write(view, i, p, value, &o),
            },
        }
    }

    fn write(&mut self, view: &View<'_>, i: usize, p: &Proposal, value: f64, o: &Outcome) {
        let intent = self.next_intent;
        self.next_intent += 1;
        let sp = &self.cfg.setpoints[i];
        let st: &mut SetpointState = &mut self.states[i];
        let previous = st.last_write.replace((view.tick, value));
        // Without a writer nothing reports a register's read-back: waiting
        // for one would only block the setpoint (a replay). An echo tag is
        // in the recording, so it is judged either way.
        if self.writer || matches!(sp.readback, Readback::Tag(_)) {
            st.inflight = Some(InFlight {
                intent,
                proposal: p.id,
                value,
                issued_tick: view.tick,
                actor: p.actor.clone(),
                sent: false,
                previous,
            });
        }
        if self.writer {
            self.intents.push(WriteIntent {
                id: intent,
                proposal: p.id,
                tag: sp.tag,
                name: sp.name.clone(),
                value,
                target: sp.target.clone(),
                readback: sp.readback,
                t_ns: view.now_ns,
            });
        }
        let mut e = self.event(view, i, D::Written, p.actor.clone());
        e.reason = format!(
            "write {} (was {})",
            fmt(value),
            o.old.map_or_else(|| "unknown".to_string(), fmt)
        );
        e.proposal = Some(p.id);
        e.intent = Some(intent);
        e.old = o.old;
        e.requested = Some(p.requested);
        e.value = Some(value);
        e.inputs = o.inputs.clone();
        e.forecast = o.forecast.clone();
        self.emit(e);
    }
}
