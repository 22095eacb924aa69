//! `setpoint` events (docs/events.md): every decision the guard takes, on
//! the event stream, and the audit record that mirrors it.
//!
//! Each event has exactly one audit record ([`SetpointEvent::record`]) and
//! the other way round, so the stream and the audit log tell the same
//! story; the log is the durable one.

use std::sync::Arc;

use serde::Serialize;

use super::audit::{Actor, Decision, Input, Number, Record};
use super::rules::RuleId;
use crate::config::guard::Mode;

/// What the guard decided, as the event's `decision` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetpointDecision {
    /// Shadow mode: the value would be written; nothing is.
    Shadow,
    /// Advisory mode: queued for an operator's approval.
    Pending,
    /// A write intent went to the writers (closed loop, or approved).
    Written,
    /// Not written; `rule` says why.
    Blocked,
    /// Out of range and clamped to the bound; the decision goes on.
    Clamped,
    /// A change inside the deadband (or none): nothing to write.
    Skipped,
    Approved,
    Rejected,
    /// An advisory proposal not approved in time, or whose link went down.
    Expired,
    ReadbackOk,
    ReadbackMismatch,
    /// The setpoint takes no more writes until an operator resets it.
    Locked,
    Reset,
    /// An operator engaged the kill switch: this setpoint takes no write
    /// until it is lifted.
    KillOn,
    /// An operator lifted the kill switch (the config's and the kill tag's
    /// still apply).
    KillOff,
}

impl SetpointDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            SetpointDecision::Shadow => "shadow",
            SetpointDecision::Pending => "pending",
            SetpointDecision::Written => "written",
            SetpointDecision::Blocked => "blocked",
            SetpointDecision::Clamped => "clamped",
            SetpointDecision::Skipped => "skipped",
            SetpointDecision::Approved => "approved",
            SetpointDecision::Rejected => "rejected",
            SetpointDecision::Expired => "expired",
            SetpointDecision::ReadbackOk => "readback_ok",
            SetpointDecision::ReadbackMismatch => "readback_mismatch",
            SetpointDecision::Locked => "locked",
            SetpointDecision::Reset => "reset",
            SetpointDecision::KillOn => "kill_on",
            SetpointDecision::KillOff => "kill_off",
        }
    }

    /// The audit log's decision for it. The log has no `shadow`, `pending`
    /// or `skipped`: a shadow or pending decision is a `proposed` entry (the
    /// reason says which), a skip is `blocked` by rule `deadband`.
    pub fn audit(self) -> Decision {
        match self {
            SetpointDecision::Shadow | SetpointDecision::Pending => Decision::Proposed,
            SetpointDecision::Written => Decision::Written,
            SetpointDecision::Blocked | SetpointDecision::Skipped => Decision::Blocked,
            SetpointDecision::Clamped => Decision::Clamped,
            SetpointDecision::Approved => Decision::Approved,
            SetpointDecision::Rejected => Decision::Rejected,
            SetpointDecision::Expired => Decision::Expired,
            SetpointDecision::ReadbackOk => Decision::ReadbackOk,
            SetpointDecision::ReadbackMismatch => Decision::ReadbackMismatch,
            SetpointDecision::Locked => Decision::Locked,
            SetpointDecision::Reset => Decision::Reset,
            SetpointDecision::KillOn => Decision::KillOn,
            SetpointDecision::KillOff => Decision::KillOff,
        }
    }
}

/// One decision about one setpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct SetpointEvent {
    pub t_ns: i64,
    /// The setpoint's tag.
    pub tag: Arc<str>,
    pub decision: SetpointDecision,
    pub rule: Option<RuleId>,
    pub reason: String,
    pub mode: Mode,
    pub actor: Actor,
    /// The proposal the decision is about (the id `approve` and `reject`
    /// take); `None` for a reset.
    pub proposal: Option<u64>,
    /// The write intent (`written`, read-back decisions).
    pub intent: Option<u64>,
    /// The setpoint's value as last read, when the decision was taken.
    pub old: Option<f64>,
    /// What the actor asked for; for a read-back, the value written.
    pub requested: Option<f64>,
    /// The value the decision is about: written (`written`), would be
    /// written (`shadow`), awaits approval (`pending`), the bound
    /// (`clamped`), read back (`readback_*`).
    pub value: Option<f64>,
    /// Every input the proposal used, as the guard saw it.
    pub inputs: Vec<Input>,
    /// A pending proposal's expiry.
    pub expires_ns: Option<i64>,
    /// The forecast that vetted a written value, as JSON.
    pub forecast: Option<serde_json::Value>,
}

impl SetpointEvent {
    /// The audit record of this decision.
    pub fn record(&self) -> Record {
        // A read-back event carries the value read as `value` and the one
        // written as `requested`; the log's `written` is always what went
        // to the device.
        let written = match self.decision {
            SetpointDecision::Written => self.value,
            SetpointDecision::ReadbackOk | SetpointDecision::ReadbackMismatch => self.requested,
            _ => None,
        };
        Record {
            t_ns: self.t_ns,
            actor: self.actor.clone(),
            tag: self.tag.to_string(),
            decision: self.decision.audit(),
            rule: self.rule.map(|r| r.as_str().to_string()),
            reason: self.reason.clone(),
            old: self.old,
            requested: self.requested,
            written,
            inputs: self.inputs.clone(),
            forecast: self.forecast.clone(),
        }
    }

    /// The event as one JSON line body (no newline); `t` is the tick time,
    /// already formatted.
    pub fn write_json(&self, t: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
        #[derive(Serialize)]
        struct Line<'a> {
            v: u32,
            #[serde(rename = "type")]
            kind: &'static str,
            t: &'a str,
            tag: &'a str,
            decision: &'static str,
            #[serde(skip_serializing_if = "Option::is_none")]
            rule: Option<&'static str>,
            reason: &'a str,
            mode: &'static str,
            actor: &'a Actor,
            #[serde(skip_serializing_if = "Option::is_none")]
            proposal: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            intent: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            old: Option<Number>,
            #[serde(skip_serializing_if = "Option::is_none")]
            requested: Option<Number>,
            #[serde(skip_serializing_if = "Option::is_none")]
            value: Option<Number>,
            #[serde(skip_serializing_if = "<[Input]>::is_empty")]
            inputs: &'a [Input],
            #[serde(skip_serializing_if = "Option::is_none")]
            expires: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            forecast: Option<&'a serde_json::Value>,
        }
        let n = |x: Option<f64>| x.map(|x| Number(round6(x)));
        serde_json::to_writer(
            out,
            &Line {
                v: crate::twin::events::EVENT_VERSION,
                kind: "setpoint",
                t,
                tag: &self.tag,
                decision: self.decision.as_str(),
                rule: self.rule.map(RuleId::as_str),
                reason: &self.reason,
                mode: self.mode.as_str(),
                actor: &self.actor,
                proposal: self.proposal,
                intent: self.intent,
                old: n(self.old),
                requested: n(self.requested),
                value: n(self.value),
                inputs: &self.inputs,
                expires: self.expires_ns.map(crate::twin::events::rfc3339),
                forecast: self.forecast.as_ref(),
            },
        )
    }
}

/// Six decimals, as other events write values; non-finite values are kept
/// (the encoder spells them `"NaN"`, `"inf"`, `"-inf"`): a blocked NaN
/// proposal must say it was one.
fn round6(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1e6).round() / 1e6 + 0.0
    } else {
        x
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
