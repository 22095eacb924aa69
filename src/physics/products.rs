//! Products: spawning them, where they are along the line, and taking
//! them off it when they are done (out, diverted, pushed or lost).

use rapier3d::prelude::{
    ColliderBuilder, PhysicsWorld, RigidBodyBuilder, RigidBodyHandle, RigidBodyType, Rotation,
    Vector,
};

use super::belts::ConveyorModel;
use super::convert::Frame;
use super::place::BeltPlace;
use super::{DROP_GAP, Finished, LineModel, PRODUCT_EDGE_RADIUS, PhysicsError, PlanPoint, convert};
use crate::config::Product;
use crate::config::layout::Layout;

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

    /// Moves the `n` products nearest downstream of `at` (centre past it,
    /// up to `to`) back behind it, the first of them with its centre at
    /// `at` and each next `pitch` metres further upstream, nose to tail;
    /// the products already behind `at` are shifted back as far as needed
    /// to stay `pitch` apart. Says how many products moved.
    ///
    /// The twin uses it when it detects a jam late: the products it let
    /// past an eye since the eye went blocked are the ones the plant holds
    /// in a queue behind it. Positions run back along the conveyors in
    /// flow (config) order, a position before a conveyor's start being on
    /// the end of the one before it: a plain chain of belts; no product is
    /// put before the first belt's start (the move stops there). Products
    /// a station holds stay where they are, and those behind one go behind
    /// it. Spawn order stays flow order (the drive's followers rely on it):
    /// the products moved are older than those behind `at`, and go in
    /// front of them. A moved product stands (velocity zero) and is free
    /// (dynamic, riding the analytical drive if the line is on it).
    pub fn compact_behind(
        &mut self,
        at: (usize, f64),
        to: (usize, f64),
        n: usize,
        pitch: f64,
    ) -> usize {
        let held: Vec<RigidBodyHandle> = self
            .stations
            .iter()
            .filter_map(|s| s.held.map(|(h, _)| h))
            .collect();
        let key = |(c, m): (usize, f64)| (c, m as f32);
        let (a, b) = (key(at), key(to));
        let before = |p: (usize, f32), q: (usize, f32)| p.0 < q.0 || (p.0 == q.0 && p.1 < q.1);
        // Every product on a belt, nearest `at` first either way: those
        // past it (to move) and those behind it (to make room).
        let mut past: Vec<(usize, f32, RigidBodyHandle)> = Vec::new();
        let mut behind: Vec<(usize, f32, RigidBodyHandle)> = Vec::new();
        for &h in &self.products {
            let Some((c, m)) = self.line_place(h) else {
                continue;
            };
            if before(a, (c, m)) {
                if before((c, m), b) {
                    past.push((c, m, h));
                }
            } else {
                behind.push((c, m, h));
            }
        }
        let order = |x: &(usize, f32, RigidBodyHandle), y: &(usize, f32, RigidBodyHandle)| {
            (x.0, x.1)
                .partial_cmp(&(y.0, y.1))
                .unwrap_or(std::cmp::Ordering::Equal)
        };
        past.sort_by(order);
        behind.sort_by(|x, y| order(y, x));
        // The `n` nearest, the one furthest downstream first: it takes
        // the head of the queue.
        let mut moving: Vec<(usize, f32, RigidBodyHandle)> = past
            .into_iter()
            .filter(|p| !held.contains(&p.2))
            .take(n)
            .collect();
        moving.reverse();
        if moving.is_empty() {
            return 0;
        }
        let lengths: Vec<f64> = self.geometry.iter().map(Layout::length).collect();
        // `(conveyor, metres)` moved back by `d` metres along the chain.
        let back = |(mut c, mut m): (usize, f64), d: f64| {
            m -= d;
            while m < 0.0 {
                let prev = c.checked_sub(1)?;
                m += lengths.get(prev)?;
                c = prev;
            }
            Some((c, m))
        };
        // Where each product goes, or `None` if the chain runs out before
        // every let-past product has a place behind `at`.
        let plan = |moving: &[(usize, f32, RigidBodyHandle)]| {
            let mut places = Vec::new();
            let mut slot = Some(at);
            let queue = moving.iter().map(|p| (*p, true));
            for ((c, m, h), let_past) in queue.chain(behind.iter().map(|p| (*p, false))) {
                let here = (c, f64::from(m));
                let Some(s) = slot else {
                    // Out of room: fine for the line's own products (they
                    // stay), not for one that must go behind `at`.
                    return (!let_past).then_some(places);
                };
                if held.contains(&h) {
                    // A held product stays; those behind it queue behind it.
                    slot = back(if before(key(s), key(here)) { s } else { here }, pitch);
                    continue;
                }
                if !let_past && !before(key(s), key(here)) {
                    // Far enough back already, and so is everything behind.
                    break;
                }
                places.push((h, s));
                slot = back(s, pitch);
            }
            Some(places)
        };
        // If they do not all fit, the ones furthest downstream stay where
        // they are (in front, so spawn order is still flow order).
        let mut from = 0;
        let places = loop {
            match moving.get(from..) {
                Some(rest) if !rest.is_empty() => match plan(rest) {
                    Some(places) => break places,
                    None => from += 1,
                },
                _ => return 0,
            }
        };
        for &(h, place) in &places {
            self.move_product(h, place);
        }
        places.len()
    }

    /// Puts product `h` with its centre at `place` (conveyor, metres), at
    /// rest, aligned with the belt there, as a spawn puts it.
    fn move_product(&mut self, h: RigidBodyHandle, (c, m): (usize, f64)) {
        let Some(g) = self.geometry.get(c) else {
            return;
        };
        let place = BeltPlace::new(&self.frame, g, m);
        let height = body_size(&self.world, h).map_or(0.0, |s| s.height);
        let center = place.point + Vector::Y * (height / 2.0 + DROP_GAP as f32);
        let rotation = Rotation::from_scaled_axis(convert::heading_rotation(place.heading));
        let Some(b) = self.world.bodies.get_mut(h) else {
            return;
        };
        b.set_body_type(RigidBodyType::Dynamic, true);
        b.set_translation(center, true);
        b.set_rotation(rotation, true);
        b.set_linvel(Vector::ZERO, true);
        b.set_angvel(Vector::ZERO, true);
        self.board(h);
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

#[cfg(test)]
mod tests {
    use super::super::BeltDrive;
    use super::super::fixtures::{self, DT};
    use super::*;

    /// Two 2 m belts in a row, `a` then `b`, and a 0.1 m box product.
    fn chain() -> LineModel {
        let line = fixtures::line(
            vec![
                fixtures::belt("a", 0.6, [0.0, 0.0], &[(2.0, 0.0)]),
                fixtures::belt("b", 0.6, [2.0, 0.0], &[(2.0, 0.0)]),
            ],
            Some(fixtures::product((0.1, 0.1, 0.1), 0.5)),
        );
        let mut m = LineModel::new(&line, DT);
        m.set_belt_drive(BeltDrive::Analytical);
        m
    }

    #[test]
    fn compact_behind_moves_the_products_let_past_back_behind_the_eye() {
        let mut m = chain();
        // In spawn order, which is flow order: one past the stretch, two
        // let past the eye at b 0.2, then the line's own behind it.
        let places = [(1, 1.5), (1, 0.9), (1, 0.5), (1, 0.15), (0, 1.92), (0, 1.0)];
        let hs: Vec<_> = places
            .iter()
            .map(|&(c, p)| m.spawn_product_at(c, p).expect("spawn"))
            .collect();
        let moved = m.compact_behind((1, 0.2), (1, 1.2), 2, 0.102);
        // The two let past, the one behind the eye on b, and the one at the
        // end of a (too close to the new queue); not the one at a 1.0.
        assert_eq!(moved, 4);
        let at = |h| m.line_place(h).map(|(c, a)| (c, f64::from(a)));
        let expect = [
            (1, 1.5),
            (1, 0.2),
            (1, 0.098),
            (0, 1.996),
            (0, 1.894),
            (0, 1.0),
        ];
        for (h, (c, p)) in hs.iter().zip(expect) {
            let (ci, along) = at(*h).expect("on a belt");
            assert!(
                ci == c && (along - p).abs() < 1e-3,
                "{:?} for {:?}",
                (ci, along),
                (c, p)
            );
        }
        for h in &hs[1..5] {
            let b = &m.world.bodies[*h];
            assert!(b.is_dynamic(), "a moved product is free");
            assert!(b.linvel().length() < 1e-6, "and stands: {:?}", b.linvel());
        }
        // On the belts again they ride in spawn order, none through another.
        m.set_belt_speed("a", 0.5).expect("belt");
        m.set_belt_speed("b", 0.5).expect("belt");
        for _ in 0..40 {
            m.step().expect("step");
        }
        let flow: Vec<(usize, f32)> = hs.iter().filter_map(|h| m.line_place(*h)).collect();
        assert_eq!(flow.len(), hs.len(), "{flow:?}");
        for w in flow.windows(2) {
            let gap = if w[0].0 == w[1].0 {
                w[0].1 - w[1].1
            } else {
                2.0 - w[1].1 + w[0].1
            };
            assert!(gap >= 0.099, "products overlap: {flow:?}");
        }
    }

    #[test]
    fn compact_behind_stops_at_the_first_belt_start_and_moves_nothing_without_products() {
        let mut m = chain();
        assert_eq!(m.compact_behind((0, 0.3), (1, 1.0), 3, 0.102), 0);
        let hs: Vec<_> = [(0, 0.9), (0, 0.7), (0, 0.5), (0, 0.35)]
            .iter()
            .map(|&(c, p)| m.spawn_product_at(c, p).expect("spawn"))
            .collect();
        // Four let past 0.2 m, room for two behind it (0.2, 0.098): the
        // two nearest go there, the two in front of them stay (spawn order
        // stays flow order), and none leaves the line.
        assert_eq!(m.compact_behind((0, 0.2), (1, 1.0), 4, 0.102), 2);
        let along = |h| m.line_place(h).map(|(_, a)| f64::from(a)).unwrap_or(-1.0);
        let expect = [0.9, 0.7, 0.2, 0.098];
        for (h, p) in hs.iter().zip(expect) {
            assert!((along(*h) - p).abs() < 1e-3, "{} for {p}", along(*h));
        }
    }

    #[test]
    fn compact_behind_leaves_a_held_product_and_queues_behind_it() {
        use crate::config::{Station, StationCycle};
        use std::time::Duration;
        let mut line = fixtures::line(
            vec![
                fixtures::belt("a", 0.6, [0.0, 0.0], &[(2.0, 0.0)]),
                fixtures::belt("b", 0.6, [2.0, 0.0], &[(2.0, 0.0)]),
            ],
            Some(fixtures::product((0.1, 0.1, 0.1), 0.5)),
        );
        line.stations.push(Station {
            id: fixtures::loc("st".into()),
            conveyor: fixtures::loc("a".into()),
            position: fixtures::loc(1.5),
            cycle: StationCycle::Fixed(Duration::from_secs(60)),
            commissioned: None,
            rate_tag: None,
        });
        let mut m = LineModel::new(&line, DT);
        m.set_belt_drive(BeltDrive::Analytical);
        let hs: Vec<_> = [(1, 0.6), (1, 0.4), (0, 1.45), (0, 1.2)]
            .iter()
            .map(|&(c, p)| m.spawn_product_at(c, p).expect("spawn"))
            .collect();
        // Belt a brings the third product into the station; b stands.
        m.set_belt_speed("a", 0.5).expect("belt");
        for _ in 0..400 {
            if m.stations()[0].holding() {
                break;
            }
            m.step().expect("step");
        }
        assert_eq!(m.stations()[0].held.map(|(h, _)| h), Some(hs[2]));
        m.set_belt_speed("a", 0.0).expect("belt");
        let along = |m: &LineModel, h| m.line_place(h).map(|(c, a)| (c, f64::from(a)));
        let (held_at, last_at) = (along(&m, hs[2]), along(&m, hs[3]));
        // Two let past b 0.1: one fits on b, the next goes onto the end of
        // a, and the queue then has to be behind the held product, where
        // the last one already is.
        assert_eq!(m.compact_behind((1, 0.1), (1, 1.5), 2, 0.102), 2);
        let near = |p: Option<(usize, f64)>, q: (usize, f64)| {
            p.is_some_and(|p| p.0 == q.0 && (p.1 - q.1).abs() < 1e-3)
        };
        assert!(near(along(&m, hs[0]), (1, 0.1)), "{:?}", along(&m, hs[0]));
        assert!(near(along(&m, hs[1]), (0, 1.998)), "{:?}", along(&m, hs[1]));
        assert_eq!(along(&m, hs[2]), held_at, "the held product stays");
        assert_eq!(along(&m, hs[3]), last_at, "the one behind it is clear");
        assert_eq!(m.stations()[0].held.map(|(h, _)| h), Some(hs[2]));
    }
}
