//! Zero-pressure accumulation (ZPA) conveyors: zone control.
//!
//! Data flow: a conveyor with `accumulation_zone = L` is divided into zones
//! of L metres from its start. Before each step the model finds which zones
//! hold a product ([`LineModel::update_zones`]) and stops the drive of a
//! zone whose product has reached the zone's end while the zone in front is
//! occupied and not moving on; the belt hooks then give a stopped zone's
//! contacts no belt speed ([`BeltHooks::belt_velocity`](super::BeltHooks)),
//! and the lookahead's analytical drive reads the same hooks.
//!
//! Decisions:
//! - **The rule is the one ZPA controllers run**, zone by zone from the
//!   discharge end: a zone's photo-eye sits at its downstream end; a zone
//!   stops when its eye is blocked (its product's front has reached the end
//!   of the zone) and the next zone is occupied and either stopped itself or
//!   holding a product that stands (blocked further on). The discharge zone
//!   always runs: what it feeds decides whether its product moves. So a
//!   queue on a ZPA conveyor forms one product per zone, without the
//!   products pressing on each other (zero line pressure), and releases
//!   zone by zone when the front moves.
//! - **The eye is the zone's last half product length**: a product whose
//!   centre is there has its front at the zone's end.
//! - Cost: nothing for a line without ZPA conveyors; otherwise one pass over
//!   the products and the ZPA conveyors' segments per step.

use rapier3d::prelude::RigidBodyType;

use super::LineModel;
use super::drive::STANDING_SPEED;

/// Most zones one conveyor is divided into.
const MAX_ZONES: usize = 10_000;

/// One ZPA conveyor's zones, in the belt hooks.
#[derive(Debug, Clone, Default)]
pub(super) struct ZoneControl {
    /// Zone length, metres.
    pub length: f32,
    /// Per zone from the conveyor's start: whether its drive is stopped.
    pub stopped: Vec<bool>,
}

impl ZoneControl {
    /// Zones of `length` over a belt `belt_length` long (the last may be
    /// shorter).
    pub fn new(length: f32, belt_length: f32) -> Self {
        // Validation refuses zones shorter than the product; a model built
        // from an unchecked line still gets a bounded number of zones.
        let length = length.max(belt_length / MAX_ZONES as f32).max(1e-3);
        let n = ((belt_length / length).ceil().max(1.0) as usize).min(MAX_ZONES);
        ZoneControl {
            length,
            stopped: vec![false; n],
        }
    }

    /// The zone `along` metres from the conveyor's start lies in.
    pub fn zone_at(&self, along: f32) -> usize {
        let k = (along / self.length).floor().max(0.0) as usize;
        k.min(self.stopped.len().saturating_sub(1))
    }
}

impl LineModel {
    /// Before a step: each ZPA conveyor's zone drives, from where the
    /// products are now (see the module's rule).
    pub(super) fn update_zones(&mut self) {
        if self.hooks.zones.iter().all(Option::is_none) {
            return;
        }
        // Per ZPA conveyor and zone: occupied, its product at the eye, and
        // a product there standing.
        let mut seen: Vec<Vec<[bool; 3]>> = self
            .hooks
            .zones
            .iter()
            .map(|z| vec![[false; 3]; z.as_ref().map_or(0, |z| z.stopped.len())])
            .collect();
        for h in &self.products {
            let Some((c, along)) = self.line_place(*h) else {
                continue;
            };
            let Some(zc) = self.hooks.zones[c].as_ref() else {
                continue;
            };
            let b = &self.world.bodies[*h];
            let k = zc.zone_at(along);
            // The product's own half length: its front is at the eye.
            let half = super::body_size(&self.world, *h).map_or(0.0, |s| s.length / 2.0);
            let zone = &mut seen[c][k];
            zone[0] = true;
            zone[1] |= along >= (k + 1) as f32 * zc.length - half - 1e-3;
            zone[2] |=
                b.body_type() != RigidBodyType::Dynamic || b.linvel().length() < STANDING_SPEED;
        }
        for (zc, seen) in self.hooks.zones.iter_mut().zip(&seen) {
            let Some(zc) = zc else { continue };
            let n = zc.stopped.len();
            if let Some(last) = zc.stopped.last_mut() {
                *last = false;
            }
            for k in (0..n.saturating_sub(1)).rev() {
                let ([_, arrived, _], [occupied, _, standing]) = (seen[k], seen[k + 1]);
                zc.stopped[k] = arrived && occupied && (zc.stopped[k + 1] || standing);
            }
        }
    }
}
