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
//! keeps the broad phase untouched from step to step.
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

pub mod convert;
pub mod lookahead;
pub mod snapshot;
mod zones;

use std::time::Duration;

use rapier3d::prelude::{
    ActiveCollisionTypes, ActiveHooks, ColliderBuilder, ColliderHandle, CollisionPipeline,
    ContactModificationContext, PhysicsHooks, PhysicsPipeline, PhysicsWorld, RigidBodyBuilder,
    RigidBodyHandle, RigidBodyType, SharedShape, Vector,
};

use crate::config::{Conveyor, Line, Product, StationCycle};
pub use convert::PlanPoint;

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

/// A place on a belt (a station or a photo-eye), in world terms.
#[derive(Debug, Clone, Copy)]
struct BeltPlace {
    /// On the belt surface, on its centre line.
    point: Vector,
    /// Unit direction of travel of the segment the place is on.
    dir: Vector,
    half_width: f32,
    heading: f64,
}

impl BeltPlace {
    /// `position` metres along `c`'s belt; a position past the end (which
    /// validation refuses) is clamped onto the last segment.
    fn new(c: &Conveyor, position: f64) -> Self {
        let (mut x, mut y) = (c.origin[0], c.origin[1]);
        let mut left = position.max(0.0);
        let mut heading = c.segments.first().map_or(0.0, |s| s.heading);
        for (k, seg) in c.segments.iter().enumerate() {
            heading = seg.heading;
            let len = seg.length.value;
            let (sin, cos) = convert::sin_cos_deg(seg.heading);
            let d = if k + 1 == c.segments.len() {
                left.min(len)
            } else if left <= len {
                left
            } else {
                left -= len;
                (x, y) = (x + cos * len, y + sin * len);
                continue;
            };
            (x, y) = (x + cos * d, y + sin * d);
            break;
        }
        BeltPlace {
            point: convert::to_world(x, y, c.height),
            dir: convert::heading_dir(heading),
            half_width: (c.width.value / 2.0) as f32,
            heading,
        }
    }

    /// A product centre's distance along the belt past this place (negative:
    /// before it), if the centre is over the belt's width here and not
    /// below its surface.
    fn along(&self, pos: Vector) -> Option<f32> {
        let rel = pos - self.point;
        let along = rel.dot(self.dir);
        let lateral = (rel - self.dir * along - Vector::Y * rel.y).length();
        (lateral <= self.half_width && rel.y >= 0.0).then_some(along)
    }
}

/// A station: stops each product that reaches it for one cycle.
///
/// The cycle is the station's *period*, as a machine's rated cycle time is:
/// it starts when a product arrives at an idle station, or, when the next
/// product is already queued against the one being released, at that
/// release (indexing the next product in is part of the cycle). So a fed
/// station releases one product per cycle, and a starved one holds each
/// product for the whole cycle.
#[derive(Debug, Clone)]
pub struct StationModel {
    pub id: String,
    /// The tag whose value (seconds) gives the cycle; `None` for a fixed one.
    pub cycle_tag: Option<String>,
    place: BeltPlace,
    /// `None`: hold indefinitely (the cycle time is not known).
    cycle_ns: Option<u128>,
    /// The product held, and the model time (ns) its cycle started at.
    held: Option<(RigidBodyHandle, u128)>,
    /// The last product released, which must not be caught again while its
    /// centre is still at the station.
    released: Option<RigidBodyHandle>,
    /// Set at a release with a product queued: its cycle starts then.
    next_start: Option<u128>,
    /// A sensor over the catch window, so that catching asks the narrow
    /// phase which products are there instead of testing every product on
    /// the line at every station on every step.
    sensor: ColliderHandle,
    /// A wall across the belt, enabled while a product is held.
    gate: ColliderHandle,
    /// Length of the catch window past the station's position (m): half a
    /// product, or more when a step moves a product further than that (see
    /// [`LineModel::fit_catch_windows`]).
    catch_len: f32,
    /// Products released since the model was built (the machine's count).
    releases: u64,
}

impl StationModel {
    /// Whether a product is held now.
    pub fn holding(&self) -> bool {
        self.held.is_some()
    }

    /// Products this station has released (finished) so far.
    pub fn releases(&self) -> u64 {
        self.releases
    }

    /// The cycle time it works to now; `None` while it is not known.
    pub fn cycle(&self) -> Option<Duration> {
        self.cycle_ns
            .map(|ns| Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX)))
    }
}

/// A photo-eye as the physics expects it: a sensor collider, a thin sheet
/// (1 cm along the belt, the belt's width across, from 1 mm above the
/// surface to 0.5 m up) across the belt, so any product crossing its
/// position blocks it whatever the product's height.
#[derive(Debug, Clone)]
pub struct PhotoEyeModel {
    pub id: String,
    /// The measured digital input this eye is compared with (`twin::residuals`).
    pub tag: String,
    collider: ColliderHandle,
    blocked: bool,
    rising_edges: u64,
}

impl PhotoEyeModel {
    /// Whether a product intersects the beam after the last step.
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// Clear → blocked transitions since the model was built.
    pub fn rising_edges(&self) -> u64 {
        self.rising_edges
    }
}

/// A reject pusher: a kinematic paddle beside the belt's right-hand side
/// (looking downstream) that, while its coil is on, strokes across the belt
/// at [`PUSHER_STROKE_SPEED`] and pushes the product in front of it off the
/// left-hand side, where it falls (into the reject bin).
///
/// The paddle is a block as high as a product and twice a product's length
/// along the belt, centred on the pusher's position (its *window*): while
/// the belt carries the product on during the stroke, it stays in front of
/// the paddle. Across the belt the block is the belt's width (plus
/// [`PUSHER_CLEARANCE`]) deep, standing for the paddle and the rod behind
/// it: at home it is wholly beside the belt; fully out, its face is
/// [`PUSHER_CLEARANCE`] past the far edge (every pushed product is then
/// wholly off the belt, so it falls) and the block covers the belt across
/// the window, so a product arriving meanwhile waits against its upstream
/// end instead of slipping in behind the face (from where the return
/// stroke would push it off the near side).
///
/// A coil held on keeps the pusher stroking: at the end of each stroke the
/// paddle returns and, the coil still on, strokes out again, so a pusher
/// held fired rejects every product that reaches it. When the coil drops,
/// the paddle returns home (from wherever it is) and stays there.
///
/// A product is the pusher's when, while the paddle is out, its centre is
/// past the far edge by half the product's width (it is wholly off the
/// belt) and within the window give or take a product length (a product
/// queued against the block's upstream end is caught by its corner and goes
/// off just before the window). [`LineModel::remove_finished`] counts it as
/// pushed, not lost, once it has fallen.
#[derive(Debug, Clone)]
pub struct PusherModel {
    pub id: String,
    /// The coil tag whose value fires the pusher ([`LineModel::set_pusher_at`]).
    pub coil_tag: String,
    place: BeltPlace,
    /// Unit world direction the paddle strokes in: across the belt, to the
    /// left of the direction of travel.
    across: Vector,
    paddle: RigidBodyHandle,
    /// The paddle's centre at home.
    home: Vector,
    /// How far the paddle is out from home, metres, `0..=stroke`.
    out: f32,
    /// Full stroke: the belt's width plus [`PUSHER_CLEARANCE`].
    stroke: f32,
    /// Whether the paddle is moving out (else it is returning).
    outward: bool,
    fired: bool,
    /// Half the window's length along the belt.
    half_len: f32,
    pushed: u64,
}

impl PusherModel {
    /// Whether the coil was last set fired.
    pub fn fired(&self) -> bool {
        self.fired
    }

    /// Whether the paddle is away from home (stroking, or returning).
    pub fn extended(&self) -> bool {
        self.out > 0.0
    }

    /// Products this pusher pushed off the belt, counted when
    /// [`LineModel::remove_finished`] removed them.
    pub fn pushed(&self) -> u64 {
        self.pushed
    }
}

/// A diverter: while its coil is on, products reaching it are steered off
/// the belt sideways onto its branch conveyor; while off, they pass on.
///
/// The mechanism is the belt's own contact velocity ([`BeltHooks`]): while
/// fired, the main belt gives a product whose centre is in the diverter's
/// *window* (one product length along the belt, centred on its position) a
/// surface velocity along the branch's first heading, at the main belt's
/// speed, instead of along the belt and back to its centre line. The
/// product slides sideways onto the branch, whose belt then carries it
/// away. That is how steered-wheel and pop-up roller diverters work, and
/// it costs nothing more than a test of the few fired windows in the hook:
/// no extra collider, no body switched, nothing in the broad phase, and a
/// clone (the lookahead) copies it with the hooks. A sensor or a separate
/// belt piece would have needed its own bookkeeping per step for the same
/// effect. A diverter released while a product is only part-way over keeps
/// that product's centre on the main belt, whose guides pull it back.
///
/// A product is the diverter's when its centre was in the fired window;
/// [`LineModel::remove_finished`] counts it as diverted (here and in
/// [`Finished::diverted`]) when it leaves the end of the branch conveyor,
/// not while it is on the branch: the branch's end is the outfeed the
/// plant counts at.
#[derive(Debug, Clone)]
pub struct DiverterModel {
    pub id: String,
    /// The coil tag whose value fires the diverter
    /// ([`LineModel::set_diverter_at`]).
    pub coil_tag: String,
    /// Index of the main conveyor and of the branch conveyor.
    pub conveyor: usize,
    pub branch: usize,
    /// Index of the diverter's window in [`BeltHooks`].
    window: usize,
    fired: bool,
    diverted: u64,
}

impl DiverterModel {
    /// Whether the coil was last set fired.
    pub fn fired(&self) -> bool {
        self.fired
    }

    /// Products this diverter sent to its branch that have left the
    /// branch's end (counted by [`LineModel::remove_finished`]).
    pub fn diverted(&self) -> u64 {
        self.diverted
    }
}

/// A diverter's window as the belt hooks see it.
#[derive(Debug, Clone)]
struct DiverterWindow {
    /// The main conveyor's index.
    conveyor: usize,
    /// The diverter's position on the belt's centre line, and the belt's
    /// direction there.
    point: Vector,
    dir: Vector,
    /// Half the window's length along the belt, and how far from the centre
    /// line a product's centre may be and still be over the belt (its
    /// half-width plus a product length).
    half_len: f32,
    reach: f32,
    /// Unit world direction of the branch's first segment.
    out: Vector,
    fired: bool,
}

impl DiverterWindow {
    fn holds(&self, pos: Vector) -> bool {
        let rel = pos - self.point;
        let along = rel.dot(self.dir);
        let lateral = (rel - self.dir * along - Vector::Y * rel.y).length();
        along.abs() <= self.half_len && lateral <= self.reach
    }
}

/// Speed of a pusher's paddle, m/s, out and back. A pneumatic reject pusher
/// (a 25 mm cylinder at 6 bar, the usual size) strokes at 1 to 2 m/s; 1.5
/// m/s crosses a 0.6 m belt in 0.4 s, while a 0.5 m/s belt carries the
/// product on 0.2 m, which the paddle's window (two product lengths)
/// covers. It also keeps a stroke step small against a product: 7.5 mm per
/// live 5 ms step and 37.5 mm per 25 ms lookahead step, well under any
/// product's width, so the kinematic paddle never steps through one.
pub const PUSHER_STROKE_SPEED: f32 = 1.5;

/// How far past the belt's far edge a pusher's paddle face ends its
/// stroke, metres: a pushed product is then wholly off the belt.
pub const PUSHER_CLEARANCE: f32 = 0.02;

/// Half the photo-eye sheet's height and thickness, and its gap above the
/// belt (so it never touches the belt collider).
const EYE_HALF_HEIGHT: f32 = 0.25;
const EYE_HALF_THICKNESS: f32 = 0.005;
const EYE_GAP: f32 = 0.001;

/// The belt motion: a belt collider's `user_data` is `segment index + 1`
/// (0 means "not a belt"), which finds the segment's direction and its
/// conveyor's current speed here, without a map lookup in the hot path.
#[derive(Debug, Default, Clone)]
pub struct BeltHooks {
    /// Per belt segment: (conveyor index, unit world direction).
    segments: Vec<(usize, Vector, Vector)>,
    /// Per conveyor: the belt *surface* speed in m/s, that is the drive
    /// speed set from outside before each step times `1 - slip`.
    speeds: Vec<f32>,
    /// The diverters' windows (see [`DiverterModel`]).
    diverters: Vec<DiverterWindow>,
    /// Per belt segment: where it starts along its conveyor, metres.
    seg_offsets: Vec<f32>,
    /// Per conveyor: its zone control, for a zero-pressure accumulation
    /// conveyor (`zones.rs`).
    zones: Vec<Option<zones::ZoneControl>>,
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
    fn belt_velocity(&self, user_data: u128, pos: Option<Vector>) -> Option<Vector> {
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
    /// The conveyors' geometry as configured, curves laid out as chords, to
    /// place things along a belt.
    geometry: Vec<Conveyor>,
    /// Per conveyor: the drive speed last set, and the slip fraction.
    drive: Vec<(f32, f32)>,
    /// Per belt segment: its conveyor, its start as a place, its length.
    segment_places: Vec<(usize, BeltPlace, f32)>,
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
            drive: self.drive.clone(),
            segment_places: self.segment_places.clone(),
        }
    }
}

impl LineModel {
    /// Builds the model of `line`, to be stepped by `dt` at a time.
    pub fn new(line: &Line, dt: Duration) -> Self {
        let pushers = &line.pushers;
        let types: Vec<Product> = match &line.product {
            Some(arrivals) => line
                .product_types()
                .iter()
                .map(|t| t.to_product(arrivals))
                .collect(),
            None => Vec::new(),
        };
        let envelope = types.first().map(|first| {
            let mut e = first.clone();
            for t in &types {
                e.length = e.length.max(t.length);
                e.width = e.width.max(t.width);
                e.height = e.height.max(t.height);
            }
            e
        });
        // Curves are laid out as straight chords (`Conveyor::chords`): from
        // here on every belt is a chain of straight segments.
        let belts: Vec<Conveyor> = line.conveyors.iter().map(Conveyor::chorded).collect();
        let mut world = PhysicsWorld::new();
        world.integration_parameters.dt = dt.as_secs_f32();
        let mut hooks = BeltHooks::default();
        let mut conveyors = Vec::new();
        let mut belt_colliders = Vec::new();
        let mut segment_places = Vec::new();
        for (ci, c) in belts.iter().enumerate() {
            let half_w = c.width.value / 2.0;
            let (mut x, mut y) = (c.origin[0], c.origin[1]);
            let first_heading = c.segments.first().map_or(0.0, |s| s.heading);
            let last_heading = c.segments.last().map_or(0.0, |s| s.heading);
            let mut offset = 0.0_f32;
            for seg in &c.segments {
                hooks.seg_offsets.push(offset);
                offset += seg.length.value as f32;
                let len = seg.length.value;
                let (sin, cos) = convert::sin_cos_deg(seg.heading);
                let (mx, my) = (x + cos * len / 2.0, y + sin * len / 2.0);
                hooks.segments.push((
                    ci,
                    convert::heading_dir(seg.heading),
                    convert::to_world(x, y, c.height),
                ));
                segment_places.push((
                    ci,
                    BeltPlace {
                        point: convert::to_world(x, y, c.height),
                        dir: convert::heading_dir(seg.heading),
                        half_width: half_w as f32,
                        heading: seg.heading,
                    },
                    len as f32,
                ));
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
            hooks.zones.push(
                c.accumulation_zone
                    .as_ref()
                    .map(|z| zones::ZoneControl::new(z.value as f32, offset)),
            );
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
        let place = |conveyor: &str, position: f64| {
            let c = belts.iter().find(|c| c.id.value == conveyor)?;
            Some(BeltPlace::new(c, position))
        };
        // Validation refuses stations and eyes on unknown conveyors; a
        // model built from an unchecked line skips them.
        let stations = line
            .stations
            .iter()
            .filter_map(|s| {
                let place = place(&s.conveyor.value, s.position.value)?;
                let (cycle_tag, cycle_ns) = match &s.cycle {
                    StationCycle::Tag(t) => (Some(t.value.clone()), None),
                    StationCycle::Fixed(d) => (None, Some(d.as_nanos())),
                };
                // The catch window is the first half product length past the
                // station's position; the sensor covers it with a margin,
                // and `update_stations` keeps the exact test. Sized for the
                // longest type, so that every type is caught.
                let reach = envelope.as_ref().map_or(0.0, |p| p.length) as f32;
                let half_len = (reach / 4.0).max(EYE_HALF_THICKNESS) + 0.005;
                let sensor = ColliderBuilder::cuboid(half_len, EYE_HALF_HEIGHT, place.half_width)
                    .sensor(true)
                    .active_collision_types(ActiveCollisionTypes::all())
                    .translation(
                        place.point
                            + place.dir * (reach / 4.0)
                            + Vector::Y * (EYE_GAP + EYE_HALF_HEIGHT),
                    )
                    .rotation(convert::heading_rotation(place.heading))
                    .build();
                // As tall as the tallest type, to stop any of them.
                let gate_h = envelope.as_ref().map_or(0.2, |p| p.height) as f32;
                let mut gate = ColliderBuilder::cuboid(0.002, gate_h / 2.0, place.half_width)
                    .translation(place.point + Vector::Y * (gate_h / 2.0 + EYE_GAP))
                    .rotation(convert::heading_rotation(place.heading))
                    .friction(0.0)
                    .build();
                gate.set_enabled(false);
                Some(StationModel {
                    id: s.id.value.clone(),
                    cycle_tag,
                    place,
                    cycle_ns,
                    held: None,
                    released: None,
                    next_start: None,
                    sensor: world.colliders.insert(sensor),
                    gate: world.colliders.insert(gate),
                    catch_len: reach / 2.0,
                    releases: 0,
                })
            })
            .collect();
        let photo_eyes = line
            .photo_eyes
            .iter()
            .filter_map(|e| {
                let p = place(&e.conveyor.value, e.position.value)?;
                let sensor =
                    ColliderBuilder::cuboid(EYE_HALF_THICKNESS, EYE_HALF_HEIGHT, p.half_width)
                        .sensor(true)
                        // Held products are kinematic, and kinematic-vs-fixed
                        // pairs are off by default: the eye must see them too.
                        .active_collision_types(ActiveCollisionTypes::all())
                        .translation(p.point + Vector::Y * (EYE_GAP + EYE_HALF_HEIGHT))
                        .rotation(convert::heading_rotation(p.heading))
                        .build();
                Some(PhotoEyeModel {
                    id: e.id.value.clone(),
                    tag: e.tag.value.clone(),
                    collider: world.colliders.insert(sensor),
                    blocked: false,
                    rising_edges: 0,
                })
            })
            .collect();
        let pushers = pushers
            .iter()
            .filter_map(|p| {
                let place = place(&p.conveyor.value, p.position.value)?;
                // A paddle sized for the largest type pushes every type.
                let reach = envelope.as_ref().map_or(0.2, |p| p.length) as f32;
                let h = envelope.as_ref().map_or(0.2, |p| p.height) as f32;
                let stroke = 2.0 * place.half_width + PUSHER_CLEARANCE;
                // Left of the direction of travel, seen from above.
                let across = Vector::Y.cross(place.dir);
                // Home: the block's face on the belt's right-hand edge.
                let home = place.point - across * (place.half_width + stroke / 2.0)
                    + Vector::Y * (h / 2.0 + EYE_GAP);
                let body = RigidBodyBuilder::kinematic_position_based()
                    .translation(home)
                    .rotation(convert::heading_rotation(place.heading));
                // Frictionless, as a paddle's smooth face: it pushes a
                // product across, and the belt still carries it along.
                let block = ColliderBuilder::cuboid(reach, h / 2.0, stroke / 2.0).friction(0.0);
                let (paddle, _) = world.insert(body, block);
                Some(PusherModel {
                    id: p.id.value.clone(),
                    coil_tag: p.coil_tag.value.clone(),
                    place,
                    across,
                    paddle,
                    home,
                    out: 0.0,
                    stroke,
                    outward: true,
                    fired: false,
                    half_len: reach,
                    pushed: 0,
                })
            })
            .collect();
        // Diverters onto a known branch other than their own conveyor
        // (validation refuses the rest).
        let index = |id: &str| line.conveyors.iter().position(|c| c.id.value == id);
        let mut diverters = Vec::new();
        for d in &line.diverters {
            let (Some(main), Some(branch)) = (index(&d.conveyor.value), index(&d.to.value)) else {
                continue;
            };
            if main == branch {
                continue;
            }
            let place = BeltPlace::new(&belts[main], d.position.value);
            // A window sized for the longest type steers every type.
            let reach = envelope.as_ref().map_or(0.2, |p| p.length) as f32;
            let out_heading = belts[branch].segments.first().map_or(0.0, |s| s.heading);
            diverters.push(DiverterModel {
                id: d.id.value.clone(),
                coil_tag: d.coil_tag.value.clone(),
                conveyor: main,
                branch,
                window: hooks.diverters.len(),
                fired: false,
                diverted: 0,
            });
            hooks.diverters.push(DiverterWindow {
                conveyor: main,
                point: place.point,
                dir: place.dir,
                half_len: reach / 2.0,
                reach: place.half_width + reach,
                out: convert::heading_dir(out_heading),
                fired: false,
            });
        }
        let mut branch_outs: Vec<usize> = diverters.iter().map(|d| d.branch).collect();
        branch_outs.sort_unstable();
        branch_outs.dedup();
        let main_out = (0..line.conveyors.len())
            .rev()
            .find(|c| !branch_outs.contains(c))
            .unwrap_or(line.conveyors.len().saturating_sub(1));
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
            types,
            active: 0,
            envelope,
            products: Vec::new(),
            belt_colliders,
            dt,
            steps: 0,
            time_ns: 0,
            spawn_every,
            stations,
            photo_eyes,
            pushers,
            pushed_off: Vec::new(),
            diverters,
            diverted_by: Vec::new(),
            main_out,
            branch_outs,
            drive: vec![(0.0, 0.0); belts.len()],
            geometry: belts,
            segment_places,
        }
    }

    /// The stations, in config order (those on known conveyors).
    pub fn stations(&self) -> &[StationModel] {
        &self.stations
    }

    /// The photo-eyes, in config order (those on known conveyors).
    pub fn photo_eyes(&self) -> &[PhotoEyeModel] {
        &self.photo_eyes
    }

    /// The pushers, in config order (those on known conveyors).
    pub fn pushers(&self) -> &[PusherModel] {
        &self.pushers
    }

    /// Fires a pusher (its coil is on) or releases it, for the next steps;
    /// an index past the pushers is ignored, as for stations.
    pub fn set_pusher_at(&mut self, pusher: usize, fired: bool) {
        if let Some(p) = self.pushers.get_mut(pusher) {
            p.fired = fired;
        }
    }

    /// The diverters, in config order (those whose conveyor and branch are
    /// known and differ).
    pub fn diverters(&self) -> &[DiverterModel] {
        &self.diverters
    }

    /// Fires a diverter (its coil is on) or releases it, for the next
    /// steps; an index past the diverters is ignored, as for pushers.
    pub fn set_diverter_at(&mut self, diverter: usize, fired: bool) {
        if let Some(d) = self.diverters.get_mut(diverter) {
            d.fired = fired;
            if let Some(w) = self.hooks.diverters.get_mut(d.window) {
                w.fired = fired;
            }
        }
    }

    /// Sets a station's cycle time for the next steps; `None` holds the
    /// product it has (or the next one to arrive) until a cycle is known.
    pub fn set_station_cycle_at(&mut self, station: usize, cycle: Option<Duration>) {
        if let Some(s) = self.stations.get_mut(station) {
            s.cycle_ns = cycle.map(|c| c.as_nanos());
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
    /// The virtual plant injects belt slip with this; the twin never sets
    /// it (it estimates slip from its residuals instead).
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
        let place = BeltPlace::new(c, position);
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

    /// Puts a product at the start of the first conveyor: its back edge on
    /// the belt's start, resting on the surface, aligned with the belt.
    pub fn spawn_product(&mut self) -> Result<RigidBodyHandle, PhysicsError> {
        let p = self.active_type().ok_or(PhysicsError::NoProduct)?;
        let c = self.conveyors.first().ok_or(PhysicsError::NoConveyor)?;
        let up = Vector::Y * (p.height / 2.0 + DROP_GAP) as f32;
        let center = c.start + c.first_dir * (p.length / 2.0) as f32 + up;
        let heading = convert::atan2(-c.first_dir.z, c.first_dir.x);
        self.insert_product(center, heading)
    }

    /// Puts a product on `conveyor` with its centre `position` metres along
    /// the belt, resting on it and aligned with it (for tests, benchmarks
    /// and restoring a line's state).
    pub fn spawn_product_at(
        &mut self,
        conveyor: usize,
        position: f64,
    ) -> Result<RigidBodyHandle, PhysicsError> {
        let p = self.active_type().ok_or(PhysicsError::NoProduct)?;
        let c = self
            .geometry
            .get(conveyor)
            .ok_or_else(|| PhysicsError::UnknownConveyor(format!("#{conveyor}")))?;
        let place = BeltPlace::new(c, position);
        let center = place.point + Vector::Y * (p.height / 2.0 + DROP_GAP) as f32;
        let heading = place.heading.to_radians() as f32;
        self.insert_product(center, heading)
    }

    fn insert_product(
        &mut self,
        center: Vector,
        heading: f32,
    ) -> Result<RigidBodyHandle, PhysicsError> {
        let p = self.active_type().ok_or(PhysicsError::NoProduct)?;
        let body = RigidBodyBuilder::dynamic()
            .translation(center)
            .rotation(Vector::Y * heading)
            // Products ride upright, as guide rails keep them on a real line:
            // the twin models transport, not tumbling. A free 0.22 m bottle
            // started at rest on a 0.6 m/s belt tips over (the belt's pull
            // exceeds its tipping limit), and the twin and the plant would
            // then disagree about every bottle's length along the belt. Yaw
            // stays free: a product turns with the belt at a corner.
            .enabled_rotations(false, true, false)
            // A product waiting on a stopped belt must wake up when the belt
            // starts; a sleeping body would not see the new contact velocity.
            .can_sleep(false);
        let volume = p.length * p.width * p.height;
        // Rounded edges (same outer size): a sharp-edged box that cannot tip
        // stops dead against the edge where two belt boxes meet (the solver
        // sees the next box's end face a fraction of a millimetre above the
        // surface it sinks into); a rounded one rides over the seam, as a
        // real product does.
        let r = (p.length.min(p.width).min(p.height) * 0.1).min(PRODUCT_EDGE_RADIUS);
        let collider = ColliderBuilder::round_cuboid(
            (p.length / 2.0 - r) as f32,
            (p.height / 2.0 - r) as f32,
            (p.width / 2.0 - r) as f32,
            r as f32,
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
        self.drive_pushers();
        self.update_zones();
        self.world.step_with_events(&self.hooks, &());
        self.steps += 1;
        self.time_ns += self.dt.as_nanos();
        self.update_stations();
        self.update_photo_eyes();
        self.update_pushers();
        self.update_diverters();
        Ok(())
    }

    /// After a step: marks the products in a fired diverter's window as
    /// that diverter's, for `remove_finished` (the latest diverter wins
    /// should a product pass two). Unfired diverters cost a flag test.
    fn update_diverters(&mut self) {
        for (k, d) in self.diverters.iter().enumerate() {
            let Some(w) = self.hooks.diverters.get(d.window).filter(|w| w.fired) else {
                continue;
            };
            for h in &self.products {
                let Some(b) = self.world.bodies.get(*h) else {
                    continue;
                };
                if !w.holds(b.translation()) {
                    continue;
                }
                match self.diverted_by.iter_mut().find(|(p, _)| p == h) {
                    Some(mark) => mark.1 = k,
                    None => self.diverted_by.push((*h, k)),
                }
            }
        }
    }

    /// Before a step: moves each paddle that is out or fired one step's
    /// stroke (see [`PusherModel`]); a paddle at rest at home is not
    /// touched, so idle pushers cost a flag test each.
    fn drive_pushers(&mut self) {
        let travel = PUSHER_STROKE_SPEED * self.dt.as_secs_f32();
        for p in &mut self.pushers {
            if !p.fired {
                // The next firing starts with a stroke out.
                p.outward = true;
                if p.out <= 0.0 {
                    continue;
                }
                p.out = (p.out - travel).max(0.0);
            } else if p.outward {
                p.out = (p.out + travel).min(p.stroke);
                if p.out >= p.stroke {
                    p.outward = false;
                }
            } else {
                p.out = (p.out - travel).max(0.0);
                if p.out <= 0.0 {
                    p.outward = true;
                }
            }
            if let Some(body) = self.world.bodies.get_mut(p.paddle) {
                body.set_next_kinematic_translation(p.home + p.across * p.out);
            }
        }
    }

    /// After a step: marks the products a paddle that is out has put wholly
    /// off the belt's far side within its window, for `remove_finished`.
    fn update_pushers(&mut self) {
        for (k, p) in self.pushers.iter().enumerate() {
            if p.out <= 0.0 {
                continue;
            }
            for h in &self.products {
                let Some(b) = self.world.bodies.get(*h) else {
                    continue;
                };
                // Wholly off is the product's own width past the edge.
                let Some(size) = body_size(&self.world, *h) else {
                    continue;
                };
                let (reach, side) = (size.length, size.width / 2.0);
                let rel = b.translation() - p.place.point;
                let off = rel.dot(p.across) >= p.place.half_width + side
                    && rel.dot(p.place.dir).abs() <= p.half_len + reach;
                if off && !self.pushed_off.iter().any(|(o, _)| o == h) {
                    self.pushed_off.push((*h, k));
                }
            }
        }
    }

    /// After a step: releases products whose cycle is over, then catches
    /// products that reached an idle station.
    fn update_stations(&mut self) {
        let now = self.time_ns;
        let world = &mut self.world;
        for s in &mut self.stations {
            if let (Some((h, start)), Some(cycle)) = (s.held, s.cycle_ns)
                && now.saturating_sub(start) >= cycle
            {
                world.bodies[h].set_body_type(RigidBodyType::Dynamic, true);
                if let Some(gate) = world.colliders.get_mut(s.gate) {
                    gate.set_enabled(false);
                }
                s.held = None;
                s.released = Some(h);
                s.releases += 1;
                // Queued: touching the released product, its centre one
                // product length back. A tenth of a length of slack covers
                // contact gaps; a product that close but still moving
                // starts its cycle at most 0.1 L / speed early.
                // Products of two types touch with their centres half of
                // each one's length apart.
                let half = |p: RigidBodyHandle| body_size(world, p).map_or(0.0, |z| z.length / 2.0);
                let released_half = half(h);
                let bodies = &world.bodies;
                let queued = self.products.iter().any(|p| {
                    *p != h
                        && s.place
                            .along(bodies[*p].translation())
                            .is_some_and(|a| a < 0.0 && a >= -1.1 * (released_half + half(*p)))
                });
                s.next_start = queued.then_some(now);
            }
            if s.held.is_some() {
                continue;
            }
            // Products cannot overlap, so at most one centre is in the
            // window; the lowest handle keeps the pick independent of the
            // narrow phase's order should two ever be.
            let (bodies, colliders) = (&world.bodies, &world.colliders);
            let caught = world
                .narrow_phase
                .intersection_pairs_with(s.sensor)
                .filter(|(.., hit)| *hit)
                .filter_map(|(c1, c2, _)| {
                    let other = if c1 == s.sensor { c2 } else { c1 };
                    colliders.get(other)?.parent()
                })
                .filter(|p| {
                    Some(*p) != s.released
                        && bodies.get(*p).is_some_and(|b| {
                            b.is_dynamic()
                                && s.place
                                    .along(b.translation())
                                    .is_some_and(|a| a >= 0.0 && a < s.catch_len)
                        })
                })
                .min_by_key(|p| p.into_raw_parts());
            if let Some(h) = caught {
                // The gate goes at this product's own back, whatever type.
                let reach = body_size(world, h).map_or(0.0, |z| z.length);
                let body = &mut world.bodies[h];
                body.set_linvel(Vector::ZERO, false);
                body.set_angvel(Vector::ZERO, false);
                body.set_body_type(RigidBodyType::KinematicVelocityBased, false);
                // The gate closes across the belt at the held product's back
                // (3 mm inside it, so it never touches the held product): the
                // queue stops there, as at a real station's infeed gate or
                // star wheel, and cannot slip past the product at its sides.
                let back = body.translation() - s.place.dir * (reach / 2.0 - 0.003);
                if let Some(gate) = world.colliders.get_mut(s.gate) {
                    gate.set_translation(back);
                    gate.set_enabled(true);
                }
                s.held = Some((h, s.next_start.take().unwrap_or(now)));
            }
        }
    }

    /// After a step: each eye's expected state from the sensor's
    /// intersections, counting clear → blocked edges.
    fn update_photo_eyes(&mut self) {
        for e in &mut self.photo_eyes {
            // Only products block a beam (they are the colliders with a
            // body); a station's sensor next to the eye does not, nor does
            // a pusher's paddle (the one position-based kinematic body).
            let bodies = &self.world.bodies;
            let blocked =
                self.world
                    .intersection_pairs_with(e.collider)
                    .any(|(h1, c1, _, c2, hit)| {
                        let other = if h1 == e.collider { c2 } else { c1 };
                        hit && other
                            .parent()
                            .and_then(|b| bodies.get(b))
                            .is_some_and(|b| b.body_type() != RigidBodyType::KinematicPositionBased)
                    });
            if blocked && !e.blocked {
                e.rising_edges += 1;
            }
            e.blocked = blocked;
        }
    }

    /// Simulated time so far: the sum of the steps' `dt`.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(u64::try_from(self.time_ns).unwrap_or(u64::MAX))
    }

    /// Changes the step length for the next steps (the lookahead trades
    /// resolution for speed this way). The model's own spawner, if on,
    /// keeps counting steps, not time.
    pub fn set_dt(&mut self, dt: Duration) {
        self.dt = dt;
        self.world.integration_parameters.dt = dt.as_secs_f32();
    }

    /// Sizes every station's catch window for the step length and the
    /// fastest belt now: a product must not cross the window between two
    /// steps, or the station never sees it. The window is half a product
    /// (the live model's 5 ms steps need no more below 7 m/s); a coarser
    /// step gets 1.25 × the distance the fastest belt moves in one step,
    /// capped below one product length so that at most one product's centre
    /// is ever inside. A product caught further in is held a little
    /// downstream, an error of at most one step's travel.
    pub fn fit_catch_windows(&mut self) {
        // The longest type, as the sensor built in `new`.
        let reach = self.envelope.as_ref().map_or(0.0, |p| p.length) as f32;
        let fastest = self
            .hooks
            .speeds
            .iter()
            .fold(0.0_f32, |m, v| m.max(v.abs()));
        let len = (fastest * self.dt.as_secs_f32() * 1.25)
            .max(reach / 2.0)
            .min(0.9 * reach);
        for s in &mut self.stations {
            s.catch_len = len;
            let half = (len / 2.0).max(EYE_HALF_THICKNESS) + 0.005;
            if let Some(c) = self.world.colliders.get_mut(s.sensor) {
                c.set_shape(SharedShape::cuboid(
                    half,
                    EYE_HALF_HEIGHT,
                    s.place.half_width,
                ));
                c.set_translation(
                    s.place.point
                        + s.place.dir * (len / 2.0)
                        + Vector::Y * (EYE_GAP + EYE_HALF_HEIGHT),
                );
            }
        }
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
        let (Some(p), Some(along), Some(newest)) = (
            self.active_type(),
            self.newest_along(),
            self.products
                .last()
                .and_then(|h| body_size(&self.world, *h)),
        ) else {
            return true;
        };
        // The next product (the active type, L) is spawned with its centre
        // at L/2: clear once the newest one's back edge (its own half length
        // behind its centre) is past L plus the drop gap. With one type this
        // is 1.5 L + gap; across a changeover each product's own size keeps
        // the spacing exact rather than the largest type's.
        along - newest.length / 2.0 >= (p.length + DROP_GAP) as f32
    }

    /// How far along the first belt the newest product's centre is (the
    /// one nearest the infeed, as products leave in spawn order), if any.
    pub fn newest_along(&self) -> Option<f32> {
        let (c, h) = (self.conveyors.first()?, self.products.last()?);
        Some((self.world.bodies[*h].translation() - c.start).dot(c.first_dir))
    }

    /// Products per conveyor now, in conveyor order: those whose centre is
    /// over one of its segments (a product in a hand-over gap or falling
    /// counts nowhere). A held product counts on its station's belt.
    pub fn zone_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.conveyors.len()];
        for h in &self.products {
            let pos = self.world.bodies[*h].translation();
            let zone = self.segment_places.iter().find_map(|(ci, place, len)| {
                place
                    .along(pos)
                    .is_some_and(|a| (0.0..=*len).contains(&a))
                    .then_some(*ci)
            });
            if let Some(ci) = zone {
                counts[ci] += 1;
            }
        }
        counts
    }

    /// Where a product is along the line: its conveyor and metres along
    /// that conveyor's belt, if its centre is over a segment.
    fn line_place(&self, h: RigidBodyHandle) -> Option<(usize, f32)> {
        let pos = self.world.bodies.get(h)?.translation();
        let mut offset = 0.0;
        let mut last_ci = usize::MAX;
        for (ci, place, len) in &self.segment_places {
            if *ci != last_ci {
                (offset, last_ci) = (0.0, *ci);
            }
            if let Some(a) = place.along(pos)
                && (0.0..=*len).contains(&a)
            {
                return Some((*ci, offset + a));
            }
            offset += len;
        }
        None
    }

    /// Products whose centre is past `from` and not yet at `to`, each given
    /// as (conveyor index, metres along it), in flow (config) order.
    pub fn products_between(&self, from: (usize, f64), to: (usize, f64)) -> usize {
        let key = |(c, m): (usize, f64)| (c, m as f32);
        let (a, b) = (key(from), key(to));
        self.products
            .iter()
            .filter_map(|h| self.line_place(*h))
            .filter(|p| {
                let after_a = p.0 > a.0 || (p.0 == a.0 && p.1 > a.1);
                let before_b = p.0 < b.0 || (p.0 == b.0 && p.1 < b.1);
                after_a && before_b
            })
            .count()
    }

    /// Removes the products that are done with the line and says how many:
    /// `out` crossed the end of the line's main outfeed, the last conveyor
    /// that is no diverter's branch (their centre is past its end, within
    /// the belt's width), `diverted` crossed the end of a diverter's branch
    /// conveyor in the same way (each counted by the diverter that sent it
    /// there too), `pushed` fell below the floor after a pusher put them off
    /// the belt (each counted by its pusher too), `lost` fell below the
    /// floor otherwise (off a side, a corner, or the end of a conveyor that
    /// is no outfeed).
    /// Without this a running line's world would grow without bound.
    pub fn remove_finished(&mut self) -> Finished {
        let mut done = Finished::default();
        let Some(last) = self.conveyors.get(self.main_out) else {
            return done;
        };
        // The largest type's reach, so that every type counts.
        let reach = self
            .envelope
            .as_ref()
            .map_or(1.0, |p| p.length.max(p.width)) as f32;
        // Whether `pos` has just crossed conveyor `c`'s end.
        let past_end = |c: &ConveyorModel, pos: Vector| {
            let rel = pos - c.end;
            let along = rel.dot(c.last_dir);
            let lateral = (rel - c.last_dir * along - Vector::Y * rel.y).length();
            // `along < reach` keeps a U-shaped line's upstream belt, which
            // may lie beyond the end's plane, from counting as departed.
            along > 0.0 && along < reach && lateral <= c.half_width + reach
        };
        let branches: Vec<&ConveyorModel> = self
            .branch_outs
            .iter()
            .filter_map(|c| self.conveyors.get(*c))
            .collect();
        let world = &mut self.world;
        let (pushers, pushed_off) = (&mut self.pushers, &mut self.pushed_off);
        let (diverters, diverted_by) = (&mut self.diverters, &mut self.diverted_by);
        self.products.retain(|h| {
            // A held product is at its station, whatever its position says
            // (held products, and only they, are kinematic).
            if world.bodies[*h].is_kinematic() {
                return true;
            }
            let pos = world.bodies[*h].translation();
            let out = past_end(last, pos);
            let branch = if out {
                None
            } else {
                branches
                    .iter()
                    .zip(&self.branch_outs)
                    .find(|(c, _)| past_end(c, pos))
                    .map(|(_, ci)| *ci)
            };
            let lost = pos.y < 0.0;
            if !(out || lost || branch.is_some()) {
                return true;
            }
            let by = pushed_off
                .iter()
                .position(|(p, _)| p == h)
                .map(|i| pushed_off.remove(i).1);
            let sent_by = diverted_by
                .iter()
                .position(|(p, _)| p == h)
                .map(|i| diverted_by.remove(i).1);
            match (by, branch) {
                (Some(k), _) if lost => {
                    done.pushed += 1;
                    if let Some(p) = pushers.get_mut(k) {
                        p.pushed += 1;
                    }
                }
                (_, Some(ci)) => {
                    done.diverted += 1;
                    // Its diverter; one found on the branch without a mark
                    // (placed there) is the first diverter onto it.
                    let k = sent_by
                        .filter(|k| diverters.get(*k).is_some_and(|d| d.branch == ci))
                        .or_else(|| diverters.iter().position(|d| d.branch == ci));
                    if let Some(d) = k.and_then(|k| diverters.get_mut(k)) {
                        d.diverted += 1;
                    }
                }
                _ if out => done.out += 1,
                _ => done.lost += 1,
            }
            world.remove_body(*h);
            false
        });
        done
    }

    /// Every product type, in config order (empty without a product).
    pub fn product_types(&self) -> &[Product] {
        &self.types
    }

    /// The index of the type new products are spawned as (0 at the start).
    pub fn product_type(&self) -> usize {
        self.active
    }

    /// Changes over: new products are spawned as type `i` from now on;
    /// products already on the line keep their size, mass and friction. An
    /// index past the types is ignored (the type stays), as for stations.
    pub fn set_product_type_at(&mut self, i: usize) {
        if i < self.types.len() {
            self.active = i;
        }
    }

    /// The type new products are spawned as.
    fn active_type(&self) -> Option<&Product> {
        self.types.get(self.active)
    }

    /// A product's own size, read from its collider (see `body_size`).
    pub fn product_size_of(&self, h: RigidBodyHandle) -> Option<BodySize> {
        body_size(&self.world, h)
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

/// A product's outer size, metres: along its own x (length), up (height)
/// and across (width), as it was spawned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BodySize {
    pub length: f32,
    pub height: f32,
    pub width: f32,
}

/// A product's size, read back from its first collider: a round cuboid's
/// half extents plus its border radius (see `insert_product`). The size
/// lives in the world already, so a changeover needs no per-product
/// bookkeeping, and a clone or a restored state carries it along; it is a
/// pure function of the world, so it keeps the model deterministic.
/// `None` for a body that is no product.
fn body_size(world: &PhysicsWorld, h: RigidBodyHandle) -> Option<BodySize> {
    let c = world.bodies.get(h)?.colliders().first()?;
    let shape = world.colliders.get(*c)?.shape();
    let (half, r) = match shape.as_round_cuboid() {
        Some(rc) => (rc.inner_shape.half_extents, rc.border_radius),
        None => (shape.as_cuboid()?.half_extents, 0.0),
    };
    Some(BodySize {
        length: 2.0 * (half.x + r),
        height: 2.0 * (half.y + r),
        width: 2.0 * (half.z + r),
    })
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
