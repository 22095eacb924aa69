//! What the physics can represent: sizes and extents a line must keep for
//! the model to move its products faithfully. Beyond them nothing fails
//! loudly at run time: products stop or sink into their belt while the
//! twin reports its line `good`. So `twin check` refuses them, located.
//!
//! The physics (rapier) works in `f32`, in the line's local frame
//! (`physics::convert::Frame`: plan less the line's first conveyor's
//! origin). Where the line is drawn therefore does not matter; how far it
//! reaches from that origin does, and so do sizes near rapier's contact
//! tolerances.

use std::ops::Range;

use super::decode::Sink;
use super::diagnostics::Diagnostic;
use super::geometry::num;
use super::layout::{self, Layout};
use super::line::Line;

/// Smallest product dimension, belt width and straight segment the model
/// represents, metres. rapier lets a resting contact sink up to 1 mm into
/// the belt and predicts contacts 2 mm ahead (its defaults at a length
/// unit of 1 m): below 5 mm a product's centre can sink under the belt's
/// surface, where no station, eye or zone sees it (a 1e-7 m product does
/// not move at all). Real products and belts are centimetres and more, so
/// a smaller number is a unit mistake.
pub const MIN_SIZE: f64 = 0.005;

/// How far (in x or y) a line may reach from its first conveyor's start,
/// metres. rapier's `f32` positions are spaced 15 µm apart between 128 and
/// 256 m: a product on a slow (0.1 m/s) belt moves 0.5 mm per 5 ms step,
/// which that spacing rounds by at most 1.5 % (measured: 2.3 % slower at
/// 200 m; at 1 km products fall through their belt). Beyond 256 m the
/// spacing doubles with every doubling of the reach.
pub const MAX_REACH: f64 = 256.0;

/// Largest plan coordinate, metres: the layout walk runs in `f64`, whose
/// spacing at 1e9 m is 0.1 µm. UTM northings (1e7 m) and geocentric
/// coordinates (6.4e6 m) fit with room to spare.
pub const MAX_COORDINATE: f64 = 1e9;

/// A located error for a size under [`MIN_SIZE`]; `what` names the size
/// (`"a product's length"`).
pub(super) fn too_small(span: Range<usize>, path: String, what: &str, v: f64) -> Diagnostic {
    Diagnostic::error(
        span,
        path,
        format!("{what} ({v} m) is smaller than the physics can represent"),
    )
    .expected(format!(
        "at least {} m: the physics' contact tolerances are 1 to 2 mm, and a smaller product sinks into its belt",
        num(MIN_SIZE)
    ))
    .help("check units: metres (a 70 mm bottle is `0.07`)")
}

/// Belt widths, straight segments, and the line's reach from its frame's
/// origin. Called with finite numbers only.
pub(super) fn check_line(sink: &mut Sink, i: usize, line: &Line) {
    let lid = &line.id.value;
    let mut beyond = false;
    for (j, c) in line.conveyors.iter().enumerate() {
        let path = format!("lines[{i}].conveyors[{j}]");
        if c.width.value < MIN_SIZE {
            let what = format!("line \"{lid}\": the width of conveyor \"{}\"", c.id.value);
            let d = too_small(
                c.width.span.clone(),
                format!("{path}.width"),
                &what,
                c.width.value,
            );
            sink.push(d);
        }
        for (k, s) in c.segments.iter().enumerate() {
            if s.curve.is_none() && s.length.value < MIN_SIZE {
                let what = format!(
                    "line \"{lid}\": the length of segment {k} of conveyor \"{}\"",
                    c.id.value
                );
                let p = format!("{path}.segments[{k}].length");
                sink.push(too_small(s.length.span.clone(), p, &what, s.length.value));
            }
        }
        if let Some(v) = c.origin.iter().find(|v| v.abs() > MAX_COORDINATE) {
            sink.push(
                Diagnostic::error(
                    c.id.span.clone(),
                    format!("{path}.origin"),
                    format!(
                        "line \"{lid}\": conveyor \"{}\" starts at {v} m, beyond any plan",
                        c.id.value
                    ),
                )
                .expected(format!(
                    "plan coordinates within ±{} m",
                    num(MAX_COORDINATE)
                ))
                .help("check units: metres; site-grid or UTM coordinates are fine as they are"),
            );
            beyond = true;
        }
    }
    if !beyond {
        check_reach(sink, i, line);
    }
}

/// Every belt within [`MAX_REACH`] of the line's frame origin; reports the
/// conveyor reaching furthest.
fn check_reach(sink: &mut Sink, i: usize, line: &Line) {
    let origin = layout::frame_origin(line);
    let mut furthest: Option<(usize, f64)> = None;
    for (j, c) in line.conveyors.iter().enumerate() {
        let l = Layout::of(c);
        let half_width = l.width / 2.0;
        let reach = std::iter::once(l.start)
            .chain(l.pieces.iter().map(|p| p.end))
            .map(|p| (p[0] - origin[0]).abs().max((p[1] - origin[1]).abs()) + half_width)
            .fold(0.0, f64::max);
        if reach > MAX_REACH && furthest.is_none_or(|(_, r)| reach > r) {
            furthest = Some((j, reach));
        }
    }
    let Some((j, reach)) = furthest else {
        return;
    };
    let c = &line.conveyors[j];
    // The spacing of f32 values at that distance: 2^-23 of the power of
    // two below it.
    let spacing = reach.log2().floor().exp2() * f64::from(f32::EPSILON);
    let first = line.conveyors.first().map_or("", |c| c.id.value.as_str());
    sink.push(
        Diagnostic::error(
            c.id.span.clone(),
            format!("lines[{i}].conveyors[{j}]"),
            format!(
                "line \"{}\": conveyor \"{}\" reaches {} m from the start of conveyor \"{first}\", where the physics' f32 positions are {} µm apart, too coarse for the 0.5 mm a slow belt moves per step: products there would creep, stall or fall through the belt",
                line.id.value,
                c.id.value,
                num(reach),
                num(spacing * 1e6)
            ),
        )
        .expected(format!(
            "every conveyor of a line within {} m (in x and in y) of its first conveyor's `origin`",
            num(MAX_REACH)
        ))
        .help("check the origins and lengths (metres); a longer plant is several `[[lines]]`, each in its own frame (where a line is drawn does not matter, only how far it reaches)"),
    );
}
