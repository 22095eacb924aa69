//! The analytical belt drive: belts as a drive computed by the twin, not
//! as rapier contacts. The live model of a line without pushers or
//! diverters runs on it ([`BeltDrive::Analytical`]) and so does the what-if
//! lookahead's copy; the contact model ([`BeltDrive::Contacts`]) is kept as
//! the reference both are checked against (docs/physics.md, "Two belt
//! drives"; docs/benchmarks.md, "Live model").
//!
//! Decisions:
//! - **Belts as a drive, not as contacts.** The belts' colliders are
//!   switched off and each product rides at its height with gravity off
//!   (`drive_products`, before every step). Along the belt the twin applies
//!   kinetic friction itself: the product's speed moves towards the belt's
//!   surface speed by at most μ g dt, with μ combined as rapier combines it.
//!   Across the belt the guides hold it: its sideways speed is the belt
//!   hooks' centring pull, and a product within half its width of the
//!   centre line is put on the line. Products, stations' gates, jams and the
//!   stations' and eyes' sensors stay in rapier, so holds and blockages are
//!   still solved as contacts.
//! - **Followers.** Behind another product, a product goes no faster than
//!   closes the gap in one step (it meets the one in front as in an
//!   inelastic collision), and once it stands against a standing product it
//!   is frozen: made kinematic at rest until the one in front moves, which
//!   unfreezes the queue one product per step from its head. A standing
//!   queue then costs the solver nothing. "Standing" is the speed the one
//!   in front came out of the last step with, not the one this pass gives
//!   it: the head of a queue against a jam wall is driven towards the
//!   belt's speed on every step and stopped by the wall on every step.
//! - **Turning.** A product is on the last segment (in flow order) whose
//!   surface holds its centre, counting 1 mm before the segment's start: at
//!   a corner the lane's centre line is the next segment's start, and the
//!   lane keeps a product within 0.5 mm of it, either side.
//! - Why: rapier recomputes a hooked pair's contacts on every step, so the
//!   time of the contact model was in product–belt contacts, and with a
//!   queue in the queue's product–product contacts.
//! - A product whose centre leaves every belt falls under gravity, so the
//!   line's end and products pushed off are counted as before.
//! - **Not for pushers and diverters in the live model.** The lane holds a
//!   product against a paddle's push and a diverter's steer, so a line with
//!   either stays on contacts in the twin ([`BeltDrive::fits`]); the
//!   lookahead keeps them home and drives such a line too.

use std::time::Duration;

use rapier3d::prelude::{RigidBody, RigidBodyHandle, RigidBodyType, Vector};

use super::{BeltPlace, BodySize, LineModel, body_size};
use crate::config::Line;

/// A product moving slower than this (m/s) on a belt, and not held by a
/// station, is standing in a queue.
pub(super) const STANDING_SPEED: f32 = 0.02;

/// How belts move products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BeltDrive {
    /// rapier contacts whose tangent velocity is the belt's ([`BeltHooks`](super::BeltHooks)):
    /// the reference the analytical drive is checked against.
    #[default]
    Contacts,
    /// The twin's own kinetic-friction drive (see the module's decisions).
    Analytical,
}

/// The contact model's step: 5 ms (200 Hz) keeps a product resting stably
/// on a belt and turning corners.
pub const CONTACTS_DT: Duration = Duration::from_millis(5);

/// The analytical drive's longest step in the live model.
pub const ANALYTICAL_DT: Duration = Duration::from_millis(25);

impl BeltDrive {
    /// The drive the twin's live model runs `line` on: the analytical one
    /// where it fits ([`BeltDrive::fits`]), else the contacts. It agrees
    /// with the contacts on the demo line's counts, eye edges, jams and
    /// verdicts, and replays about ten times faster (docs/benchmarks.md,
    /// "Live model").
    pub fn live(line: &Line) -> Self {
        if Self::fits(line) {
            BeltDrive::Analytical
        } else {
            BeltDrive::Contacts
        }
    }

    /// Whether the analytical drive can run `line`: not with pushers or
    /// diverters (see the module's decisions).
    pub fn fits(line: &Line) -> bool {
        line.pushers.is_empty() && line.diverters.is_empty()
    }

    /// The longest step this drive runs the live model at.
    pub fn max_dt(self) -> Duration {
        match self {
            BeltDrive::Contacts => CONTACTS_DT,
            BeltDrive::Analytical => ANALYTICAL_DT,
        }
    }
}

impl LineModel {
    /// The drive the belts run on now.
    pub fn belt_drive(&self) -> BeltDrive {
        self.belt_drive
    }

    /// Switches the belts to `drive`, products on the line included: on the
    /// analytical drive the belts' colliders are disabled and every product
    /// on a belt rides at its height with gravity off; back on contacts
    /// the belts take them again.
    pub fn set_belt_drive(&mut self, drive: BeltDrive) {
        if drive == self.belt_drive {
            return;
        }
        self.belt_drive = drive;
        let on = drive == BeltDrive::Contacts;
        for &c in &self.belt_colliders {
            if let Some(c) = self.world.colliders.get_mut(c) {
                c.set_enabled(on);
            }
        }
        for &h in &self.products {
            let b = &mut self.world.bodies[h];
            if on {
                if b.user_data == FROZEN {
                    b.set_body_type(RigidBodyType::Dynamic, true);
                }
                b.user_data = 0;
                b.set_enabled_translations(true, true, true, true);
                b.set_gravity_scale(1.0, true);
                continue;
            }
            // A product already falling off keeps falling.
            if b.translation().y > 0.0 && b.linvel().y > -0.5 {
                ride(b);
            }
        }
    }

    /// Puts a new product on the drive the belts run on.
    pub(super) fn board(&mut self, h: RigidBodyHandle) {
        if self.belt_drive == BeltDrive::Analytical {
            ride(&mut self.world.bodies[h]);
        }
    }

    /// The most a belt changes the speed of a product of friction `product`
    /// in one step: kinetic friction, μ g dt, with μ the pair's friction as
    /// rapier combines it (the average of the belt's and the product's).
    fn belt_grip(&self, product: f32) -> f32 {
        let belt = self
            .belt_colliders
            .first()
            .and_then(|c| self.world.colliders.get(*c))
            .map_or(0.5, |c| c.friction());
        (belt + product) / 2.0 * self.world.gravity.length() * self.dt.as_secs_f32()
    }

    /// A product's own size and grip, read from its collider: after a
    /// changeover the line carries products of two types, and the gap to
    /// the one in front is between their own faces.
    fn own_size_and_grip(&self, h: RigidBodyHandle) -> (BodySize, f32) {
        let size = body_size(&self.world, h).unwrap_or(BodySize {
            length: 0.0,
            height: 0.0,
            width: 0.0,
        });
        let friction = self.world.bodies[h]
            .colliders()
            .first()
            .and_then(|c| self.world.colliders.get(*c))
            .map_or(0.5, |c| c.friction());
        (size, self.belt_grip(friction))
    }

    /// Before a step: each riding product takes the surface velocity of
    /// the belt segment under its centre (along the belt plus the centring
    /// pull of [`BeltHooks`](super::BeltHooks)), changed by at most `grip`;
    /// its yaw turns towards the segment's heading. A product whose centre
    /// is over no belt falls, as it would off a real one.
    pub(super) fn drive_products(&mut self) {
        let dt = self.dt.as_secs_f32();
        let places = &self.segment_places;
        let ends = &self.outfeed_segments;
        // The size of the product before this one (the one in front).
        let mut ahead: Option<BodySize> = None;
        // The velocity the one in front came out of the last step with,
        // before this pass drives it: a product pressed against a wall by
        // its belt stands, though the drive asks it to move again.
        let mut ahead_vel: Option<Vector> = None;
        for (i, &h) in self.products.iter().enumerate() {
            let (size, grip) = self.own_size_and_grip(h);
            let ahead_size = ahead.replace(size);
            let ahead_v = ahead_vel.replace(self.world.bodies[h].linvel());
            let (reach, width) = (size.length, size.width);
            // Yaw is symmetric every quarter turn for a square product,
            // every half turn otherwise.
            let period = if (size.length - size.width).abs() < 1e-3 {
                std::f32::consts::FRAC_PI_2
            } else {
                std::f32::consts::PI
            };
            // A product this close to the centre line is in the lane.
            let capture = width / 2.0;
            // Products run single file in spawn order: the one spawned
            // before is the one in front (held ones included). `reach` and
            // `width` below are then the centre-to-centre distance at
            // contact and the side offset that clears it: half of each
            // one's size (the product's own with one type).
            let leader = i
                .checked_sub(1)
                .and_then(|j| {
                    Some((
                        self.world.bodies.get(self.products[j])?,
                        ahead_size?,
                        ahead_v?,
                    ))
                })
                .map(|(l, ls, lv)| {
                    (
                        l.translation(),
                        lv,
                        (size.length + ls.length) / 2.0,
                        (size.width + ls.width) / 2.0,
                    )
                });
            let b = &mut self.world.bodies[h];
            if b.user_data == FROZEN {
                // Stays frozen while the one in front stands against it.
                let pos = b.translation();
                let stays = leader.is_some_and(|(lp, lv, contact, _)| {
                    lv.length() < STANDING_SPEED && (lp - pos).length() - contact < 2.0 * FOLLOW_GAP
                });
                if stays {
                    continue;
                }
                b.set_body_type(RigidBodyType::Dynamic, true);
                b.user_data = RIDING;
            }
            if b.user_data != RIDING || !b.is_dynamic() {
                continue;
            }
            let pos = b.translation();
            let Some(seg) = segment_under(places, pos, reach / 2.0, ends) else {
                fall(b);
                continue;
            };
            let (_, place, _) = &places[seg];
            // The lane: a product whose centre is within half its width of
            // the centre line is put on it, and its sideways speed dropped.
            let rel = pos - place.point;
            let lateral = rel - place.dir * rel.dot(place.dir) - Vector::Y * rel.y;
            // (Only when off it: moving a collider makes rapier recompute
            // its contacts, which a standing queue otherwise keeps.)
            let pos = if lateral.length() <= capture && lateral.length() > LANE_SLACK {
                let p = pos - lateral;
                b.set_translation(p, false);
                let v = b.linvel();
                b.set_linvel(place.dir * v.dot(place.dir), false);
                p
            } else {
                pos
            };
            let Some(target) = self.hooks.belt_velocity(seg as u128 + 1, Some(pos)) else {
                continue;
            };
            // Along the belt, friction: the speed moves towards the belt's
            // by at most `grip`. Across it, the guides: the product moves
            // sideways only as the centring pull says, whatever a collision
            // did in the last step (a product squeezed out of a queue is
            // held by the rails, not shot off the belt).
            let along = b.linvel().dot(place.dir);
            let belt = target.dot(place.dir);
            // Behind another product, it goes no faster than closes the gap
            // in this step: it meets the one in front as in an inelastic
            // collision, and a queue stands without pressing into itself.
            let mut behind_standing = false;
            let mut limit = f32::INFINITY;
            if let Some((lp, lv, contact, clear)) = leader {
                // In front along the belt and in the lane (a leader that
                // has turned a corner is out of the way once it is a
                // product's width to the side).
                let d = lp - pos;
                let gap = d.dot(place.dir) - contact;
                let side = (d - place.dir * d.dot(place.dir) - Vector::Y * d.y).length();
                if gap > -contact && side < clear {
                    limit = lv.dot(place.dir).max(0.0) + gap.max(0.0) / dt;
                    behind_standing = gap < FOLLOW_GAP && lv.length() < STANDING_SPEED;
                }
            }
            let along = (along + (belt - along).clamp(-grip, grip)).min(limit);
            let sideways = target - place.dir * belt;
            // Standing against a standing product: frozen (kinematic, at
            // rest) until that one moves, so a standing queue costs the
            // solver nothing (see the module's decisions).
            if behind_standing && along.abs() < STANDING_SPEED {
                b.set_linvel(Vector::ZERO, false);
                b.set_angvel(Vector::ZERO, false);
                b.set_body_type(RigidBodyType::KinematicVelocityBased, false);
                b.user_data = FROZEN;
                continue;
            }
            let v = place.dir * along + Vector::new(sideways.x, 0.0, sideways.z);
            b.set_linvel(v, true);
            let forward = *b.rotation() * Vector::X;
            let err =
                crate::physics::convert::atan2(forward.cross(place.dir).y, forward.dot(place.dir));
            let err = (err + period / 2.0).rem_euclid(period) - period / 2.0;
            let spin = (err * YAW_GAIN).clamp(-YAW_MAX, YAW_MAX);
            b.set_angvel(Vector::Y * spin, true);
        }
    }

    /// Products standing in a queue now: on a belt (not falling), nearly
    /// still, and not held by a station.
    pub(super) fn standing(&self) -> usize {
        self.products
            .iter()
            .filter(|h| {
                let b = &self.world.bodies[**h];
                b.user_data == FROZEN
                    || (b.body_type() == RigidBodyType::Dynamic
                        && b.linvel().length() < STANDING_SPEED
                        && b.translation().y > 0.0)
            })
            .count()
    }
}

/// A product's body `user_data` in the copy: riding on the analytical
/// belt drive (0, the default, never occurs in a copy once it is riding;
/// [`FALLING`] once it has left the belts).
const RIDING: u128 = 1;
/// See [`RIDING`].
const FALLING: u128 = 2;
/// Standing in a queue, kinematic until the product in front moves.
const FROZEN: u128 = 3;

/// How fast (1/s) a riding product's yaw follows its segment's heading,
/// and the fastest it turns (rad/s): a product turns through a 90° corner
/// in about the time it takes to cross the belt.
const YAW_GAIN: f32 = 8.0;
const YAW_MAX: f32 = 4.0;

/// Puts a product on the analytical belt drive: it keeps its height, and
/// gravity, which the belt's support would cancel, is off.
fn ride(b: &mut RigidBody) {
    b.user_data = RIDING;
    b.set_enabled_translations(true, false, true, true);
    b.set_gravity_scale(0.0, true);
    let v = b.linvel();
    b.set_linvel(Vector::new(v.x, 0.0, v.z), true);
}

/// The belt segment under `pos`: the last one (in flow order) whose
/// surface holds the centre, else one within `support` of its ends (a
/// product bridges a seam or a small gap until its centre is past half
/// of it), except past the end of an outfeed's last segment (`ends`).
fn segment_under(
    places: &[(usize, BeltPlace, f32)],
    pos: Vector,
    support: f32,
    ends: &[usize],
) -> Option<usize> {
    let within = |slack: f32| {
        places
            .iter()
            .enumerate()
            .rev()
            .find(|(i, (_, place, len))| {
                let rel = pos - place.point;
                let along = rel.dot(place.dir);
                let lateral = (rel - place.dir * along - Vector::Y * rel.y).length();
                let end = if ends.contains(i) { *len } else { *len + slack };
                along >= -slack - SEAM_SLACK && along <= end && lateral <= place.half_width
            })
            .map(|(i, _)| i)
    };
    within(0.0).or_else(|| within(support))
}

/// A product this far (m) off its lane's centre line is put back on it.
const LANE_SLACK: f32 = 0.0005;

/// A centre this far (m) before a segment's start is on that segment: a
/// product in its lane is up to [`LANE_SLACK`] either side of the centre
/// line, and at a corner the centre line is the next segment's start.
/// Without it, a product that happened to be on the far side of its lane
/// ran on past the corner before it turned (the contact model turns it
/// there), and crossed the demo's outfeed 0.15 s late.
const SEAM_SLACK: f32 = 2.0 * LANE_SLACK;

/// A product closer than this (m) to the one in front is touching it.
const FOLLOW_GAP: f32 = 0.002;

/// Hands a product that left the belts to gravity.
fn fall(b: &mut RigidBody) {
    b.user_data = FALLING;
    b.set_enabled_translations(true, true, true, true);
    b.set_gravity_scale(1.0, true);
}

/// The last segment of each conveyor whose end is an outfeed (the line's
/// `main_out` and the diverters' `branch_outs`): a product leaves there,
/// where elsewhere it bridges a seam (`segment_under`).
pub(super) fn outfeed_segments(
    main_out: usize,
    branch_outs: &[usize],
    places: &[(usize, BeltPlace, f32)],
) -> Vec<usize> {
    std::iter::once(main_out)
        .chain(branch_outs.iter().copied())
        .filter_map(|c| places.iter().rposition(|(pc, ..)| *pc == c))
        .collect()
}
