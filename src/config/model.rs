//! `[ml]` and `[[models]]`: ONNX models, what they read and what their
//! outputs mean, as written.
//!
//! Everything one model's table decides alone is checked here: one binding
//! key, one source per feature, the keys a stat or a task needs or refuses.
//! What needs the rest of the plant (machines, roles, lines, the tick) is
//! checked and resolved into [`super::ml::MlConfig`] by `validate::models`.

use std::ops::Range;
use std::time::Duration;

use super::decode::{HOUR, Loc, MS, Sink, Table};
use super::diagnostics::Diagnostic;
use super::machine::MACHINE_KINDS;
use super::ml::{OnBadInput, PhysicsKind, Priority, Stat, Task};
use super::optimise::{OptimiseDecl, decode_optimise};

/// `[ml]`: settings of the inference runtime.
#[derive(Debug, Clone, Default)]
pub struct MlSection {
    /// `runtime`: path of the ONNX Runtime shared library, as written.
    pub runtime: Option<Loc<String>>,
    /// `metering`: how often `metering` events are written.
    pub metering: Option<Loc<Duration>>,
    /// `rows_per_minute`: the plant-wide inference budget.
    pub rows_per_minute: Option<Loc<i64>>,
}

/// A `[[models]]` entry as written.
#[derive(Debug, Clone)]
pub struct ModelDecl {
    pub id: Loc<String>,
    pub path: Loc<String>,
    /// `None`: a model written before models ran; checked, never run.
    pub task: Option<Loc<Task>>,
    pub machine: Option<Loc<String>>,
    /// The names, and the span of the `machines` key.
    pub machines: Option<Loc<Vec<Loc<String>>>>,
    pub kind: Option<Loc<&'static str>>,
    /// The `kind` key, if written, even with a kind that is not known
    /// (`kind` is then `None`): the model meant to be bound.
    pub kind_span: Option<Range<usize>>,
    pub every: Option<Loc<Duration>>,
    pub input: Option<Loc<String>>,
    pub on_bad_input: Option<Loc<OnBadInput>>,
    /// Shorthand tag features (`stat = "value"`), before `features`.
    pub inputs: Vec<Loc<String>>,
    pub features: Vec<FeatureDecl>,
    /// The `features` key, if written.
    pub features_span: Option<Range<usize>>,
    /// The `inputs` key, if written.
    pub inputs_span: Option<Range<usize>>,
    pub output: OutputDecl,
    pub alarm: Option<AlarmDecl>,
    pub schedule: Option<ScheduleDecl>,
    /// `[models.optimise]`: vetting of a setpoint model's proposals.
    pub optimise: Option<OptimiseDecl>,
    pub span: Range<usize>,
}

/// `[models.schedule]` as written: demand-driven cadence and a quota.
#[derive(Debug, Clone)]
pub struct ScheduleDecl {
    pub calm_every: Option<Loc<Duration>>,
    pub busy_every: Option<Loc<Duration>>,
    pub busy_above: Option<Loc<f64>>,
    pub rows_per_minute: Option<Loc<i64>>,
    /// `apply_after`: the model's `run()` goes off the tick thread and its
    /// results apply this long after its rows were taken.
    pub apply_after: Option<Loc<Duration>>,
    pub span: Range<usize>,
}

/// A `[[models.features]]` entry as written.
#[derive(Debug, Clone)]
pub struct FeatureDecl {
    /// `None` when the entry has no source, or more than one (reported).
    pub source: Option<SourceDecl>,
    /// `None` when `stat` is invalid (reported); absent means `value`.
    pub stat: Option<Stat>,
    pub window: Option<Loc<Duration>>,
    pub lag: Option<Loc<Duration>>,
    pub line: Option<Loc<String>>,
    pub span: Range<usize>,
}

/// The one source key of a feature.
#[derive(Debug, Clone)]
pub enum SourceDecl {
    Role(Loc<String>),
    Tag(Loc<String>),
    Physics(Loc<PhysicsKind>),
}

/// `[models.output]` as written; every key optional.
#[derive(Debug, Clone, Default)]
pub struct OutputDecl {
    pub name: Option<Loc<String>>,
    /// The names, and the span of the `classes` key.
    pub classes: Option<Loc<Vec<Loc<String>>>>,
    pub threshold: Option<Loc<f64>>,
    pub unit: Option<Loc<String>>,
    /// The tags, and the span of the `setpoints` key.
    pub setpoints: Option<Loc<Vec<Loc<String>>>>,
}

/// `[models.alarm]` as written.
#[derive(Debug, Clone)]
pub struct AlarmDecl {
    pub threshold: Option<Loc<f64>>,
    pub deadband: Option<Loc<f64>>,
    pub on_delay: Option<Loc<Duration>>,
    pub off_delay: Option<Loc<Duration>>,
    pub priority: Option<Loc<Priority>>,
    pub span: Range<usize>,
}

/// Largest `rows_per_minute`: far above what one core can run, so a bigger
/// number only hides a typo.
pub const MAX_ROWS_PER_MINUTE: i64 = 100_000_000;

/// Longest `every`, `window` and `lag`: an hour of grid points per feature
/// and machine is already tens of thousands of values held per row.
pub const MAX_FEATURE_SPAN: Duration = HOUR;

pub(super) fn decode_ml(sink: &mut Sink, mut t: Table<'_, '_>) -> MlSection {
    let runtime = non_empty(sink, &mut t, "runtime");
    let metering = t.opt_duration(sink, "metering", MS, HOUR);
    let rows_per_minute = t.opt_int(sink, "rows_per_minute", 1, MAX_ROWS_PER_MINUTE);
    t.finish(sink);
    MlSection {
        runtime,
        metering,
        rows_per_minute,
    }
}

pub(super) fn decode_model(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<ModelDecl> {
    let span = t.span();
    let id = t.req_str(sink, "id");
    let path = t.req_str(sink, "path");
    let task = word(t.opt_enum(sink, "task", Task::NAMES), Task::from_name);
    let machine = t.opt_str(sink, "machine");
    let machines = t
        .opt_str_array(sink, "machines")
        .map(|m| Loc::new(m, t.key_span("machines").unwrap_or(span.clone())));
    let kind = t.opt_enum(sink, "kind", MACHINE_KINDS);
    one_binding(sink, &t);
    if let Some(m) = &machines
        && m.value.is_empty()
    {
        sink.push(
            Diagnostic::error(
                m.span.clone(),
                t.key_path("machines"),
                "must name at least one machine",
            )
            .expected("machine ids, e.g. machines = [\"infeed\", \"transfer\"]")
            .help("remove the key for a plant-level model"),
        );
    }
    let every = t.opt_duration(sink, "every", MS, MAX_FEATURE_SPAN);
    let input = non_empty(sink, &mut t, "input");
    let on_bad_input = word(
        t.opt_enum(sink, "on_bad_input", OnBadInput::NAMES),
        OnBadInput::from_name,
    );
    let inputs = t.opt_str_array(sink, "inputs").unwrap_or_default();
    let features = t
        .opt_table_array(sink, "features")
        .into_iter()
        .filter_map(|f| decode_feature(sink, f))
        .collect();
    // A task written wrong is reported above; what it would need is unknown.
    let task_value = match (&task, t.key_span("task")) {
        (None, Some(_)) => Err(()),
        (task, _) => Ok(task.as_ref().map(|t| t.value)),
    };
    let output_table = t.opt_table(sink, "output");
    let output = decode_output(sink, &t, output_table, task_value);
    let alarm = t
        .opt_table(sink, "alarm")
        .map(|a| decode_alarm(sink, a, task_value));
    let schedule = t
        .opt_table(sink, "schedule")
        .map(|s| decode_schedule(sink, s, task_value));
    let optimise = t
        .opt_table(sink, "optimise")
        .map(|o| decode_optimise(sink, o, task_value));
    if let (Some(s), Some(every)) = (&schedule, &every)
        && let Some(calm) = &s.calm_every
    {
        sink.push(
            Diagnostic::error(
                calm.span.clone(),
                t.key_path("schedule.calm_every"),
                "`calm_every` and the model's `every` both set its calm cadence",
            )
            .expected("one of `every`, `schedule.calm_every`")
            .help(format!(
                "keep one; `every` = \"{}\" is the calm cadence when `calm_every` is not written",
                humantime::format_duration(every.value)
            )),
        );
    }
    let features_span = t.key_span("features");
    let inputs_span = t.key_span("inputs");
    let kind_span = t.key_span("kind");
    t.finish(sink);
    Some(ModelDecl {
        id: id?,
        path: path?,
        task,
        machine,
        machines,
        kind,
        kind_span,
        every,
        input,
        on_bad_input,
        inputs,
        features,
        features_span,
        inputs_span,
        output,
        alarm,
        schedule,
        optimise,
        span,
    })
}

/// Longest `[models.schedule] apply_after`: a result later than a minute
/// would describe a line that has moved on.
const MAX_APPLY_AFTER: Duration = Duration::from_secs(60);

/// `[models.schedule]`: `busy_every` and `busy_above` go together, and only
/// on a model whose output is a risk or a score.
fn decode_schedule(
    sink: &mut Sink,
    mut t: Table<'_, '_>,
    task: Result<Option<Task>, ()>,
) -> ScheduleDecl {
    let calm_every = t.opt_duration(sink, "calm_every", MS, MAX_FEATURE_SPAN);
    let busy_every = t.opt_duration(sink, "busy_every", MS, MAX_FEATURE_SPAN);
    let busy_above = t.opt_f64(sink, "busy_above");
    let rows_per_minute = t.opt_int(sink, "rows_per_minute", 1, MAX_ROWS_PER_MINUTE);
    let apply_after = t.opt_duration(sink, "apply_after", MS, MAX_APPLY_AFTER);
    let (every_key, above_key) = (t.key_span("busy_every"), t.key_span("busy_above"));
    match (&every_key, &above_key) {
        (Some(_), None) => sink.push(
            Diagnostic::error(
                t.span(),
                t.key_path("busy_above"),
                "`busy_every` needs `busy_above`",
            )
            .expected(
                "the risk or score at or above which a machine is busy, e.g. busy_above = 0.3",
            ),
        ),
        (None, Some(s)) => sink.push(
            Diagnostic::error(
                s.clone(),
                t.key_path("busy_above"),
                "`busy_above` needs `busy_every`",
            )
            .expected("the cadence of a busy machine, e.g. busy_every = \"1s\""),
        ),
        _ => {}
    }
    if let (Ok(Some(task @ (Task::Rul | Task::Setpoint))), Some(s)) =
        (task, every_key.clone().or(above_key))
    {
        sink.push(
            Diagnostic::error(
                s,
                t.key_path("busy_every"),
                format!("task = \"{task}\" gives no risk or score to be busy on"),
            )
            .expected("`busy_every` and `busy_above` only with task = \"fault\" or \"anomaly\"")
            .help("keep `calm_every` (or `every`) and `rows_per_minute` for this model"),
        );
    }
    let span = t.span();
    t.finish(sink);
    ScheduleDecl {
        calm_every,
        busy_every,
        busy_above,
        rows_per_minute,
        apply_after,
        span,
    }
}

/// The enum value of a word `opt_enum` accepted.
fn word<T>(w: Option<Loc<&'static str>>, from: fn(&str) -> Option<T>) -> Option<Loc<T>> {
    let w = w?;
    from(w.value).map(|v| Loc::new(v, w.span))
}

/// An optional string that, when written, must say something.
fn non_empty(sink: &mut Sink, t: &mut Table<'_, '_>, key: &'static str) -> Option<Loc<String>> {
    let v = t.opt_str(sink, key)?;
    if v.value.trim().is_empty() {
        sink.push(
            Diagnostic::error(v.span.clone(), t.key_path(key), "must not be empty")
                .expected("a non-empty string, or no key for the default"),
        );
        return None;
    }
    Some(v)
}

/// `machine`, `machines` and `kind` are three ways to say one thing.
fn one_binding(sink: &mut Sink, t: &Table<'_, '_>) {
    let given: Vec<(&str, Range<usize>)> = ["machine", "machines", "kind"]
        .into_iter()
        .filter_map(|k| t.key_span(k).map(|s| (k, s)))
        .collect();
    if let [(first, _), rest @ ..] = given.as_slice() {
        for (key, span) in rest {
            sink.push(
                Diagnostic::error(
                    span.clone(),
                    t.key_path(key),
                    format!("`{key}` and `{first}` both bind this model"),
                )
                .expected("at most one of machine, machines, kind")
                .help("one model serves one machine, a list of machines, or every machine of a kind; keep one key"),
            );
        }
    }
}

fn decode_feature(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<FeatureDecl> {
    let span = t.span();
    let role = t.opt_str(sink, "role");
    let tag = t.opt_str(sink, "tag");
    let physics = word(
        t.opt_enum(sink, "physics", PhysicsKind::NAMES),
        PhysicsKind::from_name,
    );
    let stat = match t.key_span("stat") {
        None => Some(Stat::Value),
        Some(_) => word(t.opt_enum(sink, "stat", Stat::NAMES), Stat::from_name).map(|s| s.value),
    };
    let window = t.opt_duration(sink, "window", MS, MAX_FEATURE_SPAN);
    let lag = t.opt_duration(sink, "lag", MS, MAX_FEATURE_SPAN);
    let line = non_empty(sink, &mut t, "line");

    let written: Vec<(&str, Range<usize>)> = ["role", "tag", "physics"]
        .into_iter()
        .filter_map(|k| t.key_span(k).map(|s| (k, s)))
        .collect();
    match written.as_slice() {
        [] => sink.push(
            Diagnostic::error(span.clone(), t.key_path("role"), "feature names no source")
                .expected("exactly one of role, tag, physics")
                .help("e.g. role = \"motor_current\", tag = \"line.wip\" or physics = \"slip\""),
        ),
        [_] => {}
        [(first, _), rest @ ..] => {
            for (key, s) in rest {
                sink.push(
                    Diagnostic::error(
                        s.clone(),
                        t.key_path(key),
                        format!("`{key}` and `{first}` are both sources of this feature"),
                    )
                    .expected("exactly one of role, tag, physics")
                    .help("a feature is one column; write another [[models.features]] for the other source"),
                );
            }
        }
    }
    let source = match (written.len(), role, tag, physics) {
        (1, Some(r), None, None) => Some(SourceDecl::Role(r)),
        (1, None, Some(g), None) => Some(SourceDecl::Tag(g)),
        (1, None, None, Some(p)) => Some(SourceDecl::Physics(p)),
        _ => None,
    };

    if let Some(stat) = stat {
        stat_keys(sink, &t, stat, &window, &lag);
    }
    if let Some(l) = &line
        && t.key_span("physics").is_none()
    {
        sink.push(
            Diagnostic::error(
                l.span.clone(),
                t.key_path("line"),
                "`line` applies to physics features only",
            )
            .expected("no `line` on a role or tag feature")
            .help("a role or tag names its value already; remove `line`"),
        );
    }
    t.finish(sink);
    Some(FeatureDecl {
        source,
        stat,
        window,
        lag,
        line,
        span,
    })
}

/// `window` goes with the window stats and `lag` with `lag`, each required
/// there and refused elsewhere.
fn stat_keys(
    sink: &mut Sink,
    t: &Table<'_, '_>,
    stat: Stat,
    window: &Option<Loc<Duration>>,
    lag: &Option<Loc<Duration>>,
) {
    let window_key = t.key_span("window");
    let lag_key = t.key_span("lag");
    if stat.is_window() && window_key.is_none() {
        sink.push(
            Diagnostic::error(
                t.span(),
                t.key_path("window"),
                format!("stat = \"{stat}\" needs `window`"),
            )
            .expected("a duration, a multiple of [plant].tick, e.g. window = \"30s\""),
        );
    }
    if !stat.is_window()
        && let Some(s) = window.as_ref().map(|w| w.span.clone()).or(window_key)
    {
        sink.push(
            Diagnostic::error(
                s,
                t.key_path("window"),
                format!("stat = \"{stat}\" takes no `window`"),
            )
            .expected("`window` only with stat = mean, std, rms, min, max or slope")
            .help(if stat == Stat::Lag {
                "a lagged value reads one point: say how far back with `lag`"
            } else {
                "for a statistic over time, set `stat` (e.g. stat = \"mean\")"
            }),
        );
    }
    if stat == Stat::Lag && lag_key.is_none() {
        sink.push(
            Diagnostic::error(t.span(), t.key_path("lag"), "stat = \"lag\" needs `lag`")
                .expected("a duration, a multiple of [plant].tick, e.g. lag = \"5s\""),
        );
    }
    if stat != Stat::Lag
        && let Some(s) = lag.as_ref().map(|l| l.span.clone()).or(lag_key)
    {
        sink.push(
            Diagnostic::error(
                s,
                t.key_path("lag"),
                format!("stat = \"{stat}\" takes no `lag`"),
            )
            .expected("`lag` only with stat = \"lag\"")
            .help("for the value some time ago, write stat = \"lag\""),
        );
    }
}

/// The task that each task-specific output key belongs to.
const OUTPUT_KEYS: &[(&str, Task, &str)] = &[
    (
        "classes",
        Task::Fault,
        "class names, at least two, the first the normal class, e.g. classes = [\"normal\", \"jam\"]",
    ),
    ("threshold", Task::Anomaly, "a number"),
    ("unit", Task::Rul, "the estimate's unit, e.g. unit = \"h\""),
    (
        "setpoints",
        Task::Setpoint,
        "[[setpoints]] tags, one per output column, e.g. setpoints = [\"infeed.speed\"]",
    ),
];

fn decode_output(
    sink: &mut Sink,
    model: &Table<'_, '_>,
    t: Option<Table<'_, '_>>,
    task: Result<Option<Task>, ()>,
) -> OutputDecl {
    let (task, known) = match task {
        Ok(task) => (task, true),
        Err(()) => (None, false),
    };
    let Some(mut t) = t else {
        // The keys a task needs are missing; say so at the model, naming the
        // table they go in.
        for (key, owner, expected) in OUTPUT_KEYS {
            if task == Some(*owner) && *key != "threshold" {
                sink.push(
                    Diagnostic::error(
                        model.span(),
                        model.key_path(&format!("output.{key}")),
                        format!("task = \"{owner}\" needs `{key}` in [models.output]"),
                    )
                    .expected(*expected),
                );
            }
        }
        return OutputDecl::default();
    };
    let name = non_empty(sink, &mut t, "name");
    let list = |sink: &mut Sink, t: &mut Table<'_, '_>, key: &'static str| {
        let v = t.opt_str_array(sink, key)?;
        Some(Loc::new(v, t.key_span(key).unwrap_or(t.span())))
    };
    let classes = list(sink, &mut t, "classes");
    let threshold = t.opt_f64(sink, "threshold");
    let unit = non_empty(sink, &mut t, "unit");
    let setpoints = list(sink, &mut t, "setpoints");
    for (key, owner, expected) in OUTPUT_KEYS.iter().filter(|_| known) {
        match (t.key_span(key), task) {
            (Some(s), t_) if t_ != Some(*owner) => sink.push(
                Diagnostic::error(
                    s,
                    t.key_path(key),
                    format!("`{key}` applies to task = \"{owner}\" only"),
                )
                .expected(format!("no `{key}` for {}", task_phrase(task)))
                .help(match task {
                    None => format!("set `task = \"{owner}\"` if that is what the model does"),
                    Some(_) => format!("remove `{key}`"),
                }),
            ),
            (None, Some(t_)) if t_ == *owner && *key != "threshold" => sink.push(
                Diagnostic::error(
                    t.span(),
                    t.key_path(key),
                    format!("task = \"{owner}\" needs `{key}`"),
                )
                .expected(*expected),
            ),
            _ => {}
        }
    }
    if task == Some(Task::Fault)
        && let Some(c) = &classes
    {
        names_list(sink, &t, "classes", &c.value, "class");
        if c.value.len() < 2 {
            sink.push(
                Diagnostic::error(
                    c.span.clone(),
                    t.key_path("classes"),
                    format!(
                        "a fault model needs at least two classes, found {}",
                        c.value.len()
                    ),
                )
                .expected("the normal class first, then each fault class")
                .help("a model with one output score is an anomaly model: task = \"anomaly\""),
            );
        }
    }
    if task == Some(Task::Setpoint)
        && let Some(s) = &setpoints
    {
        names_list(sink, &t, "setpoints", &s.value, "setpoint");
        if s.value.is_empty() {
            sink.push(
                Diagnostic::error(
                    s.span.clone(),
                    t.key_path("setpoints"),
                    "must name at least one setpoint",
                )
                .expected("[[setpoints]] tags, one per output column"),
            );
        }
    }
    t.finish(sink);
    OutputDecl {
        name,
        classes,
        threshold,
        unit,
        setpoints,
    }
}

fn task_phrase(task: Option<Task>) -> String {
    match task {
        Some(t) => format!("task = \"{t}\""),
        None => "a model without `task`".into(),
    }
}

/// Each name in a list that names columns: not empty, not twice.
fn names_list(sink: &mut Sink, t: &Table<'_, '_>, key: &str, names: &[Loc<String>], what: &str) {
    for (i, n) in names.iter().enumerate() {
        let path = format!("{}[{i}]", t.key_path(key));
        if n.value.trim().is_empty() {
            sink.push(
                Diagnostic::error(
                    n.span.clone(),
                    path,
                    format!("{what} name must not be empty"),
                )
                .expected(format!("a {what} name")),
            );
        } else if names[..i].iter().any(|m| m.value == n.value) {
            sink.push(
                Diagnostic::error(
                    n.span.clone(),
                    path,
                    format!("duplicate {what} \"{}\"", n.value),
                )
                .expected(format!("each {what} once: one per output column")),
            );
        }
    }
}

fn decode_alarm(
    sink: &mut Sink,
    mut t: Table<'_, '_>,
    task: Result<Option<Task>, ()>,
) -> AlarmDecl {
    let threshold = t.opt_f64(sink, "threshold");
    let deadband = t.opt_f64(sink, "deadband");
    let on_delay = t.opt_duration(sink, "on_delay", Duration::ZERO, HOUR);
    let off_delay = t.opt_duration(sink, "off_delay", Duration::ZERO, HOUR);
    let priority = word(
        t.opt_enum(sink, "priority", Priority::NAMES),
        Priority::from_name,
    );
    // A misspelt task is reported where it is written: whether this model
    // may have an alarm is then unknown, so nothing is said about it.
    let (task, known) = match task {
        Ok(task) => (task, true),
        Err(()) => (None, false),
    };
    if known && !matches!(task, Some(Task::Fault | Task::Anomaly)) {
        let (message, help) = match task {
            Some(t) => (
                format!("task = \"{t}\" raises no alarm"),
                "remove [models.alarm]; an estimate or a proposal raises no alarm in this version",
            ),
            None => (
                "a model without `task` raises no alarm".to_string(),
                "set the model's `task`",
            ),
        };
        sink.push(
            Diagnostic::error(t.span(), t.path().to_string(), message)
                .expected("[models.alarm] only with task = \"fault\" or \"anomaly\"")
                .help(help),
        );
    }
    if task == Some(Task::Fault) {
        match &threshold {
            None if t.key_span("threshold").is_none() => sink.push(
                Diagnostic::error(
                    t.span(),
                    t.key_path("threshold"),
                    "a fault alarm needs `threshold`",
                )
                .expected(
                    "the risk, 0 to 1, at or above which the alarm raises, e.g. threshold = 0.7",
                ),
            ),
            Some(th) if !(th.value > 0.0 && th.value <= 1.0) => sink.push(
                Diagnostic::error(
                    th.span.clone(),
                    t.key_path("threshold"),
                    format!(
                        "a fault risk is a probability; threshold {} can never be met as meant",
                        th.value
                    ),
                )
                .expected("a number in (0, 1]"),
            ),
            _ => {}
        }
    }
    if let Some(d) = &deadband
        && d.value < 0.0
    {
        sink.push(
            Diagnostic::error(
                d.span.clone(),
                t.key_path("deadband"),
                format!("deadband must not be negative, found {}", d.value),
            )
            .expected("a number >= 0"),
        );
    }
    let span = t.span();
    t.finish(sink);
    AlarmDecl {
        threshold,
        deadband,
        on_delay,
        off_delay,
        priority,
        span,
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
