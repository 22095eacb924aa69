//! The one place where plant coordinates meet rapier's.
//!
//! The config speaks *plan* coordinates: x east, y north, elevation up,
//! metres, headings in degrees counter-clockwise from +x, as a drawing of the
//! line seen from above. rapier is Y-up with glam types (`glamx`, re-exported
//! by rapier). The mapping is plan (x, y, elevation) → world (x, elevation,
//! −y), which makes a plan heading θ exactly a rotation by θ about world +Y.
//!
//! rapier works in `f32`, whose spacing at 1e5 m is 8 mm: a line drawn in
//! site-grid or UTM-style coordinates would have products that cannot move
//! a 5 ms step's few millimetres. So the world is a line's *local frame*
//! ([`Frame`]): plan coordinates less the frame's origin (the line's first
//! conveyor's start), taken in `f64` before the cast to `f32`. A line far
//! from the origin then lays out the same `f32` world as at the origin, and
//! what `f32` cannot resolve within the line's own extent `twin check`
//! refuses (`config::limits`).
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

/// A line's local frame: where its world's origin is in plan.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Frame {
    origin: [f64; 2],
}

impl Frame {
    /// The frame whose world origin is the plan point `origin`.
    pub fn new(origin: [f64; 2]) -> Self {
        Frame { origin }
    }

    /// The plan point at the world's origin.
    pub fn origin(&self) -> [f64; 2] {
        self.origin
    }

    /// A plan position and elevation into the world, relative to the
    /// frame's origin in `f64`, then to `f32`.
    pub fn to_world(&self, p: [f64; 2], elevation: f64) -> Vector {
        let [ox, oy] = self.origin;
        Vector::new((p[0] - ox) as f32, elevation as f32, -((p[1] - oy) as f32))
    }

    /// A world position into plan coordinates, rounded to `f32` (within
    /// half an `f32` spacing at the plan's size: 4 mm at 1e5 m; for work
    /// that needs the line's own precision use the world, or
    /// [`Frame::to_local`]).
    pub fn to_plan(&self, v: Vector) -> PlanPoint {
        // An origin at 0 is skipped rather than added, so that a -0.0
        // stays -0.0: a line at the origin reports the bits it always did.
        let shift = |w: f32, o: f64| {
            if o == 0.0 {
                w
            } else {
                (f64::from(w) + o) as f32
            }
        };
        PlanPoint {
            x: shift(v.x, self.origin[0]),
            y: shift(-v.z, self.origin[1]),
            z: v.y,
        }
    }

    /// A world position as plan offsets from the frame's origin: east,
    /// north, elevation, exact (no rounding at the plan's size).
    pub fn to_local(&self, v: Vector) -> PlanPoint {
        to_plan(v)
    }
}

/// A plan position and elevation into the world of a frame at the plan's
/// origin (for a raw rapier world, as the benches build).
pub fn to_world(x: f64, y: f64, elevation: f64) -> Vector {
    Frame::default().to_world([x, y], elevation)
}

/// A world position of a frame at the plan's origin into plan coordinates.
pub fn to_plan(v: Vector) -> PlanPoint {
    PlanPoint {
        x: v.x,
        y: -v.z,
        z: v.y,
    }
}

/// `(sin, cos)` of a heading in degrees, by `libm`: the one layout walk's
/// trigonometry ([`crate::config::layout::sin_cos_deg`]), whose results
/// are the same on every system (see docs/physics.md, "Determinism").
/// Every trigonometric call of the model goes through here.
pub fn sin_cos_deg(heading_deg: f64) -> (f64, f64) {
    crate::config::layout::sin_cos_deg(heading_deg)
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

    #[test]
    fn a_far_frame_lays_out_the_world_a_frame_at_the_origin_does() {
        let far = Frame::new([1e5, -2e5]);
        let w = far.to_world([1e5 + 1.25, -2e5 + 0.5], 0.8);
        assert_eq!(w, to_world(1.25, 0.5, 0.8));
        // Without the frame, f32 cannot tell 1e5 + 1.25 from 1e5 + 1.25 ± 4 mm.
        assert_eq!(
            far.to_local(w),
            PlanPoint {
                x: 1.25,
                y: 0.5,
                z: 0.8
            }
        );
        let p = far.to_plan(w);
        assert_eq!((p.x, p.y), ((1e5 + 1.25) as f32, (-2e5 + 0.5) as f32));
        // A frame at the origin keeps the sign of a zero.
        let z = Frame::default().to_plan(Vector::new(-0.0, 0.0, 0.0));
        assert!(z.x.is_sign_negative() && z.y.is_sign_negative());
    }
}
