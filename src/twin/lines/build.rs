//! Building a line's core state from its config: the model, the tags it
//! reads, its eyes in flow order, and the stretches between them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use super::eyes::{EyeCondition, EyeState};
use super::{LineState, LineStatus, Lines, ns};
use crate::config::LoadedConfig;
use crate::physics::{BeltDrive, LineModel};
use crate::twin::components::TagIndex;
use crate::twin::residuals::EyeTrack;
use crate::twin::slip::Stretch;

/// Builds the state of every line with conveyor geometry; lines without it
/// are not modelled and never produce line events.
pub fn build(cfg: &LoadedConfig, index: &TagIndex, period_ns: i64) -> Lines {
    let lines = cfg
        .config
        .lines
        .iter()
        .filter(|l| !l.conveyors.is_empty())
        .map(|line| {
            // The core spawns in tick time (see the module docs), so the
            // model's own step-counted spawner stays off.
            let mut geometry = line.clone();
            let spawn_interval = geometry
                .product
                .as_mut()
                .and_then(|p| p.spawn_interval.take());
            let tag_entity = |name: &str| {
                cfg.tags
                    .id(name)
                    .and_then(|id| index.0.get(id.index()).copied())
            };
            // With an infeed counter the twin follows the real arrivals and
            // the nominal interval is only for the lookahead.
            let counter_tag = line
                .product
                .as_ref()
                .and_then(|p| p.infeed_counter_tag.as_ref())
                .and_then(|t| tag_entity(&t.value));
            let spawn_interval = if counter_tag.is_some() {
                None
            } else {
                spawn_interval
            };
            let drive = BeltDrive::live(line);
            let (substeps, dt_ns) = substeps(period_ns, drive);
            let model = LineModel::with_drive(&geometry, Duration::from_nanos(dt_ns as u64), drive);
            let tolerance_ns = ns(line.residual_tolerance());
            let late_ns = ns(line.late_window());
            let jam_after_ns = ns(line.jam_after());
            let conveyor_index = |id: &str| line.conveyors.iter().position(|c| c.id.value == id);
            // The model keeps the eyes on known conveyors, in config order.
            let eyes: Vec<EyeState> = line
                .photo_eyes
                .iter()
                .filter_map(|e| {
                    Some(EyeState {
                        id: Arc::from(e.id.value.as_str()),
                        tag: Arc::from(e.tag.value.as_str()),
                        conveyor: conveyor_index(&e.conveyor.value)?,
                        position: e.position.value,
                        entity: tag_entity(&e.tag.value),
                        track: EyeTrack::new(tolerance_ns, late_ns),
                        expected_blocked: false,
                        level: None,
                        level_since: 0,
                        expected_rises_since_level: 0,
                        expected_total: 0,
                        measured_total: 0,
                        changed: false,
                        snap_next: (0, 0),
                        snap_prev: (0, 0),
                        between_next: 0,
                        condition: EyeCondition::Ok,
                        jammed: false,
                        held_until: None,
                    })
                })
                .collect();
            let mut flow: Vec<usize> = (0..eyes.len()).collect();
            flow.sort_by(|&a, &b| {
                (eyes[a].conveyor, eyes[a].position)
                    .partial_cmp(&(eyes[b].conveyor, eyes[b].position))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            let product_length = line.product.as_ref().map_or(0.0, |p| p.length);
            let mut stretches = Vec::new();
            for (fi, &x) in flow.iter().enumerate() {
                let (c, to_m) = (eyes[x].conveyor, eyes[x].position);
                let from = match fi.checked_sub(1).map(|p| flow[p]) {
                    Some(w) if eyes[w].conveyor == c => Some((Some(w), eyes[w].position)),
                    None if c == 0 && counter_tag.is_some() => Some((None, product_length / 2.0)),
                    _ => None,
                };
                if let Some((from, from_m)) = from
                    && to_m > from_m
                {
                    stretches.push(Stretch::new(c, from, x, to_m - from_m));
                }
            }
            let speed_tags = model
                .conveyors()
                .iter()
                .map(|c| {
                    let id = cfg.tags.id(&c.speed_tag)?;
                    index.0.get(id.index()).copied()
                })
                .collect();
            let cycle_tags = model
                .stations()
                .iter()
                .map(|s| {
                    let tag = s.cycle_tag.as_deref()?;
                    Some(
                        cfg.tags
                            .id(tag)
                            .and_then(|id| index.0.get(id.index()).copied()),
                    )
                })
                .collect();
            // By config order, which is the model's station order.
            let n_stations = line.stations.len();
            let rate_tags = line
                .stations
                .iter()
                .map(|s| {
                    let tag = s.rate_tag.as_ref()?;
                    cfg.tags
                        .id(&tag.value)
                        .and_then(|id| index.0.get(id.index()).copied())
                })
                .collect();
            let coil_tags = model
                .pushers()
                .iter()
                .map(|p| tag_entity(&p.coil_tag))
                .chain(model.diverters().iter().map(|d| tag_entity(&d.coil_tag)))
                .collect();
            LineState {
                id: Arc::from(line.id.value.as_str()),
                model,
                speed_tags,
                cycle_tags,
                rate_tags,
                station_setpoints: vec![None; n_stations],
                coil_tags,
                substeps,
                dt_ns,
                elapsed_ns: 0,
                spawn_interval_ns: spawn_interval
                    .map(|i| i64::try_from(i.as_nanos()).unwrap_or(i64::MAX).max(1)),
                next_spawn_ns: 0,
                departures: VecDeque::new(),
                status: LineStatus::default(),
                uncertain_since_report: None,
                eyes,
                flow,
                counter_tag,
                counter_last: None,
                arrivals: VecDeque::new(),
                counter_good_since: None,
                arrivals_until_ns: 0,
                stretches,
                conveyor_length: line
                    .conveyors
                    .iter()
                    .map(|c| c.segments.iter().map(|s| s.length.value).sum())
                    .collect(),
                model_slip: vec![0.0; line.conveyors.len()],
                refit_until: vec![None; line.conveyors.len()],
                steady_for: vec![0; line.conveyors.len()],
                areas: Vec::new(),
                product_length,
                product_tag: line.product_tag.as_ref().and_then(|t| tag_entity(&t.value)),
                type_keys: line
                    .product_types()
                    .iter()
                    .map(|t| (Arc::from(t.id.value.as_str()), t.code.value))
                    .collect(),
                pending: Vec::new(),
                mismatches: Vec::new(),
                jam_walls: Vec::new(),
                caught_up: crate::physics::Finished::default(),
                jam_after_ns,
                stuck_off_after: line.stuck_off_after(),
                named_zones: line
                    .zones
                    .iter()
                    .filter_map(|z| {
                        Some((
                            Arc::from(z.id.value.as_str()),
                            conveyor_index(&z.conveyor.value)?,
                            z.from.value,
                            z.to.value,
                        ))
                    })
                    .collect(),
            }
        })
        .collect();
    Lines(lines)
}

/// The tick's equal model steps on `drive`: as few as keep each within the
/// drive's longest step, and their length in ns (see the module docs of
/// `lines`, "Lock-step").
pub(super) fn substeps(period_ns: i64, drive: BeltDrive) -> (u32, i64) {
    let period_ns = period_ns.max(1);
    let max_dt = (drive.max_dt().as_nanos() as i64).max(1);
    let substeps = u32::try_from((period_ns + max_dt - 1) / max_dt)
        .unwrap_or(u32::MAX)
        .max(1);
    (substeps, (period_ns / i64::from(substeps)).max(1))
}
