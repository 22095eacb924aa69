//! The guard over ticks: advisory expiry, approval re-checks, read-back
//! mismatch → lock → reset, rate limits, the optimiser's hand-over,
//! carrying decisions out, and the stage in the core.

use super::*;

// --- Over ticks ---------------------------------------------------------

fn guard(setpoint: &str) -> (Plant, GuardState) {
    let plant = Plant::new(config(setpoint));
    let mut st = GuardState::new(&plant.cfg.guard, &plant.cfg.tags, 0);
    st.attach_audit();
    (plant, st)
}

fn step(plant: &Plant, st: &mut GuardState) -> Vec<SetpointEvent> {
    st.step(&plant.view(), None, &mut Vec::new());
    std::mem::take(&mut st.events)
}

fn decisions(e: &[SetpointEvent]) -> Vec<(&'static str, Option<&'static str>)> {
    e.iter()
        .map(|e| (e.decision.as_str(), e.rule.map(RuleId::as_str)))
        .collect()
}

fn advisory() -> String {
    SETPOINT.replace("mode = \"closed_loop\"", "mode = \"advisory\"")
}

#[test]
fn r12_an_advisory_proposal_expires_when_not_approved_in_time() {
    let (mut plant, mut st) = guard(&advisory());
    let id = st.propose_operator("speed", 0.6, "ana").expect("queued");
    let e = step(&plant, &mut st);
    assert_eq!(decisions(&e), [("pending", None)]);
    assert_eq!(e[0].proposal, Some(id));
    assert_eq!(e[0].expires_ns, Some(plant.now() + 1_000_000_000));
    assert_eq!(st.pending().len(), 1);
    for _ in 0..9 {
        plant.next();
        assert!(step(&plant, &mut st).is_empty(), "still pending");
    }
    plant.next();
    let e = step(&plant, &mut st);
    assert_eq!(decisions(&e), [("expired", None)]);
    assert!(st.pending().is_empty());
    assert_eq!(
        st.approve(id, "ana"),
        Err(crate::guard::GuardError::UnknownProposal(id))
    );
}

#[test]
fn r12_a_pending_proposal_expires_when_its_link_goes_down() {
    let (plant, mut st) = guard(&advisory());
    st.propose_operator("speed", 0.6, "ana").expect("queued");
    step(&plant, &mut st);
    st.set_link_up(Link::Modbus(0), false);
    st.set_link_up(Link::Modbus(0), true);
    let e = step(&plant, &mut st);
    // Down and up again between two ticks: the tick saw it up. A link seen
    // down expires the proposal.
    assert!(e.is_empty(), "{e:?}");
    st.set_link_up(Link::Modbus(0), false);
    let e = step(&plant, &mut st);
    assert_eq!(decisions(&e), [("expired", None)]);
    assert!(e[0].reason.contains("reconnect"), "{}", e[0].reason);
}

#[test]
fn r12_an_approval_is_rechecked_against_every_rule_on_fresh_inputs() {
    let (mut plant, mut st) = guard(&advisory());
    let id = st.propose_operator("speed", 0.6, "ana").expect("queued");
    step(&plant, &mut st);
    plant.next();
    // The interlock no longer holds when the operator approves.
    plant.set("running", Value::Bool(false));
    st.approve(id, "bob").expect("pending");
    let e = step(&plant, &mut st);
    assert_eq!(
        decisions(&e),
        [("approved", None), ("blocked", Some("interlock"))]
    );
    assert_eq!(e[1].actor, Actor::Operator { name: "bob".into() });
    // Approved again, on a later proposal, with the line running: written.
    let id = st.propose_operator("speed", 0.6, "ana").expect("queued");
    plant.next();
    plant.set("running", Value::Bool(true));
    step(&plant, &mut st);
    st.approve(id, "bob").expect("pending");
    plant.next();
    let e = step(&plant, &mut st);
    assert_eq!(decisions(&e), [("approved", None), ("written", None)]);
    assert_eq!(e[1].value, Some(0.6));
    // A rejected one is not written.
    let id = st.propose_operator("speed", 0.65, "ana").expect("queued");
    plant.skip(10);
    plant.set("echo", Value::Num(0.6));
    plant.set("speed", Value::Num(0.6));
    let e = step(&plant, &mut st);
    assert_eq!(decisions(&e), [("readback_ok", None), ("pending", None)]);
    st.reject(id, "bob").expect("pending");
    plant.next();
    let e = step(&plant, &mut st);
    assert!(decisions(&e).contains(&("rejected", None)), "{e:?}");
    assert!(st.pending().is_empty());
}

/// Advisory, approved: a write intent for 0.6 at the returned tick.
fn written(plant: &mut Plant, st: &mut GuardState) -> Vec<SetpointEvent> {
    let id = st.propose_operator("speed", 0.6, "ana").expect("queued");
    step(plant, st);
    st.approve(id, "bob").expect("pending");
    plant.next();
    let e = step(plant, st);
    assert_eq!(decisions(&e), [("approved", None), ("written", None)]);
    e
}

#[test]
fn r12_a_readback_mismatch_raises_an_alarm_and_locks_until_an_operator_resets() {
    let (mut plant, mut st) = guard(&advisory());
    written(&mut plant, &mut st);
    // The echo stays at 0.5: the device ignored the write.
    for _ in 0..5 {
        plant.next();
        assert!(step(&plant, &mut st).is_empty());
    }
    plant.next();
    let e = step(&plant, &mut st);
    assert_eq!(
        decisions(&e),
        [
            ("readback_mismatch", Some("readback")),
            ("locked", Some("readback"))
        ]
    );
    assert_eq!(e[0].value, Some(0.5), "the last read-back");
    assert_eq!(st.locked().len(), 1);
    // Locked: a new proposal is blocked.
    st.propose_operator("speed", 0.6, "ana").expect("queued");
    plant.next();
    let e = step(&plant, &mut st);
    assert_eq!(decisions(&e), [("blocked", Some("locked"))]);
    // Reset by an operator; then proposals are decided again.
    assert_eq!(
        st.reset("echo", "bob"),
        Err(crate::guard::GuardError::UnknownSetpoint("echo".into()))
    );
    st.reset("speed", "bob").expect("locked");
    plant.next();
    let e = step(&plant, &mut st);
    assert_eq!(decisions(&e), [("reset", None)]);
    assert_eq!(e[0].actor, Actor::Operator { name: "bob".into() });
    assert_eq!(
        st.reset("speed", "bob"),
        Err(crate::guard::GuardError::NotLocked("speed".into()))
    );
    st.propose_operator("speed", 0.6, "ana").expect("queued");
    plant.skip(10);
    let e = step(&plant, &mut st);
    assert_eq!(decisions(&e), [("pending", None)]);
}

#[test]
fn r12_a_matching_readback_confirms_the_write() {
    let (mut plant, mut st) = guard(&advisory());
    written(&mut plant, &mut st);
    plant.next();
    plant.set("echo", Value::Num(0.602));
    let e = step(&plant, &mut st);
    assert_eq!(decisions(&e), [("readback_ok", None)]);
    assert!(st.locked().is_empty());
}

/// A writer that records what it was given and answers `outcome`.
struct Recorder(Vec<WriteIntent>, WriteOutcome);

impl SetpointWriter for Recorder {
    fn write(&mut self, intent: &WriteIntent) -> WriteOutcome {
        self.0.push(intent.clone());
        self.1.clone()
    }
}

#[test]
fn r12_register_readback_and_device_refusal_come_back_as_outcomes() {
    // Read-back through the register (no echo tag).
    let sp = advisory().replace(
        "readback = \"echo\"\n",
        "target = { table = \"holding\", address = 5, type = \"u16\", scale = 0.01 }\n",
    );
    let (mut plant, mut st) = guard(&sp);
    st.attach_writer();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = AuditLog::open(&dir.path().join("audit.jsonl"), 0).expect("open");
    let mut w = Recorder(Vec::new(), WriteOutcome::Sent);
    written(&mut plant, &mut st);
    let done = carry_out(&mut st, &mut log, Some(&mut w));
    assert!(done.audit_error.is_none());
    // pending, approved, written: appended before the write was sent.
    assert_eq!((done.appended, done.sent, log.seq()), (3, 1, 4));
    assert_eq!(w.0.len(), 1);
    let intent = w.0[0].clone();
    assert_eq!((intent.name.as_str(), intent.value), ("speed", 0.6));
    st.report_outcome(intent.id, WriteOutcome::ReadBack(0.55));
    plant.next();
    let e = step(&plant, &mut st);
    assert_eq!(
        decisions(&e),
        [
            ("readback_mismatch", Some("readback")),
            ("locked", Some("readback"))
        ]
    );
    assert_eq!(e[0].value, Some(0.55));
    assert_eq!(e[0].requested, Some(0.6), "the value written");
    assert_eq!(
        e[0].record().written,
        Some(0.6),
        "the log's written is what went out"
    );
    let done = carry_out(&mut st, &mut log, Some(&mut w));
    assert_eq!(done.appended, 2);
    // A refusal: nothing changed, nothing locked, the rate limits forget it.
    st.reset("speed", "bob").expect("locked");
    plant.next();
    step(&plant, &mut st);
    plant.skip(20);
    w.1 = WriteOutcome::Refused("illegal data address (exception 2)".into());
    written(&mut plant, &mut st);
    carry_out(&mut st, &mut log, Some(&mut w));
    plant.next();
    let e = step(&plant, &mut st);
    assert_eq!(decisions(&e), [("blocked", Some("device_refused"))]);
    assert!(e[0].reason.contains("exception 2"), "{}", e[0].reason);
    assert!(st.locked().is_empty());
    carry_out(&mut st, &mut log, Some(&mut w));
    let mut r =
        crate::guard::audit::AuditReader::open(&dir.path().join("audit.jsonl")).expect("read");
    let mut entries = Vec::new();
    while let Some(e) = r.next_entry().expect("an intact log") {
        entries.push(e.decision);
    }
    assert_eq!(
        entries,
        [
            Decision::Opened,
            Decision::Proposed,
            Decision::Approved,
            Decision::Written,
            Decision::ReadbackMismatch,
            Decision::Locked,
            Decision::Reset,
            Decision::Proposed,
            Decision::Approved,
            Decision::Written,
            Decision::Blocked,
        ]
    );
}

#[test]
fn r12_without_a_writer_nothing_is_sent_and_a_register_readback_is_not_awaited() {
    // A replay: intents are not kept, and the next proposal is decided as
    // if the write had been verified.
    let sp = advisory().replace(
        "readback = \"echo\"\n",
        "target = { table = \"holding\", address = 5, type = \"u16\", scale = 0.01 }\n",
    );
    let (mut plant, mut st) = guard(&sp);
    written(&mut plant, &mut st);
    assert!(st.take_outputs().intents.is_empty());
    plant.skip(20);
    let e = step(&plant, &mut st);
    assert!(e.is_empty(), "no read-back timeout: {e:?}");
}

#[test]
fn r12_rate_and_min_interval_are_judged_over_ticks() {
    // Shadow previews closed loop: its would-be writes count.
    let sp = SETPOINT.replace("mode = \"closed_loop\"", "mode = \"shadow\"");
    let (mut plant, mut st) = guard(&sp);
    st.propose_operator("speed", 0.6, "ana").expect("queued");
    let e = step(&plant, &mut st);
    assert_eq!(decisions(&e), [("shadow", None)]);
    assert!(e[0].reason.contains("would write 0.6"), "{}", e[0].reason);
    let mut seen = Vec::new();
    for k in 1..=12 {
        plant.next();
        // 0.05 per tick from 0.5: 0.5/s, under max_rate 1/s once a second
        // has passed; but only one write per min_interval (1 s).
        st.propose_operator("speed", 0.55, "ana").expect("queued");
        let e = step(&plant, &mut st);
        seen.push((k, decisions(&e)[0]));
    }
    let shadows: Vec<u64> = seen
        .iter()
        .filter(|(_, d)| d.0 == "shadow")
        .map(|(k, _)| *k)
        .collect();
    assert_eq!(shadows, [10], "{seen:?}");
    assert!(
        seen.iter()
            .all(|(_, d)| d.0 == "shadow" || d.1 == Some("min_interval"))
    );
    // Rate: a second after a write, 0.2 in one second is above 1/s? No:
    // 0.2/s. Make max_rate bite: 0.2 after 1 s with max_rate 0.1.
    let sp = SETPOINT
        .replace("mode = \"closed_loop\"", "mode = \"shadow\"")
        .replace("max_rate = 1.0", "max_rate = 0.1");
    let (mut plant, mut st) = guard(&sp);
    st.states[0].last_write = Some((TICK - 10, 0.5));
    st.propose_operator("speed", 0.7, "ana").expect("queued");
    assert_eq!(
        decisions(&step(&plant, &mut st)),
        [("blocked", Some("max_rate"))]
    );
    plant.skip(10);
    st.propose_operator("speed", 0.7, "ana").expect("queued");
    assert_eq!(decisions(&step(&plant, &mut st)), [("shadow", None)]);
}

#[test]
fn r12_kill_switch_nan_stale_and_clamp_over_ticks() {
    let sp = SETPOINT
        .replace("mode = \"closed_loop\"", "mode = \"shadow\"")
        .replace("out_of_range = \"reject\"", "out_of_range = \"clamp\"");
    let (mut plant, mut st) = guard(&sp);
    plant.set("kill", Value::Bool(true));
    st.propose_operator("speed", 0.6, "ana").expect("queued");
    assert_eq!(
        decisions(&step(&plant, &mut st)),
        [("blocked", Some("kill_switch"))]
    );
    plant.set("kill", Value::Bool(false));
    // An operator's kill is a decision of its own, audited with the
    // operator as the actor, taken before the tick's proposals.
    st.kill(true, "ana").expect("queued");
    st.propose_operator("speed", 0.6, "ana").expect("queued");
    let e = step(&plant, &mut st);
    assert_eq!(
        decisions(&e),
        [("kill_on", None), ("blocked", Some("kill_switch"))]
    );
    assert_eq!(e[0].actor.name(), "ana");
    assert!(e[1].reason.contains("twin kill by ana"), "{}", e[1].reason);
    assert!(st.killed());
    // Asking for the state it is in decides nothing.
    st.kill(true, "bo").expect("queued");
    assert!(step(&plant, &mut st).is_empty());
    assert_eq!(st.kill(true, ""), Err(crate::guard::GuardError::NoOperator));
    st.kill(false, "bo").expect("queued");
    st.propose_operator("speed", f64::NAN, "ana")
        .expect("queued");
    let e = step(&plant, &mut st);
    assert_eq!(
        decisions(&e),
        [("kill_off", None), ("blocked", Some("non_finite"))]
    );
    assert!(!st.killed());
    assert_eq!(e[0].actor.name(), "bo");
    let e = &e[1..];
    assert!(e[0].requested.is_some_and(f64::is_nan));
    let mut out = Vec::new();
    e[0].write_json("T", &mut out).expect("json");
    let line = String::from_utf8(out).expect("utf-8");
    assert!(line.contains(r#""requested":"NaN""#), "{line}");
    plant.snap("speed").quality = Quality::Stale;
    st.propose_operator("speed", 0.6, "ana").expect("queued");
    assert_eq!(
        decisions(&step(&plant, &mut st)),
        [("blocked", Some("input_quality"))]
    );
    plant.set("speed", Value::Num(0.95));
    st.propose_operator("speed", 1.1, "ana").expect("queued");
    let e = step(&plant, &mut st);
    assert_eq!(
        decisions(&e),
        [("clamped", Some("bounds")), ("shadow", None)]
    );
    assert_eq!((e[0].value, e[1].value), (Some(1.0), Some(1.0)));
    // Each event has its audit record, in the same order.
    let recs = st.take_outputs().records;
    assert_eq!(recs.len(), 8);
    assert_eq!(
        (recs[1].decision, recs[1].actor.name()),
        (Decision::KillOn, "ana")
    );
    assert_eq!(
        (recs[3].decision, recs[3].actor.name()),
        (Decision::KillOff, "bo")
    );
    assert_eq!(recs[6].decision, Decision::Clamped);
    assert_eq!(recs[7].decision, Decision::Proposed);
    assert!(recs[7].written.is_none(), "shadow writes nothing");
}

#[test]
fn r12_operator_api_refuses_what_cannot_be_proposed() {
    let sp = SETPOINT.replace("mode = \"closed_loop\"", "mode = \"off\"");
    let (_, mut st) = guard(&sp);
    assert_eq!(
        st.propose_operator("speed", 0.5, "ana"),
        Err(crate::guard::GuardError::Off("speed".into()))
    );
    assert_eq!(
        st.propose_operator("temp", 0.5, "ana"),
        Err(crate::guard::GuardError::UnknownSetpoint("temp".into()))
    );
    let (_, mut st) = guard(SETPOINT);
    assert_eq!(
        st.propose_operator("speed", 0.5, " "),
        Err(crate::guard::GuardError::NoOperator)
    );
    assert_eq!(
        st.approve(99, "ana"),
        Err(crate::guard::GuardError::UnknownProposal(99))
    );
}

// --- The optimiser's proposals -----------------------------------------

fn ml_proposal(plant: &Plant, values: &[f64], lost: u64) -> crate::ml::optimise_events::Proposal {
    use crate::ml::vetting::{Origin, Round, Scored, Vetoes};
    use crate::physics::lookahead::Forecast as F;
    let scored = |v: &[f64], lost| Scored {
        values: v.to_vec(),
        forecast: F {
            lost,
            jam_risk: 0.1,
            throughput_per_min: 50.0,
            ..F::default()
        },
        energy: 0.0,
        objective: 50.0,
    };
    crate::ml::optimise_events::Proposal {
        t_ns: plant.now(),
        based_on_ns: plant.now() - 1_000_000_000,
        model: Arc::from("opt"),
        sha256: Arc::from("5ha"),
        machine: None,
        line: Arc::from("l"),
        tags: vec![Arc::from("speed"), Arc::from("temp2")].into(),
        horizon: Duration::from_secs(60),
        current: vec![0.5, 1.0],
        model_output: values.to_vec(),
        origin: Origin::Model,
        best: scored(values, lost),
        round: Round {
            baseline: scored(&[0.5, 1.0], 0),
            best: None,
            tried: 1,
            passed: 1,
            vetoed: Vetoes::default(),
        },
    }
}

const TWO: &str = r#"
[[setpoints]]
tag = "speed"
min = 0.0
max = 1.0
max_step = 0.2
mode = "closed_loop"

[[setpoints]]
tag = "echo2"
min = 0.0
max = 2.0
mode = "closed_loop"
"#;

/// [`PLANT`] with [`TWO`]'s closed-loop setpoints on `speed` and `echo2`.
fn two_setpoint_plant() -> Plant {
    let plant_text = PLANT.replace(
        "  { tag = \"temp\", table = \"input\", address = 2 },",
        "  { tag = \"temp\", table = \"input\", address = 2 },\n  { tag = \"temp2\", table = \"holding\", address = 3 },\n  { tag = \"echo2\", table = \"holding\", address = 4 },",
    ).replace("e = \"temp\" }", "e = \"temp\", f = \"temp2\", g = \"echo2\" }");
    let cfg = load_str(
        Path::new("g.toml"),
        &format!("{plant_text}{}", TWO.replace("temp2", "x")),
    )
    .unwrap_or_else(|r| {
        panic!(
            "{:?}",
            r.errors().map(|d| d.message.clone()).collect::<Vec<_>>()
        )
    });
    Plant::new(cfg)
}

#[test]
fn r12_an_optimiser_proposal_is_decided_per_setpoint_and_written_together_or_not_at_all() {
    let mut plant = two_setpoint_plant();
    plant.set("echo2", Value::Num(1.0));
    let mut st = GuardState::new(&plant.cfg.guard, &plant.cfg.tags, 0);
    // speed 0.5 → 0.6 passes; echo2 (named temp2 in the proposal: not a
    // setpoint, ignored) — use echo2 itself.
    let mut p = ml_proposal(&plant, &[0.6, 1.5], 0);
    p.tags = vec![Arc::from("speed"), Arc::from("echo2")].into();
    st.step(&plant.view(), None, &mut vec![p.clone()]);
    let e = std::mem::take(&mut st.events);
    assert_eq!(decisions(&e), [("written", None), ("written", None)]);
    assert_eq!(
        e[0].actor,
        Actor::Model {
            id: "opt".into(),
            sha256: "5ha".into()
        }
    );
    assert!(e[0].forecast.is_some());
    // Read back both (own tags), later: then a proposal whose first value
    // is a step too far blocks the second too.
    plant.next();
    plant.set("speed", Value::Num(0.6));
    plant.set("echo2", Value::Num(1.5));
    st.step(&plant.view(), None, &mut Vec::new());
    assert_eq!(
        decisions(&std::mem::take(&mut st.events)),
        [("readback_ok", None), ("readback_ok", None)]
    );
    plant.next();
    // The forecast starts from what the line runs now.
    let mut p2 = ml_proposal(&plant, &[0.9, 1.0], 0);
    p2.tags = p.tags.clone();
    p2.current = vec![0.6, 1.5];
    st.step(&plant.view(), None, &mut vec![p2]);
    let e = std::mem::take(&mut st.events);
    assert_eq!(
        decisions(&e),
        [("blocked", Some("max_step")), ("blocked", Some("group"))]
    );
    // A forecast that loses product blocks in closed loop.
    plant.next();
    let mut p3 = ml_proposal(&plant, &[0.7, 1.0], 1);
    p3.tags = p.tags.clone();
    p3.current = vec![0.6, 1.5];
    st.step(&plant.view(), None, &mut vec![p3]);
    let e = std::mem::take(&mut st.events);
    assert_eq!(
        decisions(&e),
        [
            ("blocked", Some("lookahead")),
            ("blocked", Some("lookahead"))
        ]
    );
}

/// A proposal that holds a setpoint at the value its forecast started from
/// asks nothing of it: no decision, no write (writing it would copy a
/// measured value, which wanders about its reference, back to the PLC).
#[test]
fn r12_a_setpoint_the_proposal_holds_is_not_decided() {
    let mut plant = two_setpoint_plant();
    plant.set("echo2", Value::Num(1.02));
    let mut st = GuardState::new(&plant.cfg.guard, &plant.cfg.tags, 0);
    // echo2 held at the forecast's 1.0 (the tag reads 1.02): only speed.
    let mut p = ml_proposal(&plant, &[0.6, 1.0], 0);
    p.tags = vec![Arc::from("speed"), Arc::from("echo2")].into();
    st.step(&plant.view(), None, &mut vec![p]);
    let e = std::mem::take(&mut st.events);
    assert_eq!(decisions(&e), [("written", None)]);
    assert_eq!(e[0].tag.as_ref(), "speed");
}

// --- In the core ---------------------------------------------------------

#[test]
fn r12_the_stage_decides_in_the_core_and_its_events_are_in_the_stream() {
    use crate::twin::{Sample, TickClock, TwinCore, TwinEvent};
    let cfg = config(&SETPOINT.replace("mode = \"closed_loop\"", "mode = \"shadow\""));
    let mut core = TwinCore::new(&cfg, TickClock::new(0, Duration::from_millis(100)));
    crate::guard::install(&mut core, &cfg);
    let t = 50_000_000;
    for (tag, v) in [
        ("speed", Value::Num(0.5)),
        ("echo", Value::Num(0.5)),
        ("running", Value::Bool(true)),
        ("kill", Value::Bool(false)),
    ] {
        core.push(Sample::good(id(&cfg, tag), v, t, t));
    }
    core.advance();
    let mut st = crate::guard::state_mut(&mut core).expect("installed");
    st.propose_operator("speed", 0.6, "ana").expect("queued");
    core.advance();
    let events = core.drain_events();
    let sp: Vec<&SetpointEvent> = events
        .iter()
        .filter_map(|e| match e {
            TwinEvent::Setpoint(s) => Some(&**s),
            _ => None,
        })
        .collect();
    assert_eq!(sp.len(), 1, "{events:?}");
    assert_eq!(sp[0].decision, SetpointDecision::Shadow);
    assert_eq!(sp[0].t_ns, 200_000_000, "at the tick it was taken on");
    let mut out = Vec::new();
    core.encode_events(&events, &mut out);
    let text = String::from_utf8(out).expect("utf-8");
    assert!(
        text.lines().last().is_some_and(
            |l| l.contains(r#""type":"setpoint""#) && l.contains(r#""decision":"shadow""#)
        ),
        "{text}"
    );
    // All setpoints off: no guard at all.
    let off = config(&SETPOINT.replace("mode = \"closed_loop\"", "mode = \"off\""));
    let mut core = TwinCore::new(&off, TickClock::new(0, Duration::from_millis(100)));
    crate::guard::install(&mut core, &off);
    assert!(crate::guard::state(&core).is_none());
}

#[test]
fn r12_a_failed_audit_append_sends_nothing_and_blocks_every_later_write() {
    let (mut plant, mut st) = guard(&advisory());
    st.attach_writer();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = AuditLog::open(&dir.path().join("audit.jsonl"), 0).expect("open");
    written(&mut plant, &mut st);
    // A record the log refuses (a line above its 1 MiB limit), standing in
    // for a full disk.
    let last = st.records.last_mut().expect("the written record");
    assert_eq!(last.decision, Decision::Written);
    last.forecast = Some(serde_json::json!({ "trace": "x".repeat(crate::guard::audit::MAX_LINE) }));
    let mut w = Recorder(Vec::new(), WriteOutcome::Sent);
    let done = carry_out(&mut st, &mut log, Some(&mut w));
    assert!(done.audit_error.is_some());
    // The tick's records are one group commit: the refused one refuses
    // all of them, so nothing of the tick is on disk and nothing acts.
    assert_eq!((done.appended, done.sent), (0, 0));
    assert_eq!(log.seq(), 1, "only the opened entry");
    assert!(w.0.is_empty(), "no record, no write");
    plant.next();
    let e = step(&plant, &mut st);
    assert_eq!(decisions(&e), [("blocked", Some("not_sent"))]);
    st.propose_operator("speed", 0.6, "ana").expect("queued");
    plant.skip(20);
    let e = step(&plant, &mut st);
    assert_eq!(decisions(&e), [("blocked", Some("kill_switch"))]);
    assert!(e[0].reason.contains("audit log"), "{}", e[0].reason);
}

#[test]
fn r12_a_newer_pending_proposal_supersedes_the_older_one() {
    let (plant, mut st) = guard(&advisory());
    let first = st.propose_operator("speed", 0.6, "ana").expect("queued");
    step(&plant, &mut st);
    let second = st.propose_operator("speed", 0.62, "ana").expect("queued");
    let e = step(&plant, &mut st);
    assert_eq!(decisions(&e), [("expired", None), ("pending", None)]);
    assert_eq!((e[0].proposal, e[1].proposal), (Some(first), Some(second)));
    assert_eq!(st.pending().len(), 1);
}
