//! Operator commands to a running twin: propose, approve, reject, reset,
//! kill, list pending (docs/guard.md, "Operator control").
//!
//! A command travels as a [`ControlRequest`] on a channel to the live
//! loop, which applies it between ticks on the tick thread (the guard's
//! API queues it for the next tick) and answers with one JSON reply. The
//! Unix socket (`twin run --control PATH`) is one sender of such requests;
//! a test can be another. Who the operator is comes with the request: the
//! socket takes it from the peer's uid, never from what the peer says.

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::guard::{self, GuardError};
use crate::twin::TwinCore;

/// What an operator asks. The JSON form is one line:
/// `{"op":"approve","id":3}`, `{"op":"reject","id":3}`,
/// `{"op":"reset","tag":"line1.speed"}`, `{"op":"kill","on":true}`,
/// `{"op":"pending"}`, `{"op":"propose","tag":"line1.speed","value":0.5}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlOp {
    Propose { tag: String, value: f64 },
    Approve { id: u64 },
    Reject { id: u64 },
    Reset { tag: String },
    Kill { on: bool },
    Pending,
}

/// One command and where its reply goes.
#[derive(Debug)]
pub struct ControlRequest {
    pub op: ControlOp,
    pub operator: String,
    pub reply: oneshot::Sender<Value>,
}

pub type ControlTx = mpsc::Sender<ControlRequest>;
pub type ControlRx = mpsc::Receiver<ControlRequest>;

/// A channel for control requests (a few in flight at most: an operator's
/// pace).
pub fn channel() -> (ControlTx, ControlRx) {
    mpsc::channel(16)
}

/// Apply `op` to the core's guard; the reply is `{"ok":true,...}` or
/// `{"ok":false,"error":"..."}`.
pub fn apply(core: &mut TwinCore, op: &ControlOp, operator: &str) -> Value {
    let Some(mut st) = guard::state_mut(core) else {
        return json!({"ok": false, "error": "this twin has no guard: every [[setpoints]] entry is off"});
    };
    let done = |r: Result<Value, GuardError>| match r {
        Ok(v) => v,
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    match op {
        ControlOp::Propose { tag, value } => done(
            st.propose_operator(tag, *value, operator)
                .map(|id| json!({"ok": true, "id": id})),
        ),
        ControlOp::Approve { id } => done(st.approve(*id, operator).map(|()| json!({"ok": true}))),
        ControlOp::Reject { id } => done(st.reject(*id, operator).map(|()| json!({"ok": true}))),
        ControlOp::Reset { tag } => done(st.reset(tag, operator).map(|()| json!({"ok": true}))),
        ControlOp::Kill { on } => {
            st.set_kill(on.then(|| format!("twin kill by {operator}")));
            json!({"ok": true, "kill": on})
        }
        ControlOp::Pending => {
            let pending: Vec<Value> = st
                .pending()
                .iter()
                .map(|p| {
                    json!({
                        "id": p.proposal.id,
                        "tag": st.setpoint_name(p.setpoint),
                        "value": p.value,
                        "expires": crate::twin::events::rfc3339(p.expires_ns),
                    })
                })
                .collect();
            let locked: Vec<Value> = st
                .locked()
                .into_iter()
                .map(|(t, why)| json!({"tag": t, "why": why}))
                .collect();
            json!({"ok": true, "pending": pending, "locked": locked})
        }
    }
}
