//! Stations: each stops a product that reaches it for one cycle, holding
//! it kinematic behind a closed gate while the queue presses on it.

use std::time::Duration;

use rapier3d::prelude::{
    ActiveCollisionTypes, ColliderBuilder, ColliderHandle, PhysicsWorld, RigidBodyHandle,
    RigidBodyType, SharedShape, Vector,
};

use super::eye::{EYE_GAP, EYE_HALF_HEIGHT, EYE_HALF_THICKNESS};
use super::place::BeltPlace;
use super::{LineModel, body_size, convert};
use crate::config::{Product, Station, StationCycle};

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
    pub(super) place: BeltPlace,
    /// `None`: hold indefinitely (the cycle time is not known).
    pub(super) cycle_ns: Option<u128>,
    /// The product held, and the model time (ns) its cycle started at.
    pub(super) held: Option<(RigidBodyHandle, u128)>,
    /// The last product released, which must not be caught again while its
    /// centre is still at the station.
    pub(super) released: Option<RigidBodyHandle>,
    /// Set at a release with a product queued: its cycle starts then.
    pub(super) next_start: Option<u128>,
    /// A sensor over the catch window, so that catching asks the narrow
    /// phase which products are there instead of testing every product on
    /// the line at every station on every step.
    pub(super) sensor: ColliderHandle,
    /// A wall across the belt, enabled while a product is held.
    pub(super) gate: ColliderHandle,
    /// Length of the catch window past the station's position (m): half a
    /// product, or more when a step moves a product further than that (see
    /// [`LineModel::fit_catch_windows`]).
    pub(super) catch_len: f32,
    /// Products released since the model was built (the machine's count).
    pub(super) releases: u64,
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
impl LineModel {
    /// The stations, in config order (those on known conveyors).
    pub fn stations(&self) -> &[StationModel] {
        &self.stations
    }

    /// Sets a station's cycle time for the next steps; `None` holds the
    /// product it has (or the next one to arrive) until a cycle is known.
    pub fn set_station_cycle_at(&mut self, station: usize, cycle: Option<Duration>) {
        if let Some(s) = self.stations.get_mut(station) {
            s.cycle_ns = cycle.map(|c| c.as_nanos());
        }
    }

    /// After a step: releases products whose cycle is over, then catches
    /// products that reached an idle station.
    pub(super) fn update_stations(&mut self) {
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

    /// Sizes every station's catch window for the step length and the
    /// fastest belt now: a product must not cross the window between two
    /// steps, or the station never sees it. The window is half a product
    /// (the live model's 5 ms steps need no more below 7 m/s); a coarser
    /// step gets 1.25 × the distance the fastest belt moves in one step,
    /// capped below one product length so that at most one product's centre
    /// is ever inside. A product caught further in is held a little
    /// downstream, an error of at most one step's travel.
    pub fn fit_catch_windows(&mut self) {
        let len = self.catch_len();
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
}

impl LineModel {
    /// The catch window [`LineModel::fit_catch_windows`] sizes for.
    fn catch_len(&self) -> f32 {
        // The longest type, as the sensor built in `new`.
        let reach = self.envelope.as_ref().map_or(0.0, |p| p.length) as f32;
        let fastest = self
            .hooks
            .speeds
            .iter()
            .fold(0.0_f32, |m, v| m.max(v.abs()));
        (fastest * self.dt.as_secs_f32() * 1.25)
            .max(reach / 2.0)
            .min(0.9 * reach)
    }

    /// [`LineModel::fit_catch_windows`] when the belts' speeds or the step
    /// have changed what it gives, before each step of a model whose belts
    /// change speed under it (the live model on the analytical drive's
    /// coarser step). Moving a sensor costs the broad phase an update, so
    /// an unchanged window is left alone.
    pub(super) fn refit_catch_windows(&mut self) {
        let len = self.catch_len();
        if self.stations.iter().any(|s| s.catch_len != len) {
            self.fit_catch_windows();
        }
    }
}

impl StationModel {
    /// The station `s` at `place`, its sensor and (open) gate inserted into
    /// `world` in that order.
    pub(super) fn build(
        world: &mut PhysicsWorld,
        s: &Station,
        place: BeltPlace,
        envelope: Option<&Product>,
    ) -> Self {
        let (cycle_tag, cycle_ns) = match &s.cycle {
            // A model built from the config starts at the commissioned
            // cycle, if there is one; the twin's tick sets the tag's value
            // (or none, when it is not good) before its first step.
            StationCycle::Tag(t) => (Some(t.value.clone()), s.commissioned.map(|d| d.as_nanos())),
            StationCycle::Fixed(d) => (None, Some(d.as_nanos())),
        };
        // The catch window is the first half product length past the
        // station's position; the sensor covers it with a margin, and
        // `update_stations` keeps the exact test. Sized for the longest
        // type, so that every type is caught.
        let reach = envelope.map_or(0.0, |p| p.length) as f32;
        let half_len = (reach / 4.0).max(EYE_HALF_THICKNESS) + 0.005;
        let sensor = ColliderBuilder::cuboid(half_len, EYE_HALF_HEIGHT, place.half_width)
            .sensor(true)
            .active_collision_types(ActiveCollisionTypes::all())
            .translation(
                place.point + place.dir * (reach / 4.0) + Vector::Y * (EYE_GAP + EYE_HALF_HEIGHT),
            )
            .rotation(convert::heading_rotation(place.heading))
            .build();
        // As tall as the tallest type, to stop any of them.
        let gate_h = envelope.map_or(0.2, |p| p.height) as f32;
        let mut gate = ColliderBuilder::cuboid(0.002, gate_h / 2.0, place.half_width)
            .translation(place.point + Vector::Y * (gate_h / 2.0 + EYE_GAP))
            .rotation(convert::heading_rotation(place.heading))
            .friction(0.0)
            .build();
        gate.set_enabled(false);
        StationModel {
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
        }
    }
}
