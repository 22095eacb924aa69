//! `[models.schedule]`, and `[ml]`'s metering and row quotas.

use super::*;

/// A fault model with `every` (or none) and `[models.schedule]` as given.
fn scheduled(every: &str, schedule: &str) -> String {
    format!(
        "[[models]]\nid = \"m\"\npath = \"m.onnx\"\ntask = \"fault\"\nmachine = \"a\"\n{every}inputs = [\"a.speed\"]\n[models.output]\nclasses = [\"ok\", \"jam\"]\n[models.schedule]\n{schedule}"
    )
}

#[test]
fn h6_a_schedule_resolves_calm_and_busy_cadences_and_quotas() {
    let cfg = ok(&format!(
        "[ml]\nmetering = \"30s\"\nrows_per_minute = 1000\n{}",
        scheduled(
            "",
            "calm_every = \"2s\"\nbusy_every = \"500ms\"\nbusy_above = 0.4\nrows_per_minute = 600\n"
        )
    ));
    let m = &cfg.ml.models[0];
    assert_eq!(m.every_ticks, 20, "calm_every is the calm cadence");
    let busy = m.schedule.busy.expect("busy cadence");
    assert_eq!((busy.every_ticks, busy.above), (5, 0.4));
    assert_eq!(m.schedule.rows_per_minute, Some(600));
    assert_eq!(cfg.ml.metering_ticks, 300);
    assert_eq!(cfg.ml.metering, Duration::from_secs(30));
    assert_eq!(cfg.ml.rows_per_minute, Some(1000));
}

#[test]
fn h6_metering_defaults_to_a_minute_and_models_to_no_quota() {
    let cfg = ok(&scheduled("every = \"1s\"\n", ""));
    assert_eq!(cfg.ml.metering_ticks, 600, "60 s of 100 ms ticks");
    assert_eq!(cfg.ml.rows_per_minute, None);
    assert_eq!(
        cfg.ml.models[0].schedule,
        crate::config::Schedule::default()
    );
    assert_eq!(cfg.ml.models[0].every_ticks, 10);
}

#[test]
fn h6_busy_every_and_busy_above_go_together() {
    let (path, msg, _) = error(&scheduled("", "busy_every = \"1s\"\n"));
    assert_eq!(
        (path.as_str(), msg.as_str()),
        (
            "models[0].schedule.busy_above",
            "`busy_every` needs `busy_above`"
        )
    );
    let (path, msg, _) = error(&scheduled("", "busy_above = 0.5\n"));
    assert_eq!(
        (path.as_str(), msg.as_str()),
        (
            "models[0].schedule.busy_above",
            "`busy_above` needs `busy_every`"
        )
    );
}

#[test]
fn h6_a_model_without_a_risk_or_score_cannot_be_busy() {
    let (path, msg, _) = error(
        "[[models]]\nid = \"m\"\npath = \"m.onnx\"\ntask = \"rul\"\ninputs = [\"a.speed\"]\n[models.output]\nunit = \"h\"\n[models.schedule]\nbusy_every = \"1s\"\nbusy_above = 3\n",
    );
    assert_eq!(
        (path.as_str(), msg.as_str()),
        (
            "models[0].schedule.busy_every",
            "task = \"rul\" gives no risk or score to be busy on"
        )
    );
}

#[test]
fn h6_every_and_calm_every_cannot_both_be_written() {
    let (path, msg, help) = error(&scheduled("every = \"1s\"\n", "calm_every = \"2s\"\n"));
    assert_eq!(path, "models[0].schedule.calm_every");
    assert!(msg.contains("both set its calm cadence"), "{msg}");
    assert!(help.contains("`every` = \"1s\""), "{help}");
}

#[test]
fn h6_a_busy_cadence_slower_than_the_calm_one_is_refused() {
    let (path, msg, _) = error(&scheduled(
        "every = \"1s\"\n",
        "busy_every = \"5s\"\nbusy_above = 0.5\n",
    ));
    assert_eq!(path, "models[0].schedule.busy_every");
    assert!(msg.contains("(5s) than a calm one (1s)"), "{msg}");
}

#[test]
fn h6_metering_and_busy_every_are_whole_ticks_and_quotas_positive() {
    let all = errors(&format!(
        "[ml]\nmetering = \"150ms\"\nrows_per_minute = 0\n{}",
        scheduled("", "busy_every = \"250ms\"\nbusy_above = 0.5\n")
    ));
    let paths: Vec<&str> = all.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "ml.metering",
            "ml.rows_per_minute",
            "models[0].schedule.busy_every"
        ],
        "{all:#?}"
    );
}

#[test]
fn r11_apply_after_offloads_a_model_by_whole_ticks() {
    let cfg = ok(&scheduled("every = \"1s\"\n", "apply_after = \"300ms\"\n"));
    assert_eq!(cfg.ml.models[0].schedule.apply_after_ticks, 3);
    assert_eq!(
        ok(&scheduled("every = \"1s\"\n", "")).ml.models[0]
            .schedule
            .apply_after_ticks,
        0,
        "on the tick thread by default"
    );
    let (path, msg, _) = error(&scheduled("", "apply_after = \"250ms\"\n"));
    assert_eq!(path, "models[0].schedule.apply_after");
    assert!(msg.contains("not a whole number of ticks"), "{msg}");
    let (path, _, _) = error(&scheduled("", "apply_after = \"2m\"\n"));
    assert_eq!(path, "models[0].schedule.apply_after", "at most a minute");
}
