//! The physics twin of a production line (issue 4, in progress).
//!
//! Data flow: a line's geometry from the config (`[[lines.conveyors]]`,
//! `[lines.product]`) becomes a [`LineModel`]: a rapier world in which each
//! conveyor segment is a fixed box whose top is the belt, and each product a
//! dynamic box. The caller sets each belt's speed before a step (from the
//! belt's *measured* speed tag, not its setpoint, so the twin predicts what
//! the plant actually does) and reads product positions after it.
//!
//! Like the rest of the core this does no I/O and reads no clock: time only
//! moves by [`LineModel::step`], a fixed `dt` each, so the same inputs give
//! bit-identical positions.
//!
//! Belts do not move: a belt is a fixed collider whose contacts ask the
//! solver for a tangential velocity (rapier's conveyor idiom, see
//! [`BeltHooks`]). That keeps the belt geometry static, which is cheaper and
//! keeps the broad phase untouched from step to step.

pub mod convert;

use std::time::Duration;

use rapier3d::prelude::{
    ActiveHooks, ColliderBuilder, ColliderHandle, ContactModificationContext, PhysicsHooks,
    PhysicsWorld, RigidBodyBuilder, RigidBodyHandle, Vector,
};

use crate::config::{Line, Product};
pub use convert::PlanPoint;

/// Thickness of a belt's box under its surface. Only needs to be thick
/// enough that a product cannot tunnel through it in one step.
const BELT_THICKNESS: f64 = 0.05;

/// Products are dropped this far above the belt so they never start
/// interpenetrating it.
const DROP_GAP: f64 = 0.002;

/// Errors from driving a line model.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PhysicsError {
    #[error("line has no conveyor \"{0}\"")]
    UnknownConveyor(String),
    #[error("line has no conveyors to place a product on")]
    NoConveyor,
    #[error("line has no `product` to spawn")]
    NoProduct,
    #[error("belt speed {0} is not a finite number")]
    BadSpeed(f32),
}

/// Products removed by [`LineModel::remove_finished`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Left the end of the last conveyor.
    pub out: usize,
    /// Fell off the line.
    pub lost: usize,
}

/// One conveyor as the model knows it.
#[derive(Debug, Clone)]
pub struct ConveyorModel {
    pub id: String,
    /// The tag whose measured value drives [`LineModel::set_belt_speed`].
    pub speed_tag: String,
    /// World position of the start of the belt surface, on its centre line.
    start: Vector,
    /// World direction of the first segment.
    first_dir: Vector,
    /// World position of the end of the belt surface, on its centre line.
    end: Vector,
    /// World direction of the last segment.
    last_dir: Vector,
    /// Half the belt's width.
    half_width: f32,
}

/// The belt motion: a belt collider's `user_data` is `segment index + 1`
/// (0 means "not a belt"), which finds the segment's direction and its
/// conveyor's current speed here, without a map lookup in the hot path.
#[derive(Debug, Default)]
pub struct BeltHooks {
    /// Per belt segment: (conveyor index, unit world direction).
    segments: Vec<(usize, Vector)>,
    /// Per conveyor: belt speed in m/s, set from outside before each step.
    speeds: Vec<f32>,
}

impl BeltHooks {
    fn belt_velocity(&self, user_data: u128) -> Option<Vector> {
        let i = usize::try_from(user_data).ok()?.checked_sub(1)?;
        let (conveyor, dir) = self.segments.get(i)?;
        Some(*dir * self.speeds[*conveyor])
    }
}

impl PhysicsHooks for BeltHooks {
    fn modify_solver_contacts(&self, cx: &mut ContactModificationContext) {
        // `tangent_velocity` is a *relative* surface velocity between the
        // pair's two sides, so its sign depends on which side the belt is:
        // `+v` with the belt first, `-v` with it second (both measured, see
        // `belt_pushes_a_product_inserted_before_it`).
        let belt1 = self.belt_velocity(cx.colliders[cx.collider1].user_data);
        let belt2 = self.belt_velocity(cx.colliders[cx.collider2].user_data);
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

/// A line's physics: its belts, its products and the fixed step.
pub struct LineModel {
    world: PhysicsWorld,
    hooks: BeltHooks,
    conveyors: Vec<ConveyorModel>,
    product: Option<Product>,
    products: Vec<RigidBodyHandle>,
    belt_colliders: Vec<ColliderHandle>,
    dt: Duration,
    /// Steps taken; the model's only clock.
    steps: u64,
    /// Steps between automatic spawns, from `product.spawn_interval`.
    spawn_every: Option<u64>,
}

impl LineModel {
    /// Builds the model of `line`, to be stepped by `dt` at a time.
    pub fn new(line: &Line, dt: Duration) -> Self {
        let mut world = PhysicsWorld::new();
        world.integration_parameters.dt = dt.as_secs_f32();
        let mut hooks = BeltHooks::default();
        let mut conveyors = Vec::new();
        let mut belt_colliders = Vec::new();
        for (ci, c) in line.conveyors.iter().enumerate() {
            let half_w = c.width.value / 2.0;
            let (mut x, mut y) = (c.origin[0], c.origin[1]);
            let first_heading = c.segments.first().map_or(0.0, |s| s.heading);
            let last_heading = c.segments.last().map_or(0.0, |s| s.heading);
            for seg in &c.segments {
                let len = seg.length.value;
                let (sin, cos) = seg.heading.to_radians().sin_cos();
                let (mx, my) = (x + cos * len / 2.0, y + sin * len / 2.0);
                hooks.segments.push((ci, convert::heading_dir(seg.heading)));
                let collider = ColliderBuilder::cuboid(
                    (len / 2.0) as f32,
                    (BELT_THICKNESS / 2.0) as f32,
                    half_w as f32,
                )
                .translation(convert::to_world(mx, my, c.height - BELT_THICKNESS / 2.0))
                .rotation(convert::heading_rotation(seg.heading))
                .active_hooks(ActiveHooks::MODIFY_SOLVER_CONTACTS)
                .user_data(hooks.segments.len() as u128)
                .build();
                belt_colliders.push(world.colliders.insert(collider));
                (x, y) = (x + cos * len, y + sin * len);
            }
            hooks.speeds.push(0.0);
            conveyors.push(ConveyorModel {
                id: c.id.value.clone(),
                speed_tag: c.speed_tag.value.clone(),
                start: convert::to_world(c.origin[0], c.origin[1], c.height),
                first_dir: convert::heading_dir(first_heading),
                end: convert::to_world(x, y, c.height),
                last_dir: convert::heading_dir(last_heading),
                half_width: half_w as f32,
            });
        }
        let dt_nanos = dt.as_nanos().max(1);
        let spawn_every = line
            .product
            .as_ref()
            .and_then(|p| p.spawn_interval)
            .map(|i| u64::try_from((i.as_nanos() / dt_nanos).max(1)).unwrap_or(u64::MAX));
        LineModel {
            world,
            hooks,
            conveyors,
            product: line.product.clone(),
            products: Vec::new(),
            belt_colliders,
            dt,
            steps: 0,
            spawn_every,
        }
    }

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
        let slot = self
            .hooks
            .speeds
            .get_mut(conveyor)
            .ok_or_else(|| PhysicsError::UnknownConveyor(format!("#{conveyor}")))?;
        *slot = speed;
        Ok(())
    }

    /// Puts a product at the start of the first conveyor: its back edge on
    /// the belt's start, resting on the surface, aligned with the belt.
    pub fn spawn_product(&mut self) -> Result<RigidBodyHandle, PhysicsError> {
        let p = self.product.as_ref().ok_or(PhysicsError::NoProduct)?;
        let c = self.conveyors.first().ok_or(PhysicsError::NoConveyor)?;
        let up = Vector::Y * (p.height / 2.0 + DROP_GAP) as f32;
        let center = c.start + c.first_dir * (p.length / 2.0) as f32 + up;
        let heading = (-c.first_dir.z).atan2(c.first_dir.x);
        let body = RigidBodyBuilder::dynamic()
            .translation(center)
            .rotation(Vector::Y * heading)
            // A product waiting on a stopped belt must wake up when the belt
            // starts; a sleeping body would not see the new contact velocity.
            .can_sleep(false);
        let volume = p.length * p.width * p.height;
        let collider = ColliderBuilder::cuboid(
            (p.length / 2.0) as f32,
            (p.height / 2.0) as f32,
            (p.width / 2.0) as f32,
        )
        .density((p.mass / volume) as f32)
        .friction(p.friction as f32);
        let (handle, _) = self.world.insert(body, collider);
        self.products.push(handle);
        Ok(handle)
    }

    /// Advances the model by one fixed `dt`, spawning a product first when
    /// the spawn interval says so.
    pub fn step(&mut self) -> Result<(), PhysicsError> {
        if let Some(every) = self.spawn_every
            && self.steps.is_multiple_of(every)
        {
            self.spawn_product()?;
        }
        self.world.step_with_events(&self.hooks, &());
        self.steps += 1;
        Ok(())
    }

    /// Simulated time so far: steps × dt.
    pub fn elapsed(&self) -> Duration {
        let nanos = self.dt.as_nanos().saturating_mul(u128::from(self.steps));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Every product's centre, in spawn order, in plan coordinates.
    pub fn product_positions(&self) -> Vec<PlanPoint> {
        self.products
            .iter()
            .map(|h| convert::to_plan(self.world.bodies[*h].translation()))
            .collect()
    }

    /// Whether a new product fits at the infeed: the newest product on the
    /// line (the one nearest the start, as products leave in spawn order)
    /// has moved at least one product length past the spawn spot. An infeed
    /// cannot push a product into one that is still standing there, so the
    /// caller skips a spawn that comes due while this is false.
    pub fn infeed_clear(&self) -> bool {
        let (Some(p), Some(c), Some(h)) = (
            self.product.as_ref(),
            self.conveyors.first(),
            self.products.last(),
        ) else {
            return true;
        };
        let along = (self.world.bodies[*h].translation() - c.start).dot(c.first_dir);
        // Spawned with its centre at L/2; clear once its back edge is past
        // L plus the drop gap.
        along >= (1.5 * p.length + DROP_GAP) as f32
    }

    /// Removes the products that are done with the line and says how many:
    /// `out` crossed the end of the last conveyor (their centre is past its
    /// end, within the belt's width), `lost` fell below the floor (off a
    /// side, a corner, or the end of a conveyor that is not the last).
    /// Without this a running line's world would grow without bound.
    pub fn remove_finished(&mut self) -> Finished {
        let mut done = Finished::default();
        let Some(last) = self.conveyors.last() else {
            return done;
        };
        let (end, dir, half_width) = (last.end, last.last_dir, last.half_width);
        let reach = self.product.as_ref().map_or(1.0, |p| p.length.max(p.width)) as f32;
        let world = &mut self.world;
        self.products.retain(|h| {
            let pos = world.bodies[*h].translation();
            let rel = pos - end;
            let along = rel.dot(dir);
            let lateral = (rel - dir * along - Vector::Y * rel.y).length();
            // `along < reach` keeps a U-shaped line's upstream belt, which
            // may lie beyond the end's plane, from counting as departed.
            let out = along > 0.0 && along < reach && lateral <= half_width + reach;
            let lost = pos.y < 0.0;
            if !(out || lost) {
                return true;
            }
            if out {
                done.out += 1;
            } else {
                done.lost += 1;
            }
            world.remove_body(*h);
            false
        });
        done
    }

    /// Products on the line now.
    pub fn product_count(&self) -> usize {
        self.products.len()
    }

    /// Number of belt segment colliders (for tests and snapshots).
    pub fn belt_count(&self) -> usize {
        self.belt_colliders.len()
    }
}

#[cfg(test)]
mod tests;
