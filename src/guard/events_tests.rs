//! `setpoint` events: the documented examples are what the encoder writes,
//! and every event has the audit record that mirrors it.

use super::*;
use crate::guard::audit::Actor;
use crate::guard::rules::RuleId;
use crate::twin::Quality;

/// The documented examples (docs/events.md, `setpoint`) are what the
/// encoder writes; a failure prints the line the docs should hold.
#[test]
fn r12_the_documented_setpoint_examples_are_the_encoders_output() {
    let docs = include_str!("../../docs/events.md");
    for (t, e) in examples() {
        let mut out = Vec::new();
        e.write_json(t, &mut out).expect("json");
        let line = String::from_utf8(out).expect("utf-8");
        assert!(docs.contains(&line), "not in docs/events.md:\n{line}");
    }
}

fn examples() -> Vec<(&'static str, SetpointEvent)> {
    use crate::config::guard::Mode;
    use crate::guard::audit::Input;
    let model = Actor::Model {
        id: "line_setpoints".into(),
        sha256: "2729db70b210c1cb97743dc047c2b612db47ab9d327694b958bad63f3022cea1".into(),
    };
    let inputs = vec![
        Input {
            tag: "infeed.speed".into(),
            age_ms: 40,
            quality: Quality::Good,
        },
        Input {
            tag: "outfeed.speed".into(),
            age_ms: 40,
            quality: Quality::Good,
        },
    ];
    let base = SetpointEvent {
        t_ns: 0,
        tag: "infeed.speed".into(),
        decision: SetpointDecision::Shadow,
        rule: None,
        reason: String::new(),
        mode: Mode::Shadow,
        actor: model.clone(),
        proposal: Some(12),
        intent: None,
        old: Some(0.6),
        requested: Some(0.7),
        value: None,
        inputs: inputs.clone(),
        expires_ns: None,
        forecast: None,
    };
    let ev = |f: &dyn Fn(&mut SetpointEvent)| {
        let mut e = base.clone();
        f(&mut e);
        e
    };
    let t = "2026-12-05T01:13:01.000Z";
    vec![
        (
            t,
            ev(&|e| {
                e.reason = "shadow mode: would write 0.7; nothing is written".into();
                e.value = Some(0.7);
            }),
        ),
        (
            t,
            ev(&|e| {
                e.decision = SetpointDecision::Blocked;
                e.rule = Some(RuleId::InputQuality);
                e.reason = "input outfeed.speed is stale".into();
                e.inputs[1].quality = Quality::Stale;
                e.inputs[1].age_ms = 3100;
            }),
        ),
        (
            t,
            ev(&|e| {
                e.decision = SetpointDecision::Pending;
                e.mode = Mode::Advisory;
                e.reason = "awaits an operator's approval of 0.7 (proposal 12)".into();
                e.value = Some(0.7);
                e.expires_ns = Some(1_796_433_481_000_000_000);
            }),
        ),
        (
            t,
            ev(&|e| {
                e.decision = SetpointDecision::Written;
                e.mode = Mode::ClosedLoop;
                e.intent = Some(3);
                e.reason = "write 0.7 (was 0.6)".into();
                e.value = Some(0.7);
                e.forecast = Some(
                    serde_json::json!({"source":"optimiser","horizon_s":60.0,"throughput_per_min":58.0,"out":55,"lost":0,"jam_risk":0.21,"max_jam_risk":0.5}),
                );
            }),
        ),
        (
            t,
            ev(&|e| {
                e.decision = SetpointDecision::Skipped;
                e.rule = Some(RuleId::Deadband);
                e.requested = Some(0.603);
                e.reason = "change 0.003 is below the deadband 0.01: not written".into();
            }),
        ),
        (
            t,
            ev(&|e| {
                e.decision = SetpointDecision::ReadbackMismatch;
                e.mode = Mode::ClosedLoop;
                e.rule = Some(RuleId::Readback);
                e.actor = Actor::System;
                e.intent = Some(3);
                e.inputs.clear();
                e.value = Some(0.6);
                e.reason = "no matching read-back within 2000 ms (last read 0.6)".into();
            }),
        ),
        (
            t,
            ev(&|e| {
                e.decision = SetpointDecision::Reset;
                e.mode = Mode::ClosedLoop;
                e.actor = Actor::Operator { name: "ana".into() };
                e.proposal = None;
                e.requested = None;
                e.inputs.clear();
                e.reason = "unlocked by ana; it was locked since write 3 at 2026-12-05T01:13:04.000Z: no matching read-back within 2000 ms (last read 0.6)".into();
            }),
        ),
    ]
}
