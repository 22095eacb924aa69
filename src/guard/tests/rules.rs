//! The guard's rules one by one, table-driven: each blocks what it
//! should and lets through what it should.

use super::*;

/// One rule case: what to change from the passing baseline, and the
/// verdict expected.
struct Case {
    name: &'static str,
    /// (line of SETPOINT, its replacement).
    config: Option<(&'static str, &'static str)>,
    tweak: fn(&mut Fixture),
    expect: Expect,
}

#[derive(Debug, PartialEq)]
enum Expect {
    Pass(f64),
    Blocked(RuleId),
    Skipped,
    Ignored,
}

struct Fixture {
    plant: Plant,
    st: SetpointState,
    p: Proposal,
    globals: Globals,
    purpose: Purpose,
    link_up: bool,
    forecaster: Fixed,
}

fn run_case(c: &Case) -> (Verdict, Option<(f64, String)>) {
    let text = match c.config {
        Some((from, to)) => {
            assert!(SETPOINT.contains(from), "{}: no line {from}", c.name);
            SETPOINT.replace(from, to)
        }
        None => SETPOINT.to_string(),
    };
    let cfg = config(&text);
    let plant = Plant::new(cfg);
    let speed = id(&plant.cfg, "speed");
    let temp = id(&plant.cfg, "temp");
    let now = plant.now();
    let mut f = Fixture {
        globals: Globals {
            kill: None,
            kill_tag: plant.cfg.guard.kill_tag,
        },
        plant,
        st: SetpointState::default(),
        p: Proposal {
            id: 1,
            actor: Actor::Model {
                id: "m".into(),
                sha256: "ab".into(),
            },
            tag: speed,
            requested: 0.6,
            based_on_ns: now - 1_000_000_000,
            inputs: vec![temp],
            forecast: Some(forecast(0, 0.1)),
            group: None,
        },
        purpose: Purpose::Propose,
        link_up: true,
        forecaster: Fixed(Ok(None)),
    };
    (c.tweak)(&mut f);
    let sp = &f.plant.cfg.guard.setpoints[0];
    let cx = Context {
        view: f.plant.view(),
        globals: &f.globals,
        purpose: f.purpose,
        link_up: f.link_up,
    };
    let o = decide(sp, &f.st, &f.p, &cx, &mut f.forecaster);
    (o.verdict, o.clamped)
}

fn inflight() -> InFlight {
    InFlight {
        intent: 7,
        proposal: 3,
        value: 0.4,
        issued_tick: TICK - 1,
        actor: Actor::System,
        sent: true,
        previous: None,
    }
}

fn cases() -> Vec<Case> {
    use Expect::*;
    vec![
        Case {
            name: "passes",
            config: None,
            tweak: |_| {},
            expect: Pass(0.6),
        },
        Case {
            name: "kill switch (config or CLI)",
            config: None,
            tweak: |f| f.globals.kill = Some("test".into()),
            expect: Blocked(RuleId::KillSwitch),
        },
        Case {
            name: "kill tag on",
            config: None,
            tweak: |f| f.plant.set("kill", Value::Bool(true)),
            expect: Blocked(RuleId::KillSwitch),
        },
        Case {
            name: "kill tag bad fails closed",
            config: None,
            tweak: |f| *f.plant.snap("kill") = TagSnap::default(),
            expect: Blocked(RuleId::KillSwitch),
        },
        Case {
            name: "kill tag stale fails closed",
            config: None,
            tweak: |f| f.plant.snap("kill").quality = Quality::Stale,
            expect: Blocked(RuleId::KillSwitch),
        },
        Case {
            name: "mode off is not considered",
            config: Some(("mode = \"closed_loop\"", "mode = \"off\"")),
            tweak: |_| {},
            expect: Ignored,
        },
        Case {
            name: "mode off is not considered, even with the kill tag bad",
            config: Some(("mode = \"closed_loop\"", "mode = \"off\"")),
            tweak: |f| *f.plant.snap("kill") = TagSnap::default(),
            expect: Ignored,
        },
        Case {
            name: "locked",
            config: None,
            tweak: |f| f.st.locked = Some("a mismatch".into()),
            expect: Blocked(RuleId::Locked),
        },
        Case {
            name: "read-back pending",
            config: None,
            tweak: |f| f.st.inflight = Some(inflight()),
            expect: Blocked(RuleId::ReadbackPending),
        },
        Case {
            name: "NaN",
            config: None,
            tweak: |f| f.p.requested = f64::NAN,
            expect: Blocked(RuleId::NonFinite),
        },
        Case {
            name: "infinity",
            config: None,
            tweak: |f| f.p.requested = f64::INFINITY,
            expect: Blocked(RuleId::NonFinite),
        },
        Case {
            name: "proposal too old",
            config: None,
            tweak: |f| f.p.based_on_ns -= 1_500_000_000,
            expect: Blocked(RuleId::ProposalAge),
        },
        Case {
            name: "proposal at its max age passes",
            config: None,
            tweak: |f| f.p.based_on_ns -= 1_000_000_000,
            expect: Pass(0.6),
        },
        Case {
            name: "model input stale",
            config: None,
            tweak: |f| f.plant.snap("temp").quality = Quality::Stale,
            expect: Blocked(RuleId::InputQuality),
        },
        Case {
            name: "model input uncertain",
            config: None,
            tweak: |f| f.plant.snap("temp").quality = Quality::Uncertain,
            expect: Blocked(RuleId::InputQuality),
        },
        Case {
            name: "own tag bad",
            config: None,
            tweak: |f| *f.plant.snap("speed") = TagSnap::default(),
            expect: Blocked(RuleId::InputQuality),
        },
        Case {
            name: "input older than max_input_age",
            config: None,
            tweak: |f| {
                let now = f.plant.now();
                f.plant.snap("temp").source_time_ns = Some(now - 2_500_000_000)
            },
            expect: Blocked(RuleId::InputAge),
        },
        Case {
            name: "interlock fails",
            config: None,
            tweak: |f| f.plant.set("running", Value::Bool(false)),
            expect: Blocked(RuleId::Interlock),
        },
        Case {
            name: "interlock unknown blocks",
            config: None,
            tweak: |f| f.plant.snap("running").quality = Quality::Bad,
            expect: Blocked(RuleId::Interlock),
        },
        Case {
            name: "out of range rejected",
            config: None,
            tweak: |f| {
                f.plant.set("speed", Value::Num(0.95));
                f.p.requested = 1.05
            },
            expect: Blocked(RuleId::Bounds),
        },
        Case {
            name: "out of range clamped",
            config: Some(("out_of_range = \"reject\"", "out_of_range = \"clamp\"")),
            tweak: |f| {
                f.plant.set("speed", Value::Num(0.95));
                f.p.requested = 1.05
            },
            expect: Pass(1.0),
        },
        Case {
            name: "step too large",
            config: None,
            tweak: |f| f.p.requested = 0.75,
            expect: Blocked(RuleId::MaxStep),
        },
        Case {
            name: "step at max_step passes",
            config: None,
            tweak: |f| f.p.requested = 0.7,
            expect: Pass(0.7),
        },
        Case {
            name: "rate too high",
            config: None,
            tweak: |f| {
                f.st.last_write = Some((TICK - 1, 0.5));
                f.p.requested = 0.65
            },
            expect: Blocked(RuleId::MaxRate),
        },
        Case {
            name: "min_interval not over",
            config: None,
            tweak: |f| f.st.last_write = Some((TICK - 5, 0.5)),
            expect: Blocked(RuleId::MinInterval),
        },
        Case {
            name: "min_interval over",
            config: None,
            tweak: |f| f.st.last_write = Some((TICK - 10, 0.5)),
            expect: Pass(0.6),
        },
        Case {
            name: "inside the deadband",
            config: None,
            tweak: |f| f.p.requested = 0.505,
            expect: Skipped,
        },
        Case {
            name: "no change",
            config: None,
            tweak: |f| f.p.requested = 0.5,
            expect: Skipped,
        },
        Case {
            name: "link down",
            config: None,
            tweak: |f| f.link_up = false,
            expect: Blocked(RuleId::LinkDown),
        },
        Case {
            name: "forecast loses product",
            config: None,
            tweak: |f| f.p.forecast = Some(forecast(2, 0.1)),
            expect: Blocked(RuleId::Lookahead),
        },
        Case {
            name: "forecast jam risk above the limit",
            config: None,
            tweak: |f| f.p.forecast = Some(forecast(0, 0.7)),
            expect: Blocked(RuleId::Lookahead),
        },
        Case {
            name: "lookahead only in closed loop",
            config: Some(("mode = \"closed_loop\"", "mode = \"shadow\"")),
            tweak: |f| f.p.forecast = Some(forecast(2, 0.9)),
            expect: Pass(0.6),
        },
        Case {
            name: "closed loop without a forecast or a knob",
            config: None,
            tweak: |f| f.p.forecast = None,
            expect: Blocked(RuleId::Lookahead),
        },
        Case {
            name: "an operator's value forecast fresh",
            config: None,
            tweak: |f| {
                f.p.forecast = None;
                f.forecaster = Fixed(Ok(Some(forecast(1, 0.0))))
            },
            expect: Blocked(RuleId::Lookahead),
        },
        Case {
            name: "a failed forecast blocks",
            config: None,
            tweak: |f| {
                f.p.forecast = None;
                f.forecaster = Fixed(Err("no line".into()))
            },
            expect: Blocked(RuleId::Lookahead),
        },
        Case {
            name: "an approval without a knob is the operator's call",
            config: Some(("mode = \"closed_loop\"", "mode = \"advisory\"")),
            tweak: |f| {
                f.p.forecast = None;
                f.purpose = Purpose::Approve
            },
            expect: Pass(0.6),
        },
        Case {
            name: "an approval is forecast fresh",
            config: Some(("mode = \"closed_loop\"", "mode = \"advisory\"")),
            tweak: |f| {
                f.purpose = Purpose::Approve;
                f.forecaster = Fixed(Ok(Some(forecast(3, 0.0))))
            },
            expect: Blocked(RuleId::Lookahead),
        },
        Case {
            name: "the first failing rule decides",
            config: None,
            tweak: |f| {
                f.p.requested = f64::NAN;
                f.st.locked = Some("x".into());
                f.link_up = false
            },
            expect: Blocked(RuleId::Locked),
        },
    ]
}

#[test]
fn r12_each_rule_blocks_what_it_should_and_lets_through_what_it_should() {
    let mut covered = std::collections::BTreeSet::new();
    for c in cases() {
        let (v, clamped) = run_case(&c);
        let got = match &v {
            Verdict::Pass(x) => Expect::Pass(*x),
            Verdict::Blocked(r, why) => {
                assert!(!why.is_empty(), "{}: a reason", c.name);
                covered.insert(*r);
                Expect::Blocked(*r)
            }
            Verdict::Skipped(_) => {
                covered.insert(RuleId::Deadband);
                Expect::Skipped
            }
            Verdict::Ignored => {
                covered.insert(RuleId::ModeOff);
                Expect::Ignored
            }
        };
        match (&got, &c.expect) {
            (Expect::Pass(a), Expect::Pass(b)) => {
                assert!((a - b).abs() < 1e-12, "{}: {v:?}", c.name)
            }
            _ => assert_eq!(got, c.expect, "{}: {v:?}", c.name),
        }
        assert_eq!(clamped.is_some(), c.name.contains("clamped"), "{}", c.name);
    }
    // Every decision rule but `group` (a proposal's, see below) has a case.
    for r in RuleId::ORDER {
        assert!(
            r == RuleId::Group || covered.contains(&r),
            "no case for {r}"
        );
    }
}
