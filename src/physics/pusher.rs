//! Reject pushers: kinematic paddles beside a belt, stroking across it
//! while their PLC coil is on.

use rapier3d::prelude::{ColliderBuilder, PhysicsWorld, RigidBodyBuilder, RigidBodyHandle, Vector};

use super::eye::EYE_GAP;
use super::place::BeltPlace;
use super::{LineModel, body_size, convert};
use crate::config::{Product, Pusher};

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
    pub(super) place: BeltPlace,
    /// Unit world direction the paddle strokes in: across the belt, to the
    /// left of the direction of travel.
    pub(super) across: Vector,
    pub(super) paddle: RigidBodyHandle,
    /// The paddle's centre at home.
    pub(super) home: Vector,
    /// How far the paddle is out from home, metres, `0..=stroke`.
    pub(super) out: f32,
    /// Full stroke: the belt's width plus [`PUSHER_CLEARANCE`].
    pub(super) stroke: f32,
    /// Whether the paddle is moving out (else it is returning).
    pub(super) outward: bool,
    pub(super) fired: bool,
    /// Half the window's length along the belt.
    pub(super) half_len: f32,
    pub(super) pushed: u64,
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
impl LineModel {
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

    /// Before a step: moves each paddle that is out or fired one step's
    /// stroke (see [`PusherModel`]); a paddle at rest at home is not
    /// touched, so idle pushers cost a flag test each.
    pub(super) fn drive_pushers(&mut self) {
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
    pub(super) fn update_pushers(&mut self) {
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
}

impl PusherModel {
    /// The pusher `p` at `place`, its paddle inserted into `world` at home.
    pub(super) fn build(
        world: &mut PhysicsWorld,
        p: &Pusher,
        place: BeltPlace,
        envelope: Option<&Product>,
    ) -> Self {
        // A paddle sized for the largest type pushes every type.
        let reach = envelope.map_or(0.2, |p| p.length) as f32;
        let h = envelope.map_or(0.2, |p| p.height) as f32;
        let stroke = 2.0 * place.half_width + PUSHER_CLEARANCE;
        // Left of the direction of travel, seen from above.
        let across = Vector::Y.cross(place.dir);
        // Home: the block's face on the belt's right-hand edge.
        let home = place.point - across * (place.half_width + stroke / 2.0)
            + Vector::Y * (h / 2.0 + EYE_GAP);
        let body = RigidBodyBuilder::kinematic_position_based()
            .translation(home)
            .rotation(convert::heading_rotation(place.heading));
        // Frictionless, as a paddle's smooth face: it pushes a product
        // across, and the belt still carries it along.
        let block = ColliderBuilder::cuboid(reach, h / 2.0, stroke / 2.0).friction(0.0);
        let (paddle, _) = world.insert(body, block);
        PusherModel {
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
        }
    }
}
