//! The conveyor layout walk: a conveyor's centre line in plan as straight
//! pieces (straight segments, and curves as chords of at most
//! [`CHORD_DEG`]), and the point a position along the belt is at.
//!
//! Everything that needs to know where a belt is (the config checks, the
//! physics model, its drawing, the virtual plant's truth) calls this one
//! walk, so that they agree to the bit: a station `twin check` puts on a
//! chord is where the physics holds products, and where the sim measures
//! the belt's pull. The trigonometry is `libm`'s, not the platform's,
//! whose last bit may differ between systems: the physics must lay out
//! the same world everywhere for a replay to be bit-identical everywhere
//! (docs/physics.md, "Determinism").

use super::conveyor::Conveyor;
use super::line::Line;

/// A point in plan: x east, y north, metres.
pub type PlanXy = [f64; 2];

/// `(sin, cos)` of a heading in degrees, by `libm` (see the module docs).
/// Every trigonometric call that places something on a line goes through
/// here.
pub fn sin_cos_deg(heading_deg: f64) -> (f64, f64) {
    libm::sincos(heading_deg.to_radians())
}

/// One straight piece of a conveyor's centre line: a straight segment, or
/// one chord of a curve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Piece {
    /// Index of the configured segment it is (a chord: part of).
    pub segment: usize,
    /// Where it starts and ends on the centre line.
    pub start: PlanXy,
    pub end: PlanXy,
    /// Direction of travel: degrees counter-clockwise from east, and as a
    /// unit vector `[cos, sin]`.
    pub heading: f64,
    pub dir: PlanXy,
    /// Metres along the belt: a chord has its arc's length over the number
    /// of chords, so that positions along the belt mean the config's
    /// metres (see [`Conveyor::chords`]).
    pub length: f64,
}

/// A conveyor laid out in plan: its pieces from its `origin`, in order of
/// travel, each starting where the previous one ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    pub pieces: Vec<Piece>,
    /// Where the first piece starts (the conveyor's `origin`).
    pub start: PlanXy,
    /// Where the last piece ends (`start` without pieces).
    pub end: PlanXy,
    /// The belt's width, and its surface's height above the floor.
    pub width: f64,
    pub height: f64,
}

impl Layout {
    /// Walks `c`'s centre line from its origin. Each piece's end is its
    /// start plus its direction times its length, summed in this order, in
    /// `f64`: the physics depends on these exact bits.
    pub fn of(c: &Conveyor) -> Self {
        let mut at = c.origin;
        let mut pieces = Vec::with_capacity(c.segments.len());
        for (segment, s) in c.chords() {
            let (sin, cos) = sin_cos_deg(s.heading);
            let length = s.length.value;
            let end = [at[0] + cos * length, at[1] + sin * length];
            pieces.push(Piece {
                segment,
                start: at,
                end,
                heading: s.heading,
                dir: [cos, sin],
                length,
            });
            at = end;
        }
        Layout {
            pieces,
            start: c.origin,
            end: at,
            width: c.width.value,
            height: c.height,
        }
    }

    /// The belt's length along its centre line (the configured segments'
    /// lengths summed, as the chords keep them).
    pub fn length(&self) -> f64 {
        self.pieces.iter().map(|p| p.length).sum()
    }

    /// The point `position` metres along the centre line, and the heading
    /// of the piece it is on. A position before the start is the start, one
    /// past the end (refused by validation) the end. At a joint the point
    /// belongs to the piece that ends there.
    pub fn at(&self, position: f64) -> (PlanXy, f64) {
        let mut left = position.max(0.0);
        let last = self.pieces.len().saturating_sub(1);
        for (k, p) in self.pieces.iter().enumerate() {
            if k == last || left <= p.length {
                let d = left.min(p.length);
                return (
                    [p.start[0] + p.dir[0] * d, p.start[1] + p.dir[1] * d],
                    p.heading,
                );
            }
            left -= p.length;
        }
        (self.start, 0.0)
    }
}

/// The origin of a line's local frame: where its first conveyor starts,
/// where products enter. The physics works in `f32` relative to it (see
/// `physics::convert::Frame`), so that a line drawn in site-grid or UTM
/// coordinates far from `[0, 0]` runs exactly as it would at the origin.
pub fn frame_origin(line: &Line) -> PlanXy {
    line.conveyors.first().map_or([0.0, 0.0], |c| c.origin)
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::config::{CHORD_DEG, Curve, Loc, Segment};

    /// A conveyor from `origin` with `segments` as (length or radius,
    /// heading, turn): a turn of 0 is a straight segment of that length, any
    /// other a curve of that radius.
    pub(crate) fn conveyor(origin: PlanXy, segments: &[(f64, f64, f64)]) -> Conveyor {
        Conveyor {
            id: Loc::new("c".into(), 0..0),
            speed_tag: Loc::new("c.speed".into(), 0..0),
            width: Loc::new(0.5, 0..0),
            height: 0.8,
            origin,
            segments: segments
                .iter()
                .map(|&(l, heading, turn)| Segment {
                    length: Loc::new(
                        if turn == 0.0 {
                            l
                        } else {
                            l * turn.abs().to_radians()
                        },
                        0..0,
                    ),
                    heading,
                    curve: (turn != 0.0).then_some(Curve { radius: l, turn }),
                })
                .collect(),
            accumulation_zone: None,
        }
    }

    /// Conveyors of up to six segments, straight or curved (up to a
    /// U-turn either way), anywhere within 1 km of the origin.
    pub(crate) fn conveyors() -> impl Strategy<Value = Conveyor> {
        let segment = (
            0.05f64..20.0,
            -180.0f64..180.0,
            prop_oneof![Just(0.0), -180.0f64..-1.0, 1.0f64..180.0],
        );
        (
            -1000.0f64..1000.0,
            -1000.0f64..1000.0,
            proptest::collection::vec(segment, 1..6),
        )
            .prop_map(|(x, y, segs)| conveyor([x, y], &segs))
    }

    /// Conveyors as `twin check` lets them through and more tightly: no
    /// joint turns more than 90°, curves' radii are at least the belt's
    /// width, and the direction of travel stays within 90° of the first
    /// one, so the belt never comes back over itself.
    pub(crate) fn unfolded_conveyors() -> impl Strategy<Value = Conveyor> {
        // Right-angle corners, the most common, get their own share.
        let segment = (
            0.05f64..20.0,
            prop_oneof![Just(-90.0), Just(90.0), -90.0f64..90.0],
            prop_oneof![Just(0.0), -180.0f64..180.0],
            0.5f64..20.0,
        );
        (
            -1000.0f64..1000.0,
            -1000.0f64..1000.0,
            -180.0f64..180.0,
            proptest::collection::vec(segment, 1..6),
        )
            .prop_map(|(x, y, first, segments)| {
                let mut theta = 0.0_f64;
                let segs: Vec<(f64, f64, f64)> = segments
                    .iter()
                    .enumerate()
                    .map(|(k, &(length, jump, turn, radius))| {
                        if k > 0 {
                            theta = (theta + jump).clamp(-90.0, 90.0);
                        }
                        let turn = (theta + turn).clamp(-90.0, 90.0) - theta;
                        let heading = first + theta;
                        if turn.abs() < 1.0 {
                            (length, heading, 0.0)
                        } else {
                            theta += turn;
                            (radius, heading, turn)
                        }
                    })
                    .collect();
                conveyor([x, y], &segs)
            })
    }

    fn dist(a: PlanXy, b: PlanXy) -> f64 {
        (a[0] - b[0]).hypot(a[1] - b[1])
    }

    #[test]
    fn a_quarter_curve_is_twelve_chords_along_the_arc() {
        let c = conveyor([1.0, 2.0], &[(3.0, 0.0, 0.0), (2.0, 0.0, 90.0)]);
        let l = Layout::of(&c);
        assert_eq!(l.pieces.len(), 13);
        assert_eq!(l.pieces[0].end, [4.0, 2.0]);
        // The arc ends 2 m on and 2 m to the left, heading north.
        let arc_end = [6.0, 4.0];
        assert!(dist(l.end, arc_end) < 2.0 * std::f64::consts::FRAC_PI_2 * 7.2e-4);
        assert!((l.length() - (3.0 + std::f64::consts::PI)).abs() < 1e-12);
        assert_eq!(l.at(3.0), ([4.0, 2.0], 0.0));
        assert_eq!(l.at(-1.0).0, [1.0, 2.0]);
        assert_eq!(l.at(100.0).0, l.end);
        assert_eq!(sin_cos_deg(90.0), libm::sincos(std::f64::consts::FRAC_PI_2));
    }

    proptest! {
        /// The pieces join without a gap, keep the configured length, and
        /// a curve's chords turn at most `CHORD_DEG` each and end where the
        /// arc ends (within the 0.07 % the arc-length chords overshoot).
        #[test]
        fn chords_join_keep_the_length_and_follow_the_arc(c in conveyors()) {
            let l = Layout::of(&c);
            prop_assert_eq!(l.pieces[0].start, c.origin);
            for w in l.pieces.windows(2) {
                prop_assert_eq!(w[0].end, w[1].start);
            }
            prop_assert_eq!(l.pieces.last().map(|p| p.end), Some(l.end));
            let configured: f64 = c.segments.iter().map(|s| s.length.value).sum();
            prop_assert!((l.length() - configured).abs() <= 1e-12 * configured);
            for (k, s) in c.segments.iter().enumerate() {
                let chords: Vec<&Piece> = l.pieces.iter().filter(|p| p.segment == k).collect();
                let (first, last) = (chords[0], chords[chords.len() - 1]);
                let Some(curve) = s.curve else {
                    prop_assert_eq!(chords.len(), 1);
                    prop_assert_eq!(first.heading, s.heading);
                    continue;
                };
                let n = chords.len() as f64;
                prop_assert!(curve.turn.abs() / n <= CHORD_DEG + 1e-12);
                prop_assert!(curve.turn.abs() / (n - 1.0).max(0.5) > CHORD_DEG - 1e-12 || n == 1.0);
                // The true arc's end from the curve's start.
                let (s0, c0) = sin_cos_deg(s.heading);
                let (s1, c1) = sin_cos_deg(s.end_heading());
                let side = curve.radius * curve.turn.signum();
                let centre = [first.start[0] - s0 * side, first.start[1] + c0 * side];
                let arc_end = [centre[0] + s1 * side, centre[1] - c1 * side];
                prop_assert!(
                    dist(last.end, arc_end) <= s.length.value * 7.2e-4 + 1e-9,
                    "segment {k}: chords end {:?}, arc {:?}", last.end, arc_end
                );
            }
        }

        /// A position along the belt is that many metres along its piece,
        /// from where the pieces before it end, and positions are as far
        /// apart in plan as along the belt at most (the walk is continuous
        /// at every joint and never stretches the belt).
        #[test]
        fn positions_along_the_belt_map_onto_the_chords(
            c in conveyors(),
            a in 0.0f64..1.0,
            b in 0.0f64..1.0,
        ) {
            let l = Layout::of(&c);
            let length = l.length();
            let (pa, pb) = (a * length, b * length);
            let (at_a, heading_a) = l.at(pa);
            // The piece `pa` falls on, and its start along the belt.
            let mut offset = 0.0;
            let piece = l
                .pieces
                .iter()
                .find(|p| {
                    let on = pa <= offset + p.length;
                    if !on {
                        offset += p.length;
                    }
                    on
                })
                .unwrap_or(&l.pieces[l.pieces.len() - 1]);
            let d = (pa - offset).min(piece.length);
            let expected = [piece.start[0] + piece.dir[0] * d, piece.start[1] + piece.dir[1] * d];
            prop_assert!(dist(at_a, expected) <= 1e-9 * (1.0 + length), "{at_a:?} vs {expected:?}");
            prop_assert_eq!(heading_a, piece.heading);
            let (at_b, _) = l.at(pb);
            prop_assert!(dist(at_a, at_b) <= (pa - pb).abs() + 1e-9 * (1.0 + length));
            prop_assert!(dist(l.at(0.0).0, c.origin) == 0.0);
            prop_assert!(dist(l.at(length).0, l.end) <= 1e-9 * (1.0 + length));
        }
    }
}
