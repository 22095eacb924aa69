//! A place on a belt (a station, a photo-eye, a pusher, a diverter, a
//! segment's start) in world terms, and a product's distance along the
//! belt past it.

use rapier3d::prelude::Vector;

use super::convert::{self, Frame};
use crate::config::layout::Layout;

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
    /// `position` metres along the belt laid out as `layout` (the one
    /// layout walk, [`Layout::at`]); a position past the end (which
    /// validation refuses) is the end.
    pub(super) fn new(frame: &Frame, layout: &Layout, position: f64) -> Self {
        let (at, heading) = layout.at(position);
        BeltPlace {
            point: frame.to_world(at, layout.height),
            dir: convert::heading_dir(heading),
            half_width: (layout.width / 2.0) as f32,
            heading,
        }
    }

    /// A product centre's distance along the belt past this place (negative:
    /// before it), if the centre is over the belt's width here and not
    /// below its surface.
    pub(super) fn along(&self, pos: Vector) -> Option<f32> {
        self.along_lateral(pos).map(|(along, _)| along)
    }

    /// [`BeltPlace::along`], and how far the centre is from the centre
    /// line, sideways.
    pub(super) fn along_lateral(&self, pos: Vector) -> Option<(f32, f32)> {
        let rel = pos - self.point;
        let along = rel.dot(self.dir);
        let lateral = (rel - self.dir * along - Vector::Y * rel.y).length();
        (lateral <= self.half_width && rel.y >= 0.0).then_some((along, lateral))
    }
}
