//! `[models.optimise]`: every proposed tag is a `[[setpoints]]` tag (checked
//! with the model's outputs) that turns a knob of the physics model, all on
//! one line; `apply_after` is whole ticks.

use std::time::Duration;

use crate::config::PlantConfig;
use crate::config::decode::{Loc, Sink};
use crate::config::diagnostics::{Diagnostic, did_you_mean};
use crate::config::knob::{find_knob, knob_names};
use crate::config::model::ModelDecl;
use crate::config::optimise::{
    APPLY_AFTER, ENERGY_WEIGHT, HORIZON, MAX_JAM_RISK, MIN_GAIN, NEIGHBOURS, Optimise, Variable,
};

/// Turns a duration into whole ticks, reporting one that is not.
pub(super) type Ticks<'a> = &'a dyn Fn(&mut Sink, String, &Loc<Duration>) -> Option<u32>;

/// The resolved `[models.optimise]` of model `i`, if it has one and it
/// resolves (what does not is reported).
pub(super) fn resolve(
    sink: &mut Sink,
    cfg: &PlantConfig,
    i: usize,
    m: &ModelDecl,
    ticks: Ticks<'_>,
    tick: Duration,
) -> Option<Option<Optimise>> {
    let Some(o) = &m.optimise else {
        return Some(None);
    };
    let at = |key: &str| format!("models[{i}].{key}");
    let apply_after_ticks = match &o.apply_after {
        Some(a) => ticks(sink, at("optimise.apply_after"), a),
        None => Some(
            u32::try_from(APPLY_AFTER.as_nanos().div_ceil(tick.as_nanos().max(1)))
                .unwrap_or(u32::MAX)
                .max(1),
        ),
    };
    let written = m.output.setpoints.as_ref();
    let tags = written.map_or(&[][..], |s| s.value.as_slice());
    let mut variables = Vec::new();
    let mut line: Option<(usize, &str)> = None;
    let mut ok = true;
    let proposed = tags
        .iter()
        .enumerate()
        .map(|(j, t)| (at(&format!("output.setpoints[{j}]")), t, true));
    let searched = o
        .search
        .iter()
        .enumerate()
        .map(|(j, t)| (at(&format!("optimise.search[{j}]")), t, false));
    for (path, tag, of_model) in proposed.chain(searched) {
        let Some(sp) = cfg.setpoints.iter().find(|s| s.tag.value == tag.value) else {
            // An output column's tag is reported with the model's outputs.
            if !of_model {
                sink.push(
                    Diagnostic::error(
                        tag.span.clone(),
                        path,
                        format!("tag \"{}\" has no [[setpoints]] entry", tag.value),
                    )
                    .expected("a [[setpoints]] tag: its bounds and max_step limit the search")
                    .help(
                        did_you_mean(
                            &tag.value,
                            cfg.setpoints.iter().map(|s| s.tag.value.as_str()),
                        )
                        .unwrap_or_else(|| {
                            "add a [[setpoints]] entry for it (docs/guard.md)".to_string()
                        }),
                    ),
                );
            }
            ok = false;
            continue;
        };
        if !of_model
            && (tags.iter().any(|t| t.value == tag.value)
                || variables.iter().any(|v: &Variable| v.tag == tag.value))
        {
            sink.push(
                Diagnostic::error(
                    tag.span.clone(),
                    path,
                    format!("tag \"{}\" is already a decision variable", tag.value),
                )
                .expected("`search` lists setpoints the model does not propose, each once")
                .help("remove it from `search`"),
            );
            ok = false;
            continue;
        }
        let Some((li, l, knob)) = find_knob(&cfg.lines, &tag.value) else {
            let tagged: Vec<String> = cfg
                .lines
                .iter()
                .filter(|l| !l.conveyors.is_empty())
                .flat_map(knob_names)
                .filter(|n| !n.contains(':'))
                .collect();
            sink.push(
                Diagnostic::error(
                    tag.span.clone(),
                    path,
                    format!(
                        "tag \"{}\" turns no knob of the physics model, so no forecast can vet it",
                        tag.value
                    ),
                )
                .expected("a conveyor's `speed_tag` (m/s) or a station's `cycle_time_tag` (s) on a line with geometry")
                .help(
                    did_you_mean(&tag.value, tagged.iter().map(String::as_str)).unwrap_or_else(
                        || match tagged.as_slice() {
                            [] => "this plant has no line with [[lines.conveyors]]; describe one (docs/physics.md), or remove [models.optimise]".to_string(),
                            k => format!("the knobs with a tag are {}; or remove [models.optimise] to only report the model's values", k.join(", ")),
                        },
                    ),
                ),
            );
            ok = false;
            continue;
        };
        match line {
            Some((first, id)) if first != li => {
                sink.push(
                    Diagnostic::error(
                        tag.span.clone(),
                        path,
                        format!(
                            "tag \"{}\" is on line \"{}\", the model's first setpoint on line \"{id}\"",
                            tag.value, l.id.value
                        ),
                    )
                    .expected("every proposed setpoint on one line: one forecast vets them together")
                    .help("use one setpoint model per line"),
                );
                ok = false;
                continue;
            }
            Some(_) => {}
            None => line = Some((li, l.id.value.as_str())),
        }
        variables.push(Variable {
            tag: tag.value.clone(),
            knob,
            min: sp.min.value,
            max: sp.max.value,
            max_step: sp.max_step.as_ref().map(|s| s.value),
        });
    }
    let apply_after_ticks = apply_after_ticks?;
    let (line, line_id) = line?;
    if !ok {
        return None;
    }
    let value = |v: &Option<Loc<f64>>, default: f64| v.as_ref().map_or(default, |v| v.value);
    Some(Some(Optimise {
        horizon: o.horizon.as_ref().map_or(HORIZON, |h| h.value),
        apply_after: tick * apply_after_ticks,
        apply_after_ticks,
        neighbours: o
            .neighbours
            .as_ref()
            .and_then(|n| u32::try_from(n.value).ok())
            .unwrap_or(NEIGHBOURS),
        max_jam_risk: value(&o.max_jam_risk, MAX_JAM_RISK),
        energy_weight: value(&o.energy_weight, ENERGY_WEIGHT),
        min_gain: value(&o.min_gain, MIN_GAIN),
        line,
        line_id: line_id.to_string(),
        variables,
        model_columns: tags.len(),
    }))
}
