//! The physics twin of a production line: belts, products, stations and
//! photo-eyes in rapier (see docs/physics.md).
//!
//! Data flow: a line's geometry from the config (`[[lines.conveyors]]`,
//! `[lines.product]` or `[[lines.products]]`) becomes a [`LineModel`]: a
//! rapier world in which each conveyor segment is a fixed box whose top is
//! the belt, and each product a dynamic box of the type that ran when it
//! was spawned. The caller sets each belt's speed before a step (from the
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
//! keeps the broad phase untouched from step to step. Those contacts are
//! the reference; the live model and the lookahead run the belts as the
//! twin's own drive instead, with the belts' colliders off ([`BeltDrive`],
//! `drive.rs`).
//!
//! Stations hold a product by turning its body kinematic (zero velocity)
//! for the cycle and back to dynamic on release: a kinematic body has no
//! contact with the fixed belt, so the belt stops pushing it, and it is an
//! immovable wall for the products queueing behind it, which the belt keeps
//! pushing against it. That is one state switch per product and station,
//! with no per-contact bookkeeping in the hooks, and it is exact: a held
//! product does not creep. Photo-eyes are sensor colliders across the belt;
//! after each step each says whether a product intersects it (see
//! [`PhotoEyeModel`]). Reject pushers are kinematic paddles beside a belt
//! that stroke across it while their PLC coil is on (see [`PusherModel`]).
//! Diverters steer products off a belt onto a branch conveyor while their
//! coil is on, through the belt's contact velocity (see [`DiverterModel`]).

mod belts;
mod build;
pub mod convert;
mod diverter;
mod drive;
mod eye;
pub mod lookahead;
mod place;
mod products;
mod pusher;
pub mod snapshot;
mod station;
mod step;
mod zones;

use std::time::Duration;

use rapier3d::prelude::{
    ColliderHandle, CollisionPipeline, PhysicsPipeline, PhysicsWorld, RigidBodyHandle,
};

use crate::config::Product;
use crate::config::layout::Layout;
pub use belts::{BeltHooks, ConveyorModel};
use convert::Frame;
pub use convert::PlanPoint;
pub use diverter::DiverterModel;
pub use drive::{ANALYTICAL_DT, BeltDrive, CONTACTS_DT};
pub use eye::PhotoEyeModel;
use place::BeltPlace;
pub use products::BodySize;
use products::body_size;
pub use pusher::{PUSHER_CLEARANCE, PUSHER_STROKE_SPEED, PusherModel};
pub use station::StationModel;

/// Thickness of a belt's box under its surface. Only needs to be thick
/// enough that a product cannot tunnel through it in one step.
const BELT_THICKNESS: f64 = 0.05;

/// Largest rounding of a product's edges, metres.
const PRODUCT_EDGE_RADIUS: f64 = 0.004;

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
    #[error("belt slip {0} is not in [0, 1]")]
    BadSlip(f32),
}

/// A fixed obstacle put across a belt by [`LineModel::block_at`] (a jammed
/// product, a fallen guide rail): the fault the virtual plant injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Obstacle(ColliderHandle);

/// Products removed by [`LineModel::remove_finished`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// Left the end of the last conveyor.
    pub out: usize,
    /// Fell off the line, other than off a pusher.
    pub lost: usize,
    /// Pushed off the belt by a pusher (see [`PusherModel::pushed`]).
    pub pushed: usize,
    /// Left the end of a diverter's branch conveyor (see
    /// [`DiverterModel::diverted`]).
    pub diverted: usize,
}

/// A line's physics: its belts, its products and the fixed step.
///
/// `Clone` gives an independent copy that steps exactly as the original
/// would (the what-if lookahead runs on such copies): every piece of solver
/// state, warm-start impulses included, lives in the cloned sets; only the
/// pipelines' scratch buffers are made afresh.
pub struct LineModel {
    world: PhysicsWorld,
    hooks: BeltHooks,
    conveyors: Vec<ConveyorModel>,
    /// Every product type, in config order, each with the line's arrival
    /// keys (see [`Line::product`]); empty without a product.
    types: Vec<Product>,
    /// The type new products are spawned as: an index into `types`.
    active: usize,
    /// The largest length, width and height over the types: what sizes the
    /// fixed things every product must fit (station catch windows and
    /// gates, pushers' paddles, diverters' windows, walls, the outfeed
    /// reach). Products already on the line keep their own size in their
    /// collider, which is what the gate and the lookahead's follower gap
    /// read ([`body_size`]).
    envelope: Option<Product>,
    products: Vec<RigidBodyHandle>,
    belt_colliders: Vec<ColliderHandle>,
    dt: Duration,
    /// Steps taken, for the model's own spawner.
    steps: u64,
    /// Simulated time, the sum of every step's `dt`: the model's only
    /// clock (stations time their cycles on it, so `dt` may change between
    /// steps, as the lookahead does).
    time_ns: u128,
    /// Steps between automatic spawns, from `product.spawn_interval`.
    spawn_every: Option<u64>,
    stations: Vec<StationModel>,
    photo_eyes: Vec<PhotoEyeModel>,
    pushers: Vec<PusherModel>,
    /// Products that a pusher put wholly off the belt, with that pusher's
    /// index, until [`LineModel::remove_finished`] removes them. A `Vec`,
    /// not a map: it holds the few products in the air at a time, and its
    /// order is the order they went over the edge.
    pushed_off: Vec<(RigidBodyHandle, usize)>,
    diverters: Vec<DiverterModel>,
    /// Products that were in a fired diverter's window, with that
    /// diverter's index, until [`LineModel::remove_finished`] removes them.
    diverted_by: Vec<(RigidBodyHandle, usize)>,
    /// The conveyor whose end is the line's main outfeed (`Finished::out`):
    /// the last one that is no diverter's branch.
    main_out: usize,
    /// The conveyors whose end is a diverter's outfeed, without repeats.
    branch_outs: Vec<usize>,
    /// Each conveyor laid out by the one layout walk (curves as chords),
    /// in plan, to place things along a belt.
    geometry: Vec<Layout>,
    /// The line's local frame: the world is plan less its origin (see
    /// [`convert`]).
    frame: Frame,
    /// Per conveyor: the drive speed last set, and the slip fraction.
    drive: Vec<(f32, f32)>,
    /// Per belt segment: its conveyor, its start as a place, its length.
    segment_places: Vec<(usize, BeltPlace, f32)>,
    /// How the belts move products (see [`BeltDrive`]).
    belt_drive: BeltDrive,
    /// The last segment of each outfeed conveyor, for the analytical drive.
    outfeed_segments: Vec<usize>,
}

impl Clone for LineModel {
    fn clone(&self) -> Self {
        let w = &self.world;
        let world = PhysicsWorld {
            gravity: w.gravity,
            integration_parameters: w.integration_parameters,
            physics_pipeline: PhysicsPipeline::new(),
            collision_pipeline: CollisionPipeline::new(),
            islands: w.islands.clone(),
            broad_phase: w.broad_phase.clone(),
            narrow_phase: w.narrow_phase.clone(),
            bodies: w.bodies.clone(),
            colliders: w.colliders.clone(),
            impulse_joints: w.impulse_joints.clone(),
            multibody_joints: w.multibody_joints.clone(),
            soft_bodies: w.soft_bodies.clone(),
            ccd_solver: w.ccd_solver.clone(),
        };
        LineModel {
            world,
            hooks: self.hooks.clone(),
            conveyors: self.conveyors.clone(),
            types: self.types.clone(),
            active: self.active,
            envelope: self.envelope.clone(),
            products: self.products.clone(),
            belt_colliders: self.belt_colliders.clone(),
            dt: self.dt,
            steps: self.steps,
            time_ns: self.time_ns,
            spawn_every: self.spawn_every,
            stations: self.stations.clone(),
            photo_eyes: self.photo_eyes.clone(),
            pushers: self.pushers.clone(),
            pushed_off: self.pushed_off.clone(),
            diverters: self.diverters.clone(),
            diverted_by: self.diverted_by.clone(),
            main_out: self.main_out,
            branch_outs: self.branch_outs.clone(),
            geometry: self.geometry.clone(),
            frame: self.frame,
            drive: self.drive.clone(),
            segment_places: self.segment_places.clone(),
            belt_drive: self.belt_drive,
            outfeed_segments: self.outfeed_segments.clone(),
        }
    }
}

#[cfg(test)]
mod fixtures;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod pusher_tests;

#[cfg(test)]
mod diverter_tests;

#[cfg(test)]
mod product_type_tests;

#[cfg(test)]
mod drive_tests;
#[cfg(test)]
mod layout_tests;
