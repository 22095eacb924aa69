//! A place on a belt (a station, a photo-eye, a pusher, a diverter, a
//! segment's start) in world terms, and a product's distance along the
//! belt past it.

use rapier3d::prelude::Vector;

use super::convert;
use crate::config::Conveyor;

/// A place on a belt (a station or a photo-eye), in world terms.
#[derive(Debug, Clone, Copy)]
pub(super) struct BeltPlace {
    /// On the belt surface, on its centre line.
    pub(super) point: Vector,
    /// Unit direction of travel of the segment the place is on.
    pub(super) dir: Vector,
    pub(super) half_width: f32,
    pub(super) heading: f64,
}

impl BeltPlace {
    /// `position` metres along `c`'s belt; a position past the end (which
    /// validation refuses) is clamped onto the last segment.
    pub(super) fn new(c: &Conveyor, position: f64) -> Self {
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
    pub(super) fn along(&self, pos: Vector) -> Option<f32> {
        let rel = pos - self.point;
        let along = rel.dot(self.dir);
        let lateral = (rel - self.dir * along - Vector::Y * rel.y).length();
        (lateral <= self.half_width && rel.y >= 0.0).then_some(along)
    }
}
