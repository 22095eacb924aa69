//! The guard's stage in the core (`Stage::Guard`): installs [`GuardState`]
//! and runs it once per tick after the optimiser, on the tags as the tick
//! left them; its events go out in `Stage::Emit`, after the optimiser's.

use bevy_ecs::prelude::*;

use super::decide::{TagSnap, View};
use super::state::{GuardState, KnobSetup};
use crate::config::LoadedConfig;
use crate::config::guard::Mode;
use crate::config::ml::Input;
use crate::ml::optimise::OptimiserProposals;
use crate::twin::components::{SourceTime, TagIndex, TagQuality, TagValue};
use crate::twin::{Lines, Outbox, Stage, TickClock, TwinCore, TwinEvent};

/// Adds the guard to `core` when some `[[setpoints]]` entry is not `off`;
/// a plant whose setpoints are all off gets no stage, no events. Call it
/// after the ML stage (`ml::setup`), before the first tick.
pub fn install(core: &mut TwinCore, cfg: &LoadedConfig) {
    if cfg.guard.setpoints.iter().all(|s| s.mode == Mode::Off) {
        return;
    }
    let start = core.clock().tick();
    let mut st = GuardState::new(&cfg.guard, &cfg.tags, start);
    let world = core.world_mut();
    let line_ids: Vec<String> = world
        .get_resource::<Lines>()
        .map(|l| l.0.iter().map(|s| s.id.to_string()).collect())
        .unwrap_or_default();
    for (i, sp) in cfg.guard.setpoints.iter().enumerate() {
        let Some((li, line, knob)) = crate::config::knob::find_knob(&cfg.config.lines, &sp.name)
        else {
            continue;
        };
        let Some(line_index) = line_ids.iter().position(|l| *l == line.id.value) else {
            continue;
        };
        // The limits of the optimiser on that line, if there is one: the
        // guard's forecast then judges as the optimiser's did.
        let opt = cfg
            .ml
            .models
            .iter()
            .filter_map(|m| m.optimise.as_ref())
            .find(|o| o.line == li);
        st.knobs[i] = Some(KnobSetup {
            line: line_index,
            knob,
            horizon: opt.map_or(crate::config::optimise::HORIZON, |o| o.horizon),
            max_jam_risk: opt.map_or(crate::config::optimise::MAX_JAM_RISK, |o| o.max_jam_risk),
            arrival_interval: line.product.as_ref().and_then(|p| p.spawn_interval),
        });
    }
    for m in &cfg.ml.models {
        if let Some(o) = &m.optimise {
            st.max_jam_risk.insert(m.id.value.clone(), o.max_jam_risk);
        }
        for row in &m.rows {
            let tags = row
                .inputs
                .iter()
                .filter_map(|i| match i {
                    Input::Tag(t) => cfg.tags.id(t),
                    // The line's state: the optimiser vets only from a line
                    // the twin is sure of.
                    Input::Physics { .. } => None,
                })
                .collect();
            st.model_inputs
                .insert((m.id.value.clone(), row.machine.clone()), tags);
        }
    }
    world.insert_resource(st);
    world.init_resource::<OptimiserProposals>();
    core.add_systems(Stage::Guard, guard);
    core.add_systems(Stage::Emit, emit);
}

/// The guard's state, for the driver and the control paths; `None` when
/// the guard is not installed.
pub fn state_mut(core: &mut TwinCore) -> Option<Mut<'_, GuardState>> {
    core.world_mut().get_resource_mut::<GuardState>()
}

pub fn state(core: &TwinCore) -> Option<&GuardState> {
    core.world().get_resource::<GuardState>()
}

fn guard(
    clock: Res<TickClock>,
    index: Res<TagIndex>,
    tags: Query<(&TagValue, &TagQuality, &SourceTime)>,
    lines: Option<Res<Lines>>,
    mut proposals: ResMut<OptimiserProposals>,
    mut st: ResMut<GuardState>,
    mut snaps: Local<Vec<TagSnap>>,
) {
    if proposals.0.is_empty() && !st.busy() {
        return;
    }
    snaps.clear();
    snaps.extend(index.0.iter().map(|e| match tags.get(*e) {
        Ok((v, q, s)) => TagSnap {
            value: v.0.clone(),
            quality: q.quality,
            source_time_ns: s.0,
        },
        Err(_) => TagSnap::default(),
    }));
    let st = &mut *st;
    let table = std::sync::Arc::clone(&st.table);
    let view = View {
        now_ns: clock.now_ns(),
        tick: clock.tick(),
        period_ns: clock.period_ns(),
        tags: &snaps,
        table: &table,
    };
    st.step(&view, lines.as_deref(), &mut proposals.0);
}

fn emit(mut st: ResMut<GuardState>, mut outbox: ResMut<Outbox>) {
    if st.events.is_empty() {
        return;
    }
    outbox.0.extend(
        st.events
            .drain(..)
            .map(|e| TwinEvent::Setpoint(Box::new(e))),
    );
}
