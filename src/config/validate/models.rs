//! Models: unique ids, bindings, features and outputs that resolve against
//! the plant, durations in whole ticks; and, for each model with a task,
//! the resolved [`Model`] the ML stage runs.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Cx, Refs};
use crate::config::decode::{Loc, Sink};
use crate::config::diagnostics::{Diagnostic, Severity, did_you_mean};
use crate::config::ml::{
    ALARM_PRIORITY, Alarm, Busy, Feature, FeatureSource, Input, METERING, MlConfig, Model,
    ON_BAD_INPUT, Output, Row, Schedule, Stat, Task,
};
use crate::config::model::{FeatureDecl, ModelDecl, SourceDecl};
use crate::config::{Line, PlantConfig};

/// What every model is checked against, built once.
struct Plant<'c> {
    cfg: &'c PlantConfig,
    /// (machine, role) → tag, from `[machines.tags]` and MQTT captures.
    roles: BTreeMap<(&'c str, &'c str), &'c str>,
    /// Machine id → the lines that list it, in file order.
    lines_of: BTreeMap<&'c str, Vec<&'c Line>>,
    tick: Duration,
    /// False when `[plant].tick` itself is in error: a multiple of a tick
    /// the integrator did not write would only mislead.
    tick_ok: bool,
    base_dir: PathBuf,
}

pub(super) fn check(sink: &mut Sink, cx: &Cx<'_>, cfg: &PlantConfig, refs: &Refs<'_>) -> MlConfig {
    let mut roles = BTreeMap::new();
    for def in refs.tags.iter() {
        if let (Some(m), Some(r)) = (&def.machine, &def.role) {
            roles.insert((m.as_str(), r.as_str()), def.name.as_str());
        }
    }
    let mut lines_of: BTreeMap<&str, Vec<&Line>> = BTreeMap::new();
    for line in &cfg.lines {
        for m in &line.machines {
            let on = lines_of.entry(m.value.as_str()).or_default();
            if !on.iter().any(|l| l.id.value == line.id.value) {
                on.push(line);
            }
        }
    }
    let plant = Plant {
        cfg,
        roles,
        lines_of,
        tick: cfg.plant.tick,
        tick_ok: !sink
            .diags
            .iter()
            .any(|d| d.path == "plant.tick" && d.severity == Severity::Error),
        base_dir: cx
            .file
            .path()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
    };
    let runtime = cfg
        .ml
        .runtime
        .as_ref()
        .map(|r| Loc::new(plant.resolve(&r.value), r.span.clone()));

    let mut model_ids = BTreeMap::new();
    let mut models = Vec::new();
    for (i, model) in cfg.models.iter().enumerate() {
        cx.dup(
            sink,
            &mut model_ids,
            "model id",
            format!("models[{i}].id"),
            &model.id,
        );
        let before = errors(sink);
        let resolved = plant.model(sink, cx, refs, i, model);
        if errors(sink) == before {
            models.extend(resolved);
        }
    }
    let metering = cfg.ml.metering.as_ref();
    let metering_ticks = match metering {
        Some(d) => plant.ticks(sink, "ml.metering".into(), d).unwrap_or(0),
        None => u32::try_from(METERING.as_nanos() / plant.tick.as_nanos().max(1))
            .unwrap_or(u32::MAX)
            .max(1),
    };
    MlConfig {
        runtime,
        metering: plant.tick * metering_ticks,
        metering_ticks,
        rows_per_minute: cfg
            .ml
            .rows_per_minute
            .as_ref()
            .and_then(|r| u32::try_from(r.value).ok()),
        models,
        bundled: BTreeMap::new(),
    }
}

fn errors(sink: &Sink) -> usize {
    sink.diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count()
}

impl<'c> Plant<'c> {
    /// A file named in the config, relative to the config's folder.
    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    /// Checks one model; its resolved form when it has a task (kept only if
    /// the checks added no error).
    fn model(
        &self,
        sink: &mut Sink,
        cx: &Cx<'_>,
        refs: &Refs<'_>,
        i: usize,
        m: &ModelDecl,
    ) -> Option<Model> {
        let at = |key: &str| format!("models[{i}].{key}");
        let binding = self.binding(sink, cx, refs, i, m);

        let mut features = Vec::new();
        for (j, tag) in m.inputs.iter().enumerate() {
            refs.tag(sink, at(&format!("inputs[{j}]")), tag);
            features.push(Feature {
                source: FeatureSource::Tag(tag.value.clone()),
                stat: Stat::Value,
                window_ticks: 0,
                lag_ticks: 0,
                span: tag.span.clone(),
            });
        }
        let mut columns: Vec<Vec<Input>> = m
            .inputs
            .iter()
            .map(|t| vec![Input::Tag(t.value.clone()); binding.len().max(1)])
            .collect();
        // A binding that names only machines that are not there was
        // reported as such; its role and physics features would each add
        // "the model is bound to none", which points the user the wrong way.
        let binding_failed = binding.is_empty()
            && (m.machine.is_some()
                || m.kind_span.is_some()
                || m.machines.as_ref().is_some_and(|l| !l.value.is_empty()));
        for (j, f) in m.features.iter().enumerate() {
            if binding_failed
                && matches!(
                    f.source.as_ref(),
                    Some(SourceDecl::Role(_) | SourceDecl::Physics(_))
                )
            {
                continue;
            }
            let path = at(&format!("features[{j}]"));
            let feature = self.feature(sink, refs, &path, &binding, f);
            if let Some((feature, inputs)) = feature {
                features.push(feature);
                columns.push(inputs);
            }
        }
        let calm_every = m.schedule.as_ref().and_then(|s| s.calm_every.as_ref());
        let every_ticks = match (&m.every, calm_every) {
            (Some(e), _) => self.ticks(sink, at("every"), e),
            (None, Some(c)) => self.ticks(sink, at("schedule.calm_every"), c),
            (None, None) => Some(1),
        };
        let schedule = self.schedule(sink, &at, m);
        let setpoints = m.output.setpoints.as_ref();
        let written = setpoints.map_or(&[][..], |s| s.value.as_slice());
        for (j, sp) in written.iter().enumerate() {
            // A repeat is reported as such when decoded.
            if !written[..j].iter().any(|x| x.value == sp.value) {
                self.setpoint(sink, at(&format!("output.setpoints[{j}]")), sp);
            }
        }
        let optimise = super::optimise::resolve(
            sink,
            self.cfg,
            i,
            m,
            &|sink, path, d| self.ticks(sink, path, d),
            self.tick,
        );
        let alarm = m.alarm.as_ref().map(|a| {
            let delay = |d: &Option<Loc<Duration>>| d.as_ref().map_or(Duration::ZERO, |d| d.value);
            let (on, off) = (delay(&a.on_delay), delay(&a.off_delay));
            Alarm {
                threshold: a.threshold.clone().or_else(|| m.output.threshold.clone()),
                deadband: a.deadband.as_ref().map_or(0.0, |d| d.value),
                on_delay: on,
                off_delay: off,
                on_delay_ticks: self.ticks_up(on),
                off_delay_ticks: self.ticks_up(off),
                priority: a.priority.as_ref().map_or(ALARM_PRIORITY, |p| p.value),
            }
        });

        let task = m.task.as_ref()?;
        if m.inputs.is_empty() && m.features.is_empty() {
            sink.push(
                Diagnostic::error(m.span.clone(), at("features"), "model has no features")
                    .expected("`inputs` or at least one [[models.features]]")
                    .help(
                        "a model reads a vector of features; list them in its input's column order",
                    ),
            );
            return None;
        }
        let rows = rows(&binding, &columns);
        let list = |l: Option<&Loc<Vec<Loc<String>>>>| match l {
            Some(l) => Loc::new(
                l.value.iter().map(|s| s.value.clone()).collect(),
                l.span.clone(),
            ),
            None => Loc::new(Vec::new(), m.span.clone()),
        };
        let every_ticks = every_ticks?;
        let schedule = schedule?;
        let optimise = optimise?;
        if let Some(b) = &schedule.busy
            && b.every_ticks > every_ticks
        {
            let span = m.schedule.as_ref().and_then(|s| s.busy_every.as_ref());
            sink.push(
                Diagnostic::error(
                    span.map_or(m.span.clone(), |s| s.span.clone()),
                    at("schedule.busy_every"),
                    format!(
                        "a busy machine would run less often ({}) than a calm one ({})",
                        humantime::format_duration(b.every),
                        humantime::format_duration(self.tick * every_ticks)
                    ),
                )
                .expected("busy_every at most the calm cadence (`every` or `calm_every`)"),
            );
            return None;
        }
        Some(Model {
            id: m.id.clone(),
            path: Loc::new(self.resolve(&m.path.value), m.path.span.clone()),
            task: task.value,
            binding,
            every: self.tick * every_ticks,
            every_ticks,
            input: m.input.clone(),
            on_bad_input: m.on_bad_input.as_ref().map_or(ON_BAD_INPUT, |o| o.value),
            features,
            features_span: m
                .features_span
                .clone()
                .or_else(|| m.inputs_span.clone())
                .unwrap_or_else(|| m.span.clone()),
            rows,
            output: Output {
                name: m.output.name.clone(),
                classes: list(m.output.classes.as_ref()),
                threshold: m.output.threshold.clone(),
                unit: m.output.unit.clone(),
                setpoints: list(setpoints),
            },
            alarm,
            schedule,
            optimise,
            span: m.span.clone(),
        })
    }

    /// `[models.schedule]` in ticks; `None` when a duration is not a whole
    /// number of ticks (reported).
    fn schedule(
        &self,
        sink: &mut Sink,
        at: &dyn Fn(&str) -> String,
        m: &ModelDecl,
    ) -> Option<Schedule> {
        let Some(s) = &m.schedule else {
            return Some(Schedule::default());
        };
        // Busy keys on a task without a risk or score are reported when
        // decoded; they resolve to nothing.
        let scored = matches!(
            m.task.as_ref().map(|t| t.value),
            Some(Task::Fault | Task::Anomaly)
        );
        let busy = match (&s.busy_every, &s.busy_above) {
            (Some(every), Some(above)) if scored => Some(Busy {
                every: every.value,
                every_ticks: self.ticks(sink, at("schedule.busy_every"), every)?,
                above: above.value,
            }),
            _ => None,
        };
        let apply_after_ticks = match &s.apply_after {
            Some(d) => self.ticks(sink, at("schedule.apply_after"), d)?,
            None => 0,
        };
        Some(Schedule {
            busy,
            apply_after_ticks,
            rows_per_minute: s
                .rows_per_minute
                .as_ref()
                .and_then(|r| u32::try_from(r.value).ok()),
        })
    }

    /// The machines a model serves, in the order written (`kind`: file
    /// order of the machines).
    fn binding(
        &self,
        sink: &mut Sink,
        cx: &Cx<'_>,
        refs: &Refs<'_>,
        i: usize,
        m: &ModelDecl,
    ) -> Vec<String> {
        if let Some(id) = &m.machine {
            return match refs.machine(sink, format!("models[{i}].machine"), id) {
                true => vec![id.value.clone()],
                false => Vec::new(),
            };
        }
        if let Some(list) = &m.machines {
            let mut seen = BTreeMap::new();
            let mut out = Vec::new();
            for (j, id) in list.value.iter().enumerate() {
                let path = format!("models[{i}].machines[{j}]");
                if refs.machine(sink, path.clone(), id) {
                    let before = seen.len();
                    cx.dup(sink, &mut seen, "machine in this model", path, id);
                    if seen.len() > before {
                        out.push(id.value.clone());
                    }
                }
            }
            return out;
        }
        let Some(kind) = &m.kind else {
            return Vec::new();
        };
        let mut out: Vec<String> = Vec::new();
        for machine in &self.cfg.machines {
            if machine.kind.value == kind.value && !out.contains(&machine.id.value) {
                out.push(machine.id.value.clone());
            }
        }
        if out.is_empty() {
            let mut kinds: Vec<&str> = self.cfg.machines.iter().map(|m| m.kind.value).collect();
            kinds.sort_unstable();
            kinds.dedup();
            sink.push(
                Diagnostic::error(
                    kind.span.clone(),
                    format!("models[{i}].kind"),
                    format!("kind \"{}\" binds no machine", kind.value),
                )
                .expected("the kind of at least one [[machines]] entry")
                .help(match kinds.as_slice() {
                    [] => "this plant has no [[machines]]; bind the model once there are some, or make it plant-level".to_string(),
                    k => format!("this plant's machines are of kind {}", k.join(", ")),
                }),
            );
        }
        out
    }

    /// One feature: its column's input for each row, if it resolves.
    fn feature(
        &self,
        sink: &mut Sink,
        refs: &Refs<'_>,
        path: &str,
        binding: &[String],
        f: &FeatureDecl,
    ) -> Option<(Feature, Vec<Input>)> {
        let window_ticks = match &f.window {
            Some(w) => self.ticks(sink, format!("{path}.window"), w),
            None => Some(0),
        };
        let lag_ticks = match &f.lag {
            Some(l) => self.ticks(sink, format!("{path}.lag"), l),
            None => Some(0),
        };
        let (source, inputs) = match f.source.as_ref()? {
            SourceDecl::Tag(tag) => {
                refs.tag(sink, format!("{path}.tag"), tag);
                let n = binding.len().max(1);
                (
                    FeatureSource::Tag(tag.value.clone()),
                    vec![Input::Tag(tag.value.clone()); n],
                )
            }
            SourceDecl::Role(role) => (
                FeatureSource::Role(role.value.clone()),
                self.role(sink, &format!("{path}.role"), binding, role)?,
            ),
            SourceDecl::Physics(kind) => {
                let line = f.line.as_ref();
                let lines = self.physics_lines(sink, path, binding, kind.span.clone(), line)?;
                (
                    FeatureSource::Physics {
                        kind: kind.value,
                        line: line.map(|l| l.value.clone()),
                    },
                    lines
                        .into_iter()
                        .map(|line| Input::Physics {
                            kind: kind.value,
                            line,
                        })
                        .collect(),
                )
            }
        };
        Some((
            Feature {
                source,
                stat: f.stat?,
                window_ticks: window_ticks?,
                lag_ticks: lag_ticks?,
                span: f.span.clone(),
            },
            inputs,
        ))
    }

    /// The tag a role names on each bound machine; one error naming the
    /// machines that lack it.
    fn role(
        &self,
        sink: &mut Sink,
        path: &str,
        binding: &[String],
        role: &Loc<String>,
    ) -> Option<Vec<Input>> {
        if binding.is_empty() {
            sink.push(
                Diagnostic::error(
                    role.span.clone(),
                    path,
                    format!(
                        "role \"{}\" needs a machine, but the model is bound to none",
                        role.value
                    ),
                )
                .expected("a role feature on a model with `machine`, `machines` or `kind`")
                .help("a plant-level model reads tags: write `tag = \"...\"` instead"),
            );
            return None;
        }
        let mut lacking = Vec::new();
        let mut inputs = Vec::new();
        for m in binding {
            match self.roles.get(&(m.as_str(), role.value.as_str())) {
                Some(tag) => inputs.push(Input::Tag(tag.to_string())),
                None => lacking.push(m.as_str()),
            }
        }
        let Some(first) = lacking.first() else {
            return Some(inputs);
        };
        let first_roles = || {
            self.roles
                .keys()
                .filter(|(m, _)| m == first)
                .map(|(_, r)| *r)
        };
        let named = match lacking.as_slice() {
            [a, b] => format!("machines \"{a}\" and \"{b}\""),
            [a, b, rest @ ..] => format!("machines \"{a}\", \"{b}\" and {} more", rest.len()),
            _ => format!("machine \"{first}\""),
        };
        let help = did_you_mean(&role.value, first_roles()).unwrap_or_else(|| {
            let known: Vec<&str> = first_roles().collect();
            match known.as_slice() {
                [] => format!("machine \"{first}\" binds no tags; give it [machines.tags]"),
                k => format!("machine \"{first}\" has roles {}", k.join(", ")),
            }
        });
        sink.push(
            Diagnostic::error(
                role.span.clone(),
                path,
                format!("role \"{}\" is missing on {named}", role.value),
            )
            .expected("a role every bound machine has (a key of its [machines.tags], or an MQTT `{machine}` capture)")
            .help(help),
        );
        None
    }

    /// The line each row's physics feature reads: the feature's `line`, or
    /// the line that lists the row's machine.
    fn physics_lines(
        &self,
        sink: &mut Sink,
        path: &str,
        binding: &[String],
        kind_span: Range<usize>,
        line: Option<&Loc<String>>,
    ) -> Option<Vec<String>> {
        let line_path = format!("{path}.line");
        if let Some(l) = line {
            let Some(found) = self.cfg.lines.iter().find(|x| x.id.value == l.value) else {
                sink.push(
                    Diagnostic::error(
                        l.span.clone(),
                        line_path,
                        format!("unknown line \"{}\"", l.value),
                    )
                    .expected("the id of a [[lines]] entry")
                    .maybe_help(did_you_mean(
                        &l.value,
                        self.cfg.lines.iter().map(|x| x.id.value.as_str()),
                    )),
                );
                return None;
            };
            self.has_geometry(sink, &line_path, l.span.clone(), found)?;
            return Some(vec![l.value.clone(); binding.len().max(1)]);
        }
        if binding.is_empty() {
            sink.push(
                Diagnostic::error(
                    kind_span,
                    line_path,
                    "a plant-level physics feature needs `line`",
                )
                .expected("line = the id of a [[lines]] entry with geometry")
                .maybe_help(
                    self.cfg
                        .lines
                        .first()
                        .map(|l| format!("e.g. line = \"{}\"", l.id.value)),
                ),
            );
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for m in binding {
            match self.lines_of.get(m.as_str()).map(Vec::as_slice) {
                Some([one]) => {
                    ok &= self
                        .has_geometry(sink, &line_path, kind_span.clone(), one)
                        .is_some();
                    out.push(one.id.value.clone());
                }
                Some(many @ [_, _, ..]) => {
                    let ids: Vec<&str> = many.iter().map(|l| l.id.value.as_str()).collect();
                    sink.push(
                        Diagnostic::error(
                            kind_span.clone(),
                            line_path.clone(),
                            format!(
                                "machine \"{m}\" is on lines {}: which one's physics?",
                                ids.join(", ")
                            ),
                        )
                        .expected("`line` on the feature when a bound machine is on several lines")
                        .help(format!("write line = \"{}\"", ids[0])),
                    );
                    ok = false;
                }
                _ => {
                    sink.push(
                        Diagnostic::error(
                            kind_span.clone(),
                            line_path.clone(),
                            format!("machine \"{m}\" is on no line, so it has no physics"),
                        )
                        .expected("each bound machine listed in a [[lines]] entry's `machines`, or `line` on the feature")
                        .help(format!("add \"{m}\" to its line's `machines`")),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn has_geometry(
        &self,
        sink: &mut Sink,
        path: &str,
        span: Range<usize>,
        line: &Line,
    ) -> Option<()> {
        if !line.conveyors.is_empty() {
            return Some(());
        }
        sink.push(
            Diagnostic::error(
                span,
                path,
                format!(
                    "line \"{}\" has no geometry, so the physics twin computes nothing for it",
                    line.id.value
                ),
            )
            .expected("a line with [[lines.conveyors]]")
            .help("describe the line's conveyors (docs/physics.md), or read a tag instead"),
        );
        None
    }

    fn setpoint(&self, sink: &mut Sink, path: String, tag: &Loc<String>) {
        let tags = || self.cfg.setpoints.iter().map(|s| s.tag.value.as_str());
        if tags().any(|t| t == tag.value) {
            return;
        }
        sink.push(
            Diagnostic::error(
                tag.span.clone(),
                path,
                format!("tag \"{}\" is not a [[setpoints]] tag", tag.value),
            )
            .expected("the tag of a [[setpoints]] entry: a proposal is bounded by its min, max and max_step")
            .maybe_help(did_you_mean(&tag.value, tags())),
        );
    }

    /// `d` as a whole, positive number of ticks.
    fn ticks(&self, sink: &mut Sink, path: String, d: &Loc<Duration>) -> Option<u32> {
        let (n, tick) = (d.value.as_nanos(), self.tick.as_nanos().max(1));
        if n % tick == 0 && n > 0 {
            return u32::try_from(n / tick).ok();
        }
        if self.tick_ok {
            let show = |k: u128| humantime::format_duration(self.tick * k as u32).to_string();
            let below = n / tick;
            let hint = match below {
                0 => format!("e.g. \"{}\"", show(1)),
                b => format!("e.g. \"{}\" or \"{}\"", show(b), show(b + 1)),
            };
            sink.push(
                Diagnostic::error(
                    d.span.clone(),
                    path,
                    format!(
                        "{} is not a whole number of ticks ({})",
                        humantime::format_duration(d.value),
                        humantime::format_duration(self.tick)
                    ),
                )
                .expected("a positive multiple of [plant].tick: features are sampled once per tick")
                .help(hint),
            );
        }
        None
    }

    /// `d` in ticks, rounded up: a delay is at least as long as written.
    fn ticks_up(&self, d: Duration) -> u32 {
        let tick = self.tick.as_nanos().max(1);
        u32::try_from(d.as_nanos().div_ceil(tick)).unwrap_or(u32::MAX)
    }
}

/// Columns (one input per row each) turned into rows.
fn rows(binding: &[String], columns: &[Vec<Input>]) -> Vec<Row> {
    let machines: Vec<Option<String>> = match binding {
        [] => vec![None],
        b => b.iter().cloned().map(Some).collect(),
    };
    machines
        .into_iter()
        .enumerate()
        .map(|(r, machine)| Row {
            machine,
            inputs: columns.iter().filter_map(|c| c.get(r).cloned()).collect(),
        })
        .collect()
}
