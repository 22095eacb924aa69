//! Diverters: while their PLC coil is on, the main belt's contact velocity
//! steers products in their window onto the branch conveyor.

use rapier3d::prelude::Vector;

use super::LineModel;
use super::belts::BeltHooks;
use super::convert::{self, Frame};
use super::place::BeltPlace;
use crate::config::layout::Layout;
use crate::config::{Line, Product};

/// A diverter: while its coil is on, products reaching it are steered off
/// the belt sideways onto its branch conveyor; while off, they pass on.
///
/// The mechanism is the belt's own contact velocity ([`BeltHooks`]): while
/// fired, the main belt gives a product whose centre is in the diverter's
/// *window* (one product length along the belt, centred on its position) a
/// surface velocity along the branch's first heading, at the main belt's
/// speed, instead of along the belt and back to its centre line. The
/// product slides sideways onto the branch, whose belt then carries it
/// away. That is how steered-wheel and pop-up roller diverters work, and
/// it costs nothing more than a test of the few fired windows in the hook:
/// no extra collider, no body switched, nothing in the broad phase, and a
/// clone (the lookahead) copies it with the hooks. A sensor or a separate
/// belt piece would have needed its own bookkeeping per step for the same
/// effect. A diverter released while a product is only part-way over keeps
/// that product's centre on the main belt, whose guides pull it back.
///
/// A product is the diverter's when its centre was in the fired window;
/// [`LineModel::remove_finished`] counts it as diverted (here and in
/// [`Finished::diverted`]) when it leaves the end of the branch conveyor,
/// not while it is on the branch: the branch's end is the outfeed the
/// plant counts at.
#[derive(Debug, Clone)]
pub struct DiverterModel {
    pub id: String,
    /// The coil tag whose value fires the diverter
    /// ([`LineModel::set_diverter_at`]).
    pub coil_tag: String,
    /// Index of the main conveyor and of the branch conveyor.
    pub conveyor: usize,
    pub branch: usize,
    /// Index of the diverter's window in [`BeltHooks`].
    pub(super) window: usize,
    pub(super) fired: bool,
    pub(super) diverted: u64,
}

impl DiverterModel {
    /// Whether the coil was last set fired.
    pub fn fired(&self) -> bool {
        self.fired
    }

    /// Products this diverter sent to its branch that have left the
    /// branch's end (counted by [`LineModel::remove_finished`]).
    pub fn diverted(&self) -> u64 {
        self.diverted
    }
}

/// A diverter's window as the belt hooks see it.
#[derive(Debug, Clone)]
pub(super) struct DiverterWindow {
    /// The main conveyor's index.
    pub(super) conveyor: usize,
    /// The diverter's position on the belt's centre line, and the belt's
    /// direction there.
    pub(super) point: Vector,
    pub(super) dir: Vector,
    /// Half the window's length along the belt, and how far from the centre
    /// line a product's centre may be and still be over the belt (its
    /// half-width plus a product length).
    pub(super) half_len: f32,
    pub(super) reach: f32,
    /// Unit world direction of the branch's first segment.
    pub(super) out: Vector,
    pub(super) fired: bool,
}

impl DiverterWindow {
    pub(super) fn holds(&self, pos: Vector) -> bool {
        let rel = pos - self.point;
        let along = rel.dot(self.dir);
        let lateral = (rel - self.dir * along - Vector::Y * rel.y).length();
        along.abs() <= self.half_len && lateral <= self.reach
    }
}
impl LineModel {
    /// The diverters, in config order (those whose conveyor and branch are
    /// known and differ).
    pub fn diverters(&self) -> &[DiverterModel] {
        &self.diverters
    }

    /// Fires a diverter (its coil is on) or releases it, for the next
    /// steps; an index past the diverters is ignored, as for pushers.
    pub fn set_diverter_at(&mut self, diverter: usize, fired: bool) {
        if let Some(d) = self.diverters.get_mut(diverter) {
            d.fired = fired;
            if let Some(w) = self.hooks.diverters.get_mut(d.window) {
                w.fired = fired;
            }
        }
    }

    /// After a step: marks the products in a fired diverter's window as
    /// that diverter's, for `remove_finished` (the latest diverter wins
    /// should a product pass two). Unfired diverters cost a flag test.
    pub(super) fn update_diverters(&mut self) {
        for (k, d) in self.diverters.iter().enumerate() {
            let Some(w) = self.hooks.diverters.get(d.window).filter(|w| w.fired) else {
                continue;
            };
            for h in &self.products {
                let Some(b) = self.world.bodies.get(*h) else {
                    continue;
                };
                if !w.holds(b.translation()) {
                    continue;
                }
                match self.diverted_by.iter_mut().find(|(p, _)| p == h) {
                    Some(mark) => mark.1 = k,
                    None => self.diverted_by.push((*h, k)),
                }
            }
        }
    }
}

impl DiverterModel {
    /// The line's diverters onto a known branch other than their own
    /// conveyor (validation refuses the rest), each with its window added
    /// to `hooks`. `belts` are the line's conveyors laid out.
    pub(super) fn build_all(
        hooks: &mut BeltHooks,
        line: &Line,
        frame: &Frame,
        belts: &[Layout],
        envelope: Option<&Product>,
    ) -> Vec<Self> {
        let index = |id: &str| line.conveyors.iter().position(|c| c.id.value == id);
        let mut diverters = Vec::new();
        for d in &line.diverters {
            let (Some(main), Some(branch)) = (index(&d.conveyor.value), index(&d.to.value)) else {
                continue;
            };
            if main == branch {
                continue;
            }
            let place = BeltPlace::new(frame, &belts[main], d.position.value);
            // A window sized for the longest type steers every type.
            let reach = envelope.map_or(0.2, |p| p.length) as f32;
            let out_heading = belts[branch].pieces.first().map_or(0.0, |p| p.heading);
            diverters.push(DiverterModel {
                id: d.id.value.clone(),
                coil_tag: d.coil_tag.value.clone(),
                conveyor: main,
                branch,
                window: hooks.diverters.len(),
                fired: false,
                diverted: 0,
            });
            hooks.diverters.push(DiverterWindow {
                conveyor: main,
                point: place.point,
                dir: place.dir,
                half_len: reach / 2.0,
                reach: place.half_width + reach,
                out: convert::heading_dir(out_heading),
                fired: false,
            });
        }
        diverters
    }
}
