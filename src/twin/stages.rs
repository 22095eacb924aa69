//! The core's stages: named system sets that run in a fixed order on every
//! tick.
//!
//! ingest → quality → physics → features → inference → optimiser → guard → emit
//!
//! A stage that comes later (feature windows, ONNX inference, the setpoint
//! optimiser, the write guard) adds its systems to its set with
//! [`super::TwinCore::add_systems`]; it never edits the core's constructor.
//! Within one stage, systems run in the order they were added: each call
//! gets a slot chained after the previous one, so the order is a property
//! of the code, not of the schedule's graph sort. That keeps a replay
//! byte-identical however many stages a build adds.

use bevy_ecs::prelude::*;
use bevy_ecs::schedule::IntoScheduleConfigs;
use bevy_ecs::system::ScheduleSystem;

/// One stage of the tick, in run order (the order of [`Stage::ALL`]).
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Apply the samples whose receive time has come.
    Ingest,
    /// Quality rules: staleness and what follows from a tag's age.
    Quality,
    /// Step the line models with the tick's inputs; residuals, jams, eyes.
    Physics,
    /// Rolling windows and derived values for the models.
    Features,
    /// Model predictions.
    Inference,
    /// Setpoint proposals, vetted by the physics lookahead.
    Optimiser,
    /// The write guard: bounds, rates, modes, freshness.
    Guard,
    /// Turn the tick's changes into events, tag events before line events.
    Emit,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Ingest,
        Stage::Quality,
        Stage::Physics,
        Stage::Features,
        Stage::Inference,
        Stage::Optimiser,
        Stage::Guard,
        Stage::Emit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Ingest => "ingest",
            Stage::Quality => "quality",
            Stage::Physics => "physics",
            Stage::Features => "features",
            Stage::Inference => "inference",
            Stage::Optimiser => "optimiser",
            Stage::Guard => "guard",
            Stage::Emit => "emit",
        }
    }
}

/// The n-th group of systems added to a stage; chained after the (n-1)-th.
#[derive(SystemSet, Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Slot(Stage, u32);

/// The core's schedule with its stage sets configured, and how many slots
/// each stage has handed out.
pub(crate) struct Stages {
    pub(crate) schedule: Schedule,
    slots: [u32; Stage::ALL.len()],
}

impl Stages {
    pub(crate) fn new(mut schedule: Schedule) -> Self {
        for pair in Stage::ALL.windows(2) {
            schedule.configure_sets(pair[1].after(pair[0]));
        }
        Stages {
            schedule,
            slots: [0; Stage::ALL.len()],
        }
    }

    /// Add `systems` to `stage`, after everything added to it before.
    pub(crate) fn add<M>(
        &mut self,
        stage: Stage,
        systems: impl IntoScheduleConfigs<ScheduleSystem, M>,
    ) {
        let i = Stage::ALL
            .iter()
            .position(|s| *s == stage)
            .unwrap_or_default();
        let n = self.slots[i];
        self.slots[i] += 1;
        let slot = Slot(stage, n);
        if n == 0 {
            self.schedule.configure_sets(slot.in_set(stage));
        } else {
            self.schedule
                .configure_sets(slot.in_set(stage).after(Slot(stage, n - 1)));
        }
        self.schedule.add_systems(systems.in_set(slot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use crate::twin::{TickClock, TwinCore};
    use std::path::Path;
    use std::time::Duration;

    #[derive(Resource, Default)]
    struct Ran(Vec<&'static str>);

    fn core() -> TwinCore {
        let cfg = load_str(
            Path::new("stages.toml"),
            "[plant]\nname = \"stages\"\ntick = \"100ms\"\n",
        )
        .expect("a valid config");
        TwinCore::new(&cfg, TickClock::new(0, Duration::from_millis(100)))
    }

    fn mark(name: &'static str) -> impl FnMut(ResMut<Ran>) {
        move |mut ran: ResMut<Ran>| ran.0.push(name)
    }

    #[test]
    fn r9_stages_run_in_their_declared_order_whatever_order_systems_are_added() {
        let mut core = core();
        core.world_mut().insert_resource(Ran::default());
        // Added back to front: the stage decides, not the call order.
        for stage in Stage::ALL.iter().rev() {
            core.add_systems(*stage, mark(stage.as_str()));
        }
        core.advance();
        let ran = &core.world().resource::<Ran>().0;
        let expected: Vec<_> = Stage::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(ran, &expected);
    }

    #[test]
    fn r9_systems_within_a_stage_run_in_the_order_they_were_added() {
        let mut core = core();
        core.world_mut().insert_resource(Ran::default());
        for name in ["a", "b", "c", "d", "e", "f"] {
            core.add_systems(Stage::Inference, mark(name));
        }
        core.add_systems(Stage::Features, mark("feature"));
        core.add_systems(Stage::Guard, mark("guard"));
        for _ in 0..3 {
            core.advance();
        }
        let ran = &core.world().resource::<Ran>().0;
        let one = ["feature", "a", "b", "c", "d", "e", "f", "guard"];
        assert_eq!(ran, &[one, one, one].concat());
    }

    #[test]
    fn r9_a_later_stage_sees_this_ticks_ingest_before_emit_turns_it_into_events() {
        use crate::twin::components::{Tag, TagValue};
        use crate::twin::{Outbox, Sample, Value};
        /// (value of the tag, events in the outbox) as seen from Guard.
        #[derive(Resource, Default)]
        struct Seen(Vec<(Option<f64>, usize)>);
        let cfg = load_str(
            Path::new("stages.toml"),
            r#"
[plant]
name = "stages"
tick = "100ms"

[[sources.modbus]]
name = "plc"
address = "127.0.0.1:502"
registers = [{ tag = "belt.speed", table = "input", address = 0 }]
"#,
        )
        .expect("a valid config");
        let mut core = TwinCore::new(&cfg, TickClock::new(0, Duration::from_millis(100)));
        core.world_mut().insert_resource(Seen::default());
        core.add_systems(
            Stage::Guard,
            |outbox: Res<Outbox>, tags: Query<(&Tag, &TagValue)>, mut seen: ResMut<Seen>| {
                let v = tags
                    .iter()
                    .find_map(|(_, v)| v.0.as_ref().map(Value::as_f64));
                seen.0.push((v, outbox.0.len()));
            },
        );
        let tag = cfg.tags.id("belt.speed").expect("the tag");
        core.push(Sample::good(tag, Value::Num(1.5), 50_000_000, 50_000_000));
        core.advance();
        let events = core.drain_events();
        // At Guard the sample is applied and not yet emitted; after the tick
        // its event is out.
        assert_eq!(core.world().resource::<Seen>().0, vec![(Some(1.5), 0)]);
        assert_eq!(events.len(), 1);
    }
}
