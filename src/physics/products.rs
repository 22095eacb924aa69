//! Products: spawning them, where they are along the line, and taking
//! them off it when they are done (out, diverted, pushed or lost).

use rapier3d::prelude::{ColliderBuilder, PhysicsWorld, RigidBodyBuilder, RigidBodyHandle, Vector};

use super::belts::ConveyorModel;
use super::convert::Frame;
use super::place::BeltPlace;
use super::{DROP_GAP, Finished, LineModel, PRODUCT_EDGE_RADIUS, PhysicsError, PlanPoint, convert};
use crate::config::Product;

impl LineModel {
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
        let place = BeltPlace::new(&self.frame, c, position);
        let center = place.point + Vector::Y * (p.height / 2.0 + DROP_GAP) as f32;
        let heading = place.heading.to_radians() as f32;
        self.insert_product(center, heading)
    }

    pub(super) fn insert_product(
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
        self.board(handle);
        Ok(handle)
    }

    /// Every product's centre, in spawn order, in plan coordinates.
    pub fn product_positions(&self) -> Vec<PlanPoint> {
        self.products
            .iter()
            .map(|h| self.frame.to_plan(self.world.bodies[*h].translation()))
            .collect()
    }

    /// Every product's centre as plan offsets (east, north, elevation)
    /// from the line's frame origin ([`LineModel::frame`]), in spawn order:
    /// unlike [`LineModel::product_positions`], never rounded at the size
    /// of the plan's coordinates, so differences between steps are exact
    /// wherever the line is drawn.
    pub fn product_offsets(&self) -> Vec<PlanPoint> {
        self.products
            .iter()
            .map(|h| self.frame.to_local(self.world.bodies[*h].translation()))
            .collect()
    }

    /// The line's local frame: its world is plan coordinates less the
    /// frame's origin (see [`convert`]).
    pub fn frame(&self) -> Frame {
        self.frame
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
    ///
    /// Past a corner a centre is over two segments at once (within half a
    /// belt's width of the joint, the one before the turn reaches it too):
    /// of the segments of the first conveyor that hold it, the one whose
    /// centre line it is nearest is its own, the first on a tie. Taking the
    /// first would put a product 10 cm past a right-angle corner at the
    /// corner. The holders need not be consecutive: a straight before a
    /// tight curve can reach a product three 10 cm chords into the curve
    /// while the chords between do not, so the whole conveyor is scanned
    /// (its belts do not overlap; `twin check` refuses that).
    pub(super) fn line_place(&self, h: RigidBodyHandle) -> Option<(usize, f32)> {
        let pos = self.world.bodies.get(h)?.translation();
        let mut offset = 0.0;
        let mut last_ci = usize::MAX;
        let mut best: Option<(f32, usize, f32)> = None;
        for (ci, place, len) in &self.segment_places {
            if *ci != last_ci {
                if best.is_some() {
                    break;
                }
                (offset, last_ci) = (0.0, *ci);
            }
            let held = place
                .along_lateral(pos)
                .filter(|(a, _)| (0.0..=*len).contains(a));
            match held {
                Some((a, lateral)) if best.is_none_or(|(l, ..)| lateral < l) => {
                    best = Some((lateral, *ci, offset + a));
                }
                Some(_) | None => {}
            }
            offset += len;
        }
        best.map(|(_, ci, along)| (ci, along))
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
    pub(super) fn active_type(&self) -> Option<&Product> {
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
pub(super) fn body_size(world: &PhysicsWorld, h: RigidBodyHandle) -> Option<BodySize> {
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
