//! The one place where plant coordinates meet rapier's.
//!
//! The config speaks *plan* coordinates: x east, y north, elevation up,
//! metres, headings in degrees counter-clockwise from +x, as a drawing of the
//! line seen from above. rapier is Y-up with glam types (`glamx`, re-exported
//! by rapier). The mapping is plan (x, y, elevation) → world (x, elevation,
//! −y), which makes a plan heading θ exactly a rotation by θ about world +Y.
//!
//! Everything in here is plain `f32`/`f64` arithmetic. When the twin's own
//! geometry needs a linear-algebra type (curves, transfers, overlap checks for
//! `twin check`), nalgebra comes in here too, and only here converts to and
//! from glam.

use rapier3d::prelude::{AngVector, Vector};

/// A point in plan coordinates, as the rest of the twin sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanPoint {
    /// East, metres.
    pub x: f32,
    /// North, metres.
    pub y: f32,
    /// Elevation above the floor, metres.
    pub z: f32,
}

/// A plan position and elevation into rapier's world frame.
pub fn to_world(x: f64, y: f64, elevation: f64) -> Vector {
    Vector::new(x as f32, elevation as f32, -(y as f32))
}

/// A rapier world position into plan coordinates.
pub fn to_plan(v: Vector) -> PlanPoint {
    PlanPoint {
        x: v.x,
        y: -v.z,
        z: v.y,
    }
}

/// `(sin, cos)` of a heading in degrees, from the `libm` crate rather than
/// the platform's math library, whose results may differ in the last bit
/// between systems: the twin's geometry must be the same everywhere for a
/// replay to be bit-identical everywhere (see docs/physics.md,
/// "Determinism"). Every trigonometric call of the model goes through here.
pub fn sin_cos_deg(heading_deg: f64) -> (f64, f64) {
    libm::sincos(heading_deg.to_radians())
}

/// `atan2` by `libm`, for the same reason as [`sin_cos_deg`].
pub fn atan2(y: f32, x: f32) -> f32 {
    libm::atan2f(y, x)
}

/// The unit world direction of a plan heading, on the floor plane.
pub fn heading_dir(heading_deg: f64) -> Vector {
    let (sin, cos) = sin_cos_deg(heading_deg);
    Vector::new(cos as f32, 0.0, -(sin as f32))
}

/// The rotation (scaled axis) that turns world +X onto a plan heading.
pub fn heading_rotation(heading_deg: f64) -> AngVector {
    AngVector::new(0.0, heading_deg.to_radians() as f32, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rapier3d::prelude::Rotation;

    #[test]
    fn plan_round_trips_and_headings_agree_with_rotations() {
        let p = to_plan(to_world(1.5, -2.0, 0.8));
        assert_eq!((p.x, p.y, p.z), (1.5, -2.0, 0.8));
        for heading in [0.0, 30.0, 90.0, 180.0, 270.0] {
            let rotated = Rotation::from_scaled_axis(heading_rotation(heading)) * Vector::X;
            assert!(
                (rotated - heading_dir(heading)).length() < 1e-6,
                "{heading}"
            );
        }
        // North is +y in plan.
        let north = to_plan(heading_dir(90.0));
        assert!((north.y - 1.0).abs() < 1e-6 && north.x.abs() < 1e-6);
    }
}
