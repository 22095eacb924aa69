//! `[ml]` and `[[models]]`: one test per rule, and what a valid file
//! resolves to.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{
    ConfigReport, FeatureSource, Input, LoadedConfig, Model, OnBadInput, PhysicsKind, Priority,
    Row, Stat, Task, load_str,
};

/// Machines `a` and `b` (conveyors, on line `l1`, which has geometry) and
/// `c` (a pump on no line); setpoints on `a.speed` and `b.speed`.
const PLANT: &str = r#"
[plant]
name = "p"
tick = "100ms"

[[sources.modbus]]
name = "d"
address = "127.0.0.1:502"
registers = [
  { tag = "a.current", table = "holding", address = 0 },
  { tag = "b.current", table = "holding", address = 1 },
  { tag = "c.current", table = "holding", address = 2 },
  { tag = "a.speed", table = "holding", address = 3 },
  { tag = "b.speed", table = "holding", address = 4 },
  { tag = "line.wip", table = "holding", address = 5 },
  { tag = "belt.speed", table = "holding", address = 6 },
]

[[machines]]
id = "a"
kind = "conveyor"
tags = { motor_current = "a.current", speed = "a.speed" }

[[machines]]
id = "b"
kind = "conveyor"
tags = { motor_current = "b.current", speed = "b.speed", belt = "belt.speed", wip = "line.wip" }

[[machines]]
id = "c"
kind = "pump"
tags = { motor_current = "c.current" }

[[setpoints]]
tag = "a.speed"
min = 0
max = 2

[[setpoints]]
tag = "b.speed"
min = 0
max = 2

[[lines]]
id = "l1"
machines = ["a", "b"]
  [[lines.conveyors]]
  id = "c1"
  speed_tag = "belt.speed"
  width = 0.4
    [[lines.conveyors.segments]]
    length = 5.0
"#;

fn load(extra: &str) -> Result<LoadedConfig, Box<ConfigReport>> {
    load_str(Path::new("cfg/plant.toml"), &format!("{PLANT}\n{extra}"))
}

fn ok(extra: &str) -> LoadedConfig {
    load(extra).unwrap_or_else(|r| panic!("expected a valid config:\n{r}"))
}

fn one(extra: &str) -> Model {
    let cfg = ok(extra);
    assert_eq!(cfg.ml.models.len(), 1, "{:?}", cfg.ml.models);
    cfg.ml.models[0].clone()
}

/// Every error as (key path, message, help), in file order.
fn errors(extra: &str) -> Vec<(String, String, String)> {
    match load(extra) {
        Ok(_) => panic!("expected errors in:\n{extra}"),
        Err(r) => r
            .diagnostics
            .iter()
            .map(|d| {
                (
                    d.path.clone(),
                    d.message.clone(),
                    d.help.clone().unwrap_or_default(),
                )
            })
            .collect(),
    }
}

/// The only error's (key path, message, help).
fn error(extra: &str) -> (String, String, String) {
    let all = errors(extra);
    assert_eq!(all.len(), 1, "one error expected, got {all:#?}");
    all[0].clone()
}

#[test]
fn a_model_written_before_models_ran_stays_valid_and_is_not_run() {
    let cfg = ok(r#"
[[models]]
id = "old"
path = "m.onnx"
machine = "a"
inputs = ["a.current", "a.speed"]
"#);
    assert_eq!(cfg.config.models.len(), 1);
    assert!(cfg.ml.models.is_empty(), "no task, so nothing to run");
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

#[test]
fn a_full_model_resolves_binding_rows_ticks_output_and_alarm() {
    let m = one(r#"
[[models]]
id = "faults"
path = "models/f.onnx"
task = "fault"
kind = "conveyor"
every = "1s"
input = "X"
on_bad_input = "suppress"
inputs = ["line.wip"]
  [[models.features]]
  role = "motor_current"
  stat = "mean"
  window = "30s"
  [[models.features]]
  role = "speed"
  stat = "lag"
  lag = "5s"
  [[models.features]]
  physics = "slip"
  [models.output]
  name = "probabilities"
  classes = ["normal", "jam", "bearing_wear"]
  [models.alarm]
  threshold = 0.7
  deadband = 0.05
  on_delay = "3s"
  off_delay = "250ms"
  priority = "high"
"#);
    assert_eq!(m.id.value, "faults");
    assert_eq!(m.task, Task::Fault);
    assert_eq!(m.path.value, PathBuf::from("cfg/models/f.onnx"));
    assert_eq!(m.binding, ["a", "b"]);
    assert_eq!((m.every, m.every_ticks), (Duration::from_secs(1), 10));
    assert_eq!(m.input.as_ref().map(|i| i.value.as_str()), Some("X"));
    assert_eq!(m.on_bad_input, OnBadInput::Suppress);
    let shape: Vec<_> = m
        .features
        .iter()
        .map(|f| (f.source.clone(), f.stat, f.window_ticks, f.lag_ticks))
        .collect();
    assert_eq!(
        shape,
        [
            (FeatureSource::Tag("line.wip".into()), Stat::Value, 0, 0),
            (
                FeatureSource::Role("motor_current".into()),
                Stat::Mean,
                300,
                0
            ),
            (FeatureSource::Role("speed".into()), Stat::Lag, 0, 50),
            (
                FeatureSource::Physics {
                    kind: PhysicsKind::Slip,
                    line: None
                },
                Stat::Value,
                0,
                0
            ),
        ]
    );
    let slip = Input::Physics {
        kind: PhysicsKind::Slip,
        line: "l1".into(),
    };
    let tag = |t: &str| Input::Tag(t.into());
    assert_eq!(
        m.rows,
        [
            Row {
                machine: Some("a".into()),
                inputs: vec![
                    tag("line.wip"),
                    tag("a.current"),
                    tag("a.speed"),
                    slip.clone()
                ],
            },
            Row {
                machine: Some("b".into()),
                inputs: vec![tag("line.wip"), tag("b.current"), tag("b.speed"), slip],
            },
        ]
    );
    assert_eq!(
        m.output.name.as_ref().map(|n| n.value.as_str()),
        Some("probabilities")
    );
    assert_eq!(m.output.classes.value, ["normal", "jam", "bearing_wear"]);
    assert!(m.output.setpoints.value.is_empty());
    let alarm = m.alarm.expect("an alarm");
    assert_eq!(alarm.threshold.map(|t| t.value), Some(0.7));
    assert_eq!(alarm.deadband, 0.05);
    assert_eq!((alarm.on_delay_ticks, alarm.off_delay_ticks), (30, 3));
    assert_eq!(alarm.priority, Priority::High);
}

#[test]
fn the_locations_h1_reports_at_point_into_the_model() {
    let text = r#"
[[models]]
id = "s"
path = "s.onnx"
task = "setpoint"
machine = "a"
  [[models.features]]
  role = "speed"
  [models.output]
  setpoints = ["a.speed"]
"#;
    let cfg = ok(text);
    let m = &cfg.ml.models[0];
    let at = |span: &std::ops::Range<usize>| &cfg.file.text[span.clone()];
    assert_eq!(at(&m.path.span), "\"s.onnx\"");
    assert_eq!(at(&m.features_span), "features");
    assert_eq!(at(&m.output.setpoints.span), "setpoints");
    assert_eq!(m.output.setpoints.value, ["a.speed"]);
    assert_eq!(m.rows[0].inputs, [Input::Tag("a.speed".into())]);
}

#[test]
fn defaults_are_every_tick_uncertain_rows_and_a_medium_alarm() {
    let m = one(r#"
[[models]]
id = "an"
path = "/abs/an.onnx"
task = "anomaly"
inputs = ["line.wip"]
  [models.output]
  threshold = 2.5
  [models.alarm]
"#);
    assert_eq!(m.path.value, PathBuf::from("/abs/an.onnx"));
    assert!(m.binding.is_empty());
    assert_eq!(
        m.rows,
        [Row {
            machine: None,
            inputs: vec![Input::Tag("line.wip".into())]
        }]
    );
    assert_eq!((m.every, m.every_ticks), (Duration::from_millis(100), 1));
    assert_eq!(m.on_bad_input, OnBadInput::Uncertain);
    assert!(m.input.is_none() && m.output.name.is_none());
    let alarm = m.alarm.expect("an alarm");
    assert_eq!(
        alarm.threshold.map(|t| t.value),
        Some(2.5),
        "an anomaly alarm defaults to the output's threshold"
    );
    assert_eq!(
        (alarm.deadband, alarm.on_delay, alarm.off_delay),
        (0.0, Duration::ZERO, Duration::ZERO)
    );
    assert_eq!(alarm.priority, Priority::Medium);
}

#[test]
fn ml_runtime_resolves_against_the_config_folder_and_refuses_unknown_keys() {
    let cfg = ok("[ml]\nruntime = \"lib/libonnxruntime.so\"\n");
    let rt = cfg.ml.runtime.expect("runtime");
    assert_eq!(rt.value, PathBuf::from("cfg/lib/libonnxruntime.so"));
    let (path, msg, help) = error("[ml]\nruntme = \"x.so\"\n");
    assert_eq!(path, "ml.runtme");
    assert_eq!(msg, "unknown key `runtme`");
    assert_eq!(help, "did you mean `runtime`?");
}

#[test]
fn model_ids_are_unique() {
    let (path, msg, _) = error(
        r#"
[[models]]
id = "m"
path = "a.onnx"
[[models]]
id = "m"
path = "b.onnx"
"#,
    );
    assert_eq!(
        (path.as_str(), msg.as_str()),
        ("models[1].id", "duplicate model id \"m\"")
    );
}

#[test]
fn a_model_has_at_most_one_binding_key() {
    let (path, msg, _) = error(
        r#"
[[models]]
id = "m"
path = "m.onnx"
machine = "a"
kind = "conveyor"
"#,
    );
    assert_eq!(path, "models[0].kind");
    assert_eq!(msg, "`kind` and `machine` both bind this model");
}

#[test]
fn a_feature_has_exactly_one_source() {
    let errs = errors(
        r#"
[[models]]
id = "m"
path = "m.onnx"
task = "anomaly"
machine = "a"
  [[models.features]]
  stat = "value"
  [[models.features]]
  role = "speed"
  tag = "a.speed"
  physics = "wip"
"#,
    );
    let got: Vec<_> = errs.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    assert_eq!(
        got,
        [
            ("models[0].features[0].role", "feature names no source"),
            (
                "models[0].features[1].tag",
                "`tag` and `role` are both sources of this feature"
            ),
            (
                "models[0].features[1].physics",
                "`physics` and `role` are both sources of this feature"
            ),
        ]
    );
}

#[test]
fn a_role_missing_on_a_bound_machine_names_that_machine() {
    let (path, msg, help) = error(
        r#"
[[models]]
id = "m"
path = "m.onnx"
task = "anomaly"
machines = ["b", "a"]
  [[models.features]]
  role = "belt"
"#,
    );
    assert_eq!(path, "models[0].features[0].role");
    assert_eq!(msg, "role \"belt\" is missing on machine \"a\"");
    assert_eq!(help, "machine \"a\" has roles motor_current, speed");
    let (_, msg, help) = error(
        r#"
[[models]]
id = "m"
path = "m.onnx"
task = "anomaly"
kind = "conveyor"
  [[models.features]]
  role = "motor_curent"
"#,
    );
    assert_eq!(
        msg,
        "role \"motor_curent\" is missing on machines \"a\" and \"b\""
    );
    assert_eq!(help, "did you mean `motor_current`?");
}

#[test]
fn a_role_on_a_plant_level_model_is_refused() {
    let (path, msg, _) = error(
        r#"
[[models]]
id = "m"
path = "m.onnx"
task = "anomaly"
  [[models.features]]
  role = "speed"
"#,
    );
    assert_eq!(path, "models[0].features[0].role");
    assert_eq!(
        msg,
        "role \"speed\" needs a machine, but the model is bound to none"
    );
}

#[test]
fn tags_machines_and_kinds_resolve_with_a_did_you_mean() {
    let errs = errors(
        r#"
[[models]]
id = "m"
path = "m.onnx"
machines = ["a", "bb", "a"]
inputs = ["line.wp"]
  [[models.features]]
  tag = "a.sped"
[[models]]
id = "n"
path = "n.onnx"
kind = "conveyr"
"#,
    );
    let got: Vec<_> = errs
        .iter()
        .map(|e| (e.0.as_str(), e.1.as_str(), e.2.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "models[0].machines[1]",
                "unknown machine \"bb\"",
                "did you mean `b`?"
            ),
            (
                "models[0].machines[2]",
                "duplicate machine in this model \"a\"",
                "first seen at line 58:13"
            ),
            (
                "models[0].inputs[0]",
                "unknown tag \"line.wp\"",
                "did you mean `line.wip`?"
            ),
            (
                "models[0].features[0].tag",
                "unknown tag \"a.sped\"",
                "did you mean `a.speed`?"
            ),
            (
                "models[1].kind",
                "unknown kind \"conveyr\"",
                "did you mean `conveyor`?"
            ),
        ]
    );
}

#[test]
fn a_kind_that_binds_no_machine_is_an_error() {
    let (path, msg, help) = error(
        r#"
[[models]]
id = "m"
path = "m.onnx"
kind = "mixer"
"#,
    );
    assert_eq!(path, "models[0].kind");
    assert_eq!(msg, "kind \"mixer\" binds no machine");
    assert_eq!(help, "this plant's machines are of kind conveyor, pump");
}

#[test]
fn every_window_and_lag_are_positive_whole_ticks() {
    let errs = errors(
        r#"
[[models]]
id = "m"
path = "m.onnx"
every = "150ms"
  [[models.features]]
  tag = "a.speed"
  stat = "mean"
  window = "50ms"
  [[models.features]]
  tag = "a.speed"
  stat = "lag"
  lag = "1.25s"
  [[models.features]]
  tag = "a.speed"
  stat = "max"
  window = "0s"
"#,
    );
    let got: Vec<_> = errs
        .iter()
        .map(|e| (e.0.as_str(), e.1.as_str(), e.2.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "models[0].every",
                "150ms is not a whole number of ticks (100ms)",
                "e.g. \"100ms\" or \"200ms\""
            ),
            (
                "models[0].features[0].window",
                "50ms is not a whole number of ticks (100ms)",
                "e.g. \"100ms\""
            ),
            (
                "models[0].features[1].lag",
                "1s 250ms is not a whole number of ticks (100ms)",
                "e.g. \"1s 200ms\" or \"1s 300ms\""
            ),
            (
                "models[0].features[2].window",
                "duration 0s is out of range",
                ""
            ),
        ]
    );
}

#[test]
fn a_bad_tick_gives_no_second_error_at_the_durations() {
    let text = format!("{PLANT}\n[[models]]\nid = \"m\"\npath = \"m.onnx\"\nevery = \"150ms\"\n")
        .replace("tick = \"100ms\"", "tick = \"100\"");
    let report = load_str(Path::new("p.toml"), &text).expect_err("tick is invalid");
    let paths: Vec<&str> = report.diagnostics.iter().map(|d| d.path.as_str()).collect();
    assert_eq!(paths, ["plant.tick"]);
}

#[test]
fn window_is_required_for_window_stats_and_refused_for_value_and_lag() {
    let errs = errors(
        r#"
[[models]]
id = "m"
path = "m.onnx"
  [[models.features]]
  tag = "a.speed"
  stat = "slope"
  [[models.features]]
  tag = "a.speed"
  window = "1s"
  [[models.features]]
  tag = "a.speed"
  stat = "lag"
  lag = "1s"
  window = "1s"
"#,
    );
    let got: Vec<_> = errs.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    assert_eq!(
        got,
        [
            (
                "models[0].features[0].window",
                "stat = \"slope\" needs `window`"
            ),
            (
                "models[0].features[1].window",
                "stat = \"value\" takes no `window`"
            ),
            (
                "models[0].features[2].window",
                "stat = \"lag\" takes no `window`"
            ),
        ]
    );
}

#[test]
fn lag_goes_only_with_stat_lag_and_is_required_there() {
    let errs = errors(
        r#"
[[models]]
id = "m"
path = "m.onnx"
  [[models.features]]
  tag = "a.speed"
  stat = "lag"
  [[models.features]]
  tag = "a.speed"
  stat = "rms"
  window = "1s"
  lag = "1s"
"#,
    );
    let got: Vec<_> = errs.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    assert_eq!(
        got,
        [
            ("models[0].features[0].lag", "stat = \"lag\" needs `lag`"),
            ("models[0].features[1].lag", "stat = \"rms\" takes no `lag`"),
        ]
    );
}

#[test]
fn a_fault_model_needs_two_or_more_unique_classes() {
    let (path, msg, _) = error(
        "[[models]]\nid = \"m\"\npath = \"m.onnx\"\ntask = \"fault\"\ninputs = [\"a.speed\"]\n",
    );
    assert_eq!(path, "models[0].output.classes");
    assert_eq!(msg, "task = \"fault\" needs `classes` in [models.output]");
    let errs = errors(
        r#"
[[models]]
id = "m"
path = "m.onnx"
task = "fault"
inputs = ["a.speed"]
  [models.output]
  classes = ["normal"]
[[models]]
id = "n"
path = "n.onnx"
task = "fault"
inputs = ["a.speed"]
  [models.output]
  classes = ["normal", "jam", "jam"]
"#,
    );
    let got: Vec<_> = errs.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    assert_eq!(
        got,
        [
            (
                "models[0].output.classes",
                "a fault model needs at least two classes, found 1"
            ),
            ("models[1].output.classes[2]", "duplicate class \"jam\""),
        ]
    );
}

#[test]
fn task_keys_of_the_output_are_refused_on_other_tasks() {
    let errs = errors(
        r#"
[[models]]
id = "m"
path = "m.onnx"
task = "anomaly"
inputs = ["a.speed"]
  [models.output]
  classes = ["normal", "jam"]
  unit = "h"
[[models]]
id = "old"
path = "old.onnx"
  [models.output]
  setpoints = ["a.speed"]
"#,
    );
    let got: Vec<_> = errs
        .iter()
        .map(|e| (e.0.as_str(), e.1.as_str(), e.2.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "models[0].output.classes",
                "`classes` applies to task = \"fault\" only",
                "remove `classes`"
            ),
            (
                "models[0].output.unit",
                "`unit` applies to task = \"rul\" only",
                "remove `unit`"
            ),
            (
                "models[1].output.setpoints",
                "`setpoints` applies to task = \"setpoint\" only",
                "set `task = \"setpoint\"` if that is what the model does"
            ),
        ]
    );
}

#[test]
fn a_setpoint_model_names_setpoints_tags_once_each() {
    let (path, msg, _) = error(
        "[[models]]\nid = \"m\"\npath = \"m.onnx\"\ntask = \"setpoint\"\ninputs = [\"a.speed\"]\n[models.output]\n",
    );
    assert_eq!(
        (path.as_str(), msg.as_str()),
        (
            "models[0].output.setpoints",
            "task = \"setpoint\" needs `setpoints`"
        )
    );
    let errs = errors(
        r#"
[[models]]
id = "m"
path = "m.onnx"
task = "setpoint"
inputs = ["a.speed"]
  [models.output]
  setpoints = ["a.speed", "b.sped", "line.wip"]
"#,
    );
    let got: Vec<_> = errs
        .iter()
        .map(|e| (e.0.as_str(), e.1.as_str(), e.2.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (
                "models[0].output.setpoints[1]",
                "tag \"b.sped\" is not a [[setpoints]] tag",
                "did you mean `b.speed`?"
            ),
            (
                "models[0].output.setpoints[2]",
                "tag \"line.wip\" is not a [[setpoints]] tag",
                ""
            ),
        ]
    );
}

#[test]
fn a_rul_model_needs_its_unit() {
    let (path, msg, _) = error(
        "[[models]]\nid = \"m\"\npath = \"m.onnx\"\ntask = \"rul\"\ninputs = [\"a.speed\"]\n[models.output]\nname = \"rul\"\n",
    );
    assert_eq!(
        (path.as_str(), msg.as_str()),
        ("models[0].output.unit", "task = \"rul\" needs `unit`")
    );
    let m = one(
        "[[models]]\nid = \"m\"\npath = \"m.onnx\"\ntask = \"rul\"\ninputs = [\"a.speed\"]\n[models.output]\nunit = \"h\"\n",
    );
    assert_eq!(m.output.unit.map(|u| u.value), Some("h".to_string()));
}

#[test]
fn thresholds_and_alarm_numbers_are_finite() {
    let errs = errors(
        r#"
[[models]]
id = "m"
path = "m.onnx"
task = "anomaly"
inputs = ["a.speed"]
  [models.output]
  threshold = nan
  [models.alarm]
  threshold = inf
  deadband = -inf
"#,
    );
    let got: Vec<_> = errs.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    assert_eq!(
        got,
        [
            ("models[0].output.threshold", "must be a finite number"),
            ("models[0].alarm.threshold", "must be a finite number"),
            ("models[0].alarm.deadband", "must be a finite number"),
        ]
    );
}

#[test]
fn alarm_delays_and_deadband_are_not_negative() {
    let errs = errors(
        r#"
[[models]]
id = "m"
path = "m.onnx"
task = "fault"
inputs = ["a.speed"]
  [models.output]
  classes = ["ok", "jam"]
  [models.alarm]
  threshold = 0.5
  deadband = -0.1
  on_delay = "-1s"
  off_delay = "0s"
"#,
    );
    let got: Vec<_> = errs.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        got,
        ["models[0].alarm.deadband", "models[0].alarm.on_delay"]
    );
}

#[test]
fn a_fault_alarm_needs_a_threshold_that_a_risk_can_reach() {
    let fault = |alarm: &str| {
        format!(
            "[[models]]\nid = \"m\"\npath = \"m.onnx\"\ntask = \"fault\"\ninputs = [\"a.speed\"]\n[models.output]\nclasses = [\"ok\", \"jam\"]\n[models.alarm]\n{alarm}"
        )
    };
    let (path, msg, _) = error(&fault("priority = \"low\"\n"));
    assert_eq!(
        (path.as_str(), msg.as_str()),
        (
            "models[0].alarm.threshold",
            "a fault alarm needs `threshold`"
        )
    );
    let (_, msg, _) = error(&fault("threshold = 1.5\n"));
    assert!(msg.starts_with("a fault risk is a probability"), "{msg}");
}

#[test]
fn estimates_and_proposals_raise_no_alarm() {
    let (path, msg, _) = error(
        "[[models]]\nid = \"m\"\npath = \"m.onnx\"\ntask = \"rul\"\ninputs = [\"a.speed\"]\n[models.output]\nunit = \"h\"\n[models.alarm]\nthreshold = 10\n",
    );
    assert_eq!(
        (path.as_str(), msg.as_str()),
        ("models[0].alarm", "task = \"rul\" raises no alarm")
    );
}

#[test]
fn a_misspelt_task_is_reported_once_not_as_missing_task_keys() {
    let (path, msg, help) = error(
        "[[models]]\nid = \"m\"\npath = \"m.onnx\"\ntask = \"faul\"\n[models.output]\nclasses = [\"ok\", \"jam\"]\n[models.alarm]\nthreshold = 0.5\n",
    );
    assert_eq!(path, "models[0].task");
    assert_eq!(msg, "unknown task \"faul\"");
    assert_eq!(help, "did you mean `fault`?");
}

#[test]
fn a_model_with_a_task_needs_features() {
    let (path, msg, _) = error("[[models]]\nid = \"m\"\npath = \"m.onnx\"\ntask = \"anomaly\"\n");
    assert_eq!(
        (path.as_str(), msg.as_str()),
        ("models[0].features", "model has no features")
    );
}

#[test]
fn physics_features_read_the_line_that_lists_the_bound_machine() {
    let m = one(r#"
[[models]]
id = "m"
path = "m.onnx"
task = "anomaly"
  [[models.features]]
  physics = "throughput"
  line = "l1"
"#);
    assert_eq!(
        m.rows[0].inputs,
        [Input::Physics {
            kind: PhysicsKind::Throughput,
            line: "l1".into()
        }]
    );
}

#[test]
fn a_physics_feature_that_finds_no_line_says_why() {
    let feature = |binding: &str, line: &str| {
        format!(
            "[[models]]\nid = \"m\"\npath = \"m.onnx\"\ntask = \"anomaly\"\n{binding}\n[[models.features]]\nphysics = \"wip\"\n{line}\n"
        )
    };
    let cases = [
        (
            feature("", ""),
            "a plant-level physics feature needs `line`",
        ),
        (
            feature("machine = \"c\"", ""),
            "machine \"c\" is on no line, so it has no physics",
        ),
        (
            feature("machine = \"a\"", "") + "[[lines]]\nid = \"l2\"\nmachines = [\"a\"]\n",
            "machine \"a\" is on lines l1, l2: which one's physics?",
        ),
        (feature("", "line = \"l2\""), "unknown line \"l2\""),
        (
            feature("", "line = \"bare\"") + "[[lines]]\nid = \"bare\"\n",
            "line \"bare\" has no geometry, so the physics twin computes nothing for it",
        ),
    ];
    for (text, want) in cases {
        let (path, msg, _) = error(&text);
        assert_eq!(path, "models[0].features[0].line", "{text}");
        assert_eq!(msg, want, "{text}");
    }
}

#[test]
fn line_is_refused_on_a_role_or_tag_feature() {
    let (path, msg, _) = error(
        "[[models]]\nid = \"m\"\npath = \"m.onnx\"\n[[models.features]]\ntag = \"a.speed\"\nline = \"l1\"\n",
    );
    assert_eq!(
        (path.as_str(), msg.as_str()),
        (
            "models[0].features[0].line",
            "`line` applies to physics features only"
        )
    );
}

const REFERENCE: &str = include_str!("../../plant-configs/reference.toml");

#[test]
fn the_reference_config_still_loads() {
    let cfg = load_str(Path::new("plant-configs/reference.toml"), REFERENCE)
        .unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(cfg.config.models.len(), 1);
    assert!(cfg.ml.models.is_empty(), "its model has no task");
}

/// The reference documents the model keys in a commented-out example
/// (the plant ships no ONNX file); uncommented, it must stay valid.
#[test]
fn the_reference_model_example_is_valid_when_uncommented() {
    let start = REFERENCE.find("#   [ml]\n").expect("the example's start");
    let end = REFERENCE[start..]
        .find("\n\n")
        .map(|n| start + n)
        .expect("the example's end");
    let example: String = REFERENCE[start..end]
        .lines()
        .map(|l| l.strip_prefix("#   ").unwrap_or(l.trim_start_matches('#')))
        .collect::<Vec<_>>()
        .join("\n");
    let text = format!("{}{example}{}", &REFERENCE[..start], &REFERENCE[end..]);
    let cfg = load_str(Path::new("plant-configs/reference.toml"), &text)
        .unwrap_or_else(|r| panic!("{r}"));
    assert!(cfg.ml.runtime.is_some());
    let m = &cfg.ml.models[0];
    assert_eq!((m.id.value.as_str(), m.task), ("mixer_faults", Task::Fault));
    assert_eq!(m.binding, ["mixer"]);
    assert_eq!(m.features.len(), 4);
    assert_eq!(m.output.classes.value.len(), 3);
    assert!(m.alarm.is_some());
    assert!(m.schedule.busy.is_some());
    assert_eq!(m.schedule.rows_per_minute, Some(600));
    assert_eq!(cfg.ml.rows_per_minute, Some(6000));
}

// `[models.schedule]` and `[ml]` metering and quotas.
#[path = "model_schedule_tests.rs"]
mod schedule;
