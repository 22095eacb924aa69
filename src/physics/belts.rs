//! Belts: each conveyor segment a fixed box whose top is the belt, and the
//! contact hook that gives a product touching it the belt's surface
//! velocity (rapier's conveyor idiom), with the guide rails' pull back to
//! the centre line, a fired diverter's steer and a stopped accumulation
//! zone's standstill. Belts never move, so the broad phase never changes.

use rapier3d::prelude::{
    ActiveHooks, ColliderBuilder, ColliderHandle, ContactModificationContext, PhysicsHooks,
    PhysicsWorld, RigidBodyHandle, Vector,
};

use super::convert::{self, Frame};
use super::diverter::DiverterWindow;
use super::place::BeltPlace;
use super::{BELT_THICKNESS, LineModel, Obstacle, PhysicsError, zones};
use crate::config::Conveyor;
use crate::config::layout::Layout;

/// One conveyor as the model knows it.
#[derive(Debug, Clone)]
pub struct ConveyorModel {
    pub id: String,
    /// The tag whose measured value drives [`LineModel::set_belt_speed`].
    pub speed_tag: String,
    /// World position of the start of the belt surface, on its centre line.
    pub(super) start: Vector,
    /// World direction of the first segment.
    pub(super) first_dir: Vector,
    /// World position of the end of the belt surface, on its centre line.
    pub(super) end: Vector,
    /// World direction of the last segment.
    pub(super) last_dir: Vector,
    /// Half the belt's width.
    pub(super) half_width: f32,
}

/// The belt motion: a belt collider's `user_data` is `segment index + 1`
/// (0 means "not a belt"), which finds the segment's direction and its
/// conveyor's current speed here, without a map lookup in the hot path.
#[derive(Debug, Default, Clone)]
pub struct BeltHooks {
    /// Per belt segment: (conveyor index, unit world direction).
    pub(super) segments: Vec<(usize, Vector, Vector)>,
    /// Per conveyor: the belt *surface* speed in m/s, that is the drive
    /// speed set from outside before each step times `1 - slip`.
    pub(super) speeds: Vec<f32>,
    /// The diverters' windows (see [`DiverterModel`]).
    pub(super) diverters: Vec<DiverterWindow>,
    /// Per belt segment: where it starts along its conveyor, metres.
    pub(super) seg_offsets: Vec<f32>,
    /// Per conveyor: its zone control, for a zero-pressure accumulation
    /// conveyor (`zones.rs`).
    pub(super) zones: Vec<Option<zones::ZoneControl>>,
}

/// How fast (1/s) the belt's guide rails steer a product back to the
/// centre line: a product 10 cm off centre is given 0.2 m/s sideways.
const GUIDE_GAIN: f32 = 2.0;
/// The most sideways speed the guides give, m/s.
const GUIDE_MAX: f32 = 0.25;

impl BeltHooks {
    /// The surface velocity segment `user_data` gives a product at `pos`:
    /// along the segment at the belt's speed, plus a sideways pull towards
    /// the centre line. The pull stands in for guide rails: without it a
    /// queue pushed from behind squeezes products off the belt's sides,
    /// which rails prevent on a real line, and at a corner it turns the
    /// product onto the next segment's centre line as a curved rail does.
    pub(super) fn belt_velocity(&self, user_data: u128, pos: Option<Vector>) -> Option<Vector> {
        let i = usize::try_from(user_data).ok()?.checked_sub(1)?;
        let (conveyor, dir, start) = self.segments.get(i)?;
        let along = *dir * self.speeds[*conveyor];
        let Some(pos) = pos else {
            return Some(along);
        };
        // A fired diverter's window steers towards its branch, with no
        // guide (the rail is open there).
        if let Some(w) = self
            .diverters
            .iter()
            .find(|w| w.fired && w.conveyor == *conveyor && w.holds(pos))
        {
            return Some(w.out * self.speeds[*conveyor].abs());
        }
        let rel = pos - *start;
        // A stopped accumulation zone does not drive; its guides still hold.
        let along = match self.zones.get(*conveyor).and_then(Option::as_ref) {
            Some(z) if z.stopped[z.zone_at(self.seg_offsets[i] + rel.dot(*dir))] => Vector::ZERO,
            _ => along,
        };
        let lateral = rel - *dir * rel.dot(*dir) - Vector::Y * rel.y;
        let pull = -lateral * GUIDE_GAIN;
        let len = pull.length();
        let pull = if len > GUIDE_MAX {
            pull * (GUIDE_MAX / len)
        } else {
            pull
        };
        Some(along + pull)
    }
}

impl PhysicsHooks for BeltHooks {
    fn modify_solver_contacts(&self, cx: &mut ContactModificationContext) {
        // `tangent_velocity` is a *relative* surface velocity between the
        // pair's two sides, so its sign depends on which side the belt is:
        // `+v` with the belt first, `-v` with it second (both measured, see
        // `belt_pushes_a_product_inserted_before_it`).
        let pos =
            |h: Option<RigidBodyHandle>| h.and_then(|h| cx.bodies.get(h)).map(|b| b.translation());
        let belt1 = self.belt_velocity(cx.colliders[cx.collider1].user_data, pos(cx.rigid_body2));
        let belt2 = self.belt_velocity(cx.colliders[cx.collider2].user_data, pos(cx.rigid_body1));
        let v = match (belt1, belt2) {
            (Some(v), None) => v,
            (None, Some(v)) => -v,
            // Two belts never touch (both fixed); a non-belt pair never
            // gets here because only belts activate the hook.
            _ => return,
        };
        if let Some(rigid) = cx.rigid_mut() {
            for c in rigid.solver_contacts.iter_mut() {
                c.tangent_velocity = v;
            }
        }
    }
}

impl LineModel {
    /// The conveyors, in config order; index them for
    /// [`LineModel::set_belt_speed_at`].
    pub fn conveyors(&self) -> &[ConveyorModel] {
        &self.conveyors
    }

    /// Sets a belt's speed in m/s (negative runs it backwards) for the next
    /// steps.
    pub fn set_belt_speed(&mut self, conveyor: &str, speed: f32) -> Result<(), PhysicsError> {
        let i = self
            .conveyors
            .iter()
            .position(|c| c.id == conveyor)
            .ok_or_else(|| PhysicsError::UnknownConveyor(conveyor.to_string()))?;
        self.set_belt_speed_at(i, speed)
    }

    /// [`LineModel::set_belt_speed`] by index, for the per-tick hot path.
    pub fn set_belt_speed_at(&mut self, conveyor: usize, speed: f32) -> Result<(), PhysicsError> {
        if !speed.is_finite() {
            return Err(PhysicsError::BadSpeed(speed));
        }
        let drive = self
            .drive
            .get_mut(conveyor)
            .ok_or_else(|| PhysicsError::UnknownConveyor(format!("#{conveyor}")))?;
        drive.0 = speed;
        self.hooks.speeds[conveyor] = speed * (1.0 - drive.1);
        Ok(())
    }

    /// The drive speed last set on a conveyor, m/s.
    pub fn belt_speed_at(&self, conveyor: usize) -> Option<f32> {
        self.drive.get(conveyor).map(|d| d.0)
    }

    /// Makes a belt's surface run `slip` (0 to 1) slower than its drive:
    /// the speed tag still reads the drive speed, the products see less.
    /// The virtual plant injects belt slip with this; the twin sets it to
    /// the slip it has estimated once the estimate is steady (src/twin/slip.rs),
    /// so a diagnosed slip stops raising residuals.
    pub fn set_belt_slip_at(&mut self, conveyor: usize, slip: f32) -> Result<(), PhysicsError> {
        if !(0.0..=1.0).contains(&slip) {
            return Err(PhysicsError::BadSlip(slip));
        }
        let drive = self
            .drive
            .get_mut(conveyor)
            .ok_or_else(|| PhysicsError::UnknownConveyor(format!("#{conveyor}")))?;
        drive.1 = slip;
        self.hooks.speeds[conveyor] = drive.0 * (1.0 - slip);
        Ok(())
    }

    /// Puts a fixed wall across a belt at `position` metres along it, as
    /// high as a product: products pile up against it, a jam.
    pub fn block_at(&mut self, conveyor: usize, position: f64) -> Result<Obstacle, PhysicsError> {
        let c = self
            .geometry
            .get(conveyor)
            .ok_or_else(|| PhysicsError::UnknownConveyor(format!("#{conveyor}")))?;
        let place = BeltPlace::new(&self.frame, c, position);
        // As tall as the tallest type, to stop any of them.
        let h = self.envelope.as_ref().map_or(0.2, |p| p.height) as f32;
        // 1 mm above the surface, so the wall never touches the belt.
        let wall = ColliderBuilder::cuboid(0.01, h / 2.0, place.half_width)
            .translation(place.point + Vector::Y * (h / 2.0 + 0.001))
            .rotation(convert::heading_rotation(place.heading))
            .build();
        Ok(Obstacle(self.world.colliders.insert(wall)))
    }

    /// Takes an obstacle away again (the jam is cleared).
    pub fn unblock(&mut self, obstacle: Obstacle) {
        self.world.remove_collider(obstacle.0);
    }

    /// Number of belt segment colliders (for tests and snapshots).
    pub fn belt_count(&self) -> usize {
        self.belt_colliders.len()
    }
}

/// The belts as [`lay`] puts them into the world.
pub(super) struct LaidBelts {
    pub(super) hooks: BeltHooks,
    pub(super) conveyors: Vec<ConveyorModel>,
    /// One collider per segment, in conveyor and segment order.
    pub(super) colliders: Vec<ColliderHandle>,
    /// Per segment: its conveyor, its start as a place, its length.
    pub(super) segment_places: Vec<(usize, BeltPlace, f32)>,
}

/// Inserts one fixed box per piece of each conveyor's layout (curves as
/// chords), each asking the hooks for its belt's motion.
pub(super) fn lay(
    world: &mut PhysicsWorld,
    frame: &Frame,
    conveyors: &[Conveyor],
    layouts: &[Layout],
) -> LaidBelts {
    let mut hooks = BeltHooks::default();
    let mut models = Vec::new();
    let mut colliders = Vec::new();
    let mut segment_places = Vec::new();
    for (ci, (c, layout)) in conveyors.iter().zip(layouts).enumerate() {
        let half_w = layout.width / 2.0;
        let height = layout.height;
        let first_heading = layout.pieces.first().map_or(0.0, |p| p.heading);
        let last_heading = layout.pieces.last().map_or(0.0, |p| p.heading);
        let mut offset = 0.0_f32;
        for piece in &layout.pieces {
            hooks.seg_offsets.push(offset);
            offset += piece.length as f32;
            let len = piece.length;
            let [x, y] = piece.start;
            let mid = [x + piece.dir[0] * len / 2.0, y + piece.dir[1] * len / 2.0];
            let start = frame.to_world(piece.start, height);
            hooks
                .segments
                .push((ci, convert::heading_dir(piece.heading), start));
            segment_places.push((
                ci,
                BeltPlace {
                    point: start,
                    dir: convert::heading_dir(piece.heading),
                    half_width: half_w as f32,
                    heading: piece.heading,
                },
                len as f32,
            ));
            let collider = ColliderBuilder::cuboid(
                (len / 2.0) as f32,
                (BELT_THICKNESS / 2.0) as f32,
                half_w as f32,
            )
            .translation(frame.to_world(mid, height - BELT_THICKNESS / 2.0))
            .rotation(convert::heading_rotation(piece.heading))
            .active_hooks(ActiveHooks::MODIFY_SOLVER_CONTACTS)
            .user_data(hooks.segments.len() as u128)
            .build();
            colliders.push(world.colliders.insert(collider));
        }
        hooks.speeds.push(0.0);
        hooks.zones.push(
            c.accumulation_zone
                .as_ref()
                .map(|z| zones::ZoneControl::new(z.value as f32, offset)),
        );
        models.push(ConveyorModel {
            id: c.id.value.clone(),
            speed_tag: c.speed_tag.value.clone(),
            start: frame.to_world(layout.start, height),
            first_dir: convert::heading_dir(first_heading),
            end: frame.to_world(layout.end, height),
            last_dir: convert::heading_dir(last_heading),
            half_width: half_w as f32,
        });
    }
    LaidBelts {
        hooks,
        conveyors: models,
        colliders,
        segment_places,
    }
}
