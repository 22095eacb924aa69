//! Photo-eyes as the physics expects them: sensor sheets across a belt,
//! read after each step.

use rapier3d::prelude::{
    ActiveCollisionTypes, ColliderBuilder, ColliderHandle, PhysicsWorld, RigidBodyType, Vector,
};

use super::place::BeltPlace;
use super::{LineModel, convert};
use crate::config::PhotoEye;

/// Half the photo-eye sheet's height and thickness, and its gap above the
/// belt (so it never touches the belt collider).
pub(super) const EYE_HALF_HEIGHT: f32 = 0.25;
pub(super) const EYE_HALF_THICKNESS: f32 = 0.005;
pub(super) const EYE_GAP: f32 = 0.001;

/// A photo-eye as the physics expects it: a sensor collider, a thin sheet
/// (1 cm along the belt, the belt's width across, from 1 mm above the
/// surface to 0.5 m up) across the belt, so any product crossing its
/// position blocks it whatever the product's height.
#[derive(Debug, Clone)]
pub struct PhotoEyeModel {
    pub id: String,
    /// The measured digital input this eye is compared with (`twin::residuals`).
    pub tag: String,
    pub(super) collider: ColliderHandle,
    pub(super) blocked: bool,
    pub(super) rising_edges: u64,
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
impl LineModel {
    /// The photo-eyes, in config order (those on known conveyors).
    pub fn photo_eyes(&self) -> &[PhotoEyeModel] {
        &self.photo_eyes
    }

    /// After a step: each eye's expected state from the sensor's
    /// intersections, counting clear → blocked edges.
    pub(super) fn update_photo_eyes(&mut self) {
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
}

impl PhotoEyeModel {
    /// The eye `e` at `place`, its sensor inserted into `world`.
    pub(super) fn build(world: &mut PhysicsWorld, e: &PhotoEye, place: BeltPlace) -> Self {
        let sensor = ColliderBuilder::cuboid(EYE_HALF_THICKNESS, EYE_HALF_HEIGHT, place.half_width)
            .sensor(true)
            // Held products are kinematic, and kinematic-vs-fixed pairs are
            // off by default: the eye must see them too.
            .active_collision_types(ActiveCollisionTypes::all())
            .translation(place.point + Vector::Y * (EYE_GAP + EYE_HALF_HEIGHT))
            .rotation(convert::heading_rotation(place.heading))
            .build();
        PhotoEyeModel {
            id: e.id.value.clone(),
            tag: e.tag.value.clone(),
            collider: world.colliders.insert(sensor),
            blocked: false,
            rising_edges: 0,
        }
    }
}
