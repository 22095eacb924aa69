//! `[[lines.conveyors]]`: a belt's centre line as straight and curved
//! segments, and how curves are laid out as chords.

use super::decode::{Loc, Sink, Table, positive};
use super::diagnostics::Diagnostic;

/// A belt conveyor: a chain of straight segments, each starting where the
/// previous one ends. Plan coordinates: x east, y north, metres; headings in
/// degrees counter-clockwise from +x.
#[derive(Debug, Clone)]
pub struct Conveyor {
    pub id: Loc<String>,
    /// The tag carrying the belt's *measured* speed in m/s.
    pub speed_tag: Loc<String>,
    pub width: Loc<f64>,
    /// Height of the belt surface above the floor.
    pub height: f64,
    /// Plan position (x, y) where the first segment starts.
    pub origin: [f64; 2],
    pub segments: Vec<Segment>,
    /// For a zero-pressure accumulation conveyor: the length of its zones,
    /// metres from its start (`None`: a plain belt). See
    /// `physics::zones`.
    pub accumulation_zone: Option<Loc<f64>>,
}

/// One piece of a conveyor's centre line: straight, or a curve.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Along the centre line, metres; for a curve its arc length
    /// (`radius × turn`), located at its `radius` key.
    pub length: Loc<f64>,
    /// Direction of travel where the segment starts.
    pub heading: f64,
    /// `Some` for a curved segment.
    pub curve: Option<Curve>,
}

/// A curved belt (a curve conveyor module): the centre line is a circular
/// arc.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Curve {
    /// Radius of the centre line, metres.
    pub radius: f64,
    /// How far the direction of travel turns, degrees; positive turns left
    /// (counter-clockwise).
    pub turn: f64,
}

/// Most a curve's direction turns over one of the straight chords it is
/// laid out with (physics, plan drawing, geometry checks). 7.5° keeps a
/// chord's mid-point within `r (1 - cos 3.75°)` = 0.2 % of the radius of
/// the true arc (2 mm on a 1 m curve), and the joints between chords shallow
/// enough that a product rides over them.
pub const CHORD_DEG: f64 = 7.5;

impl Segment {
    /// Direction of travel where the segment ends.
    pub fn end_heading(&self) -> f64 {
        self.heading + self.curve.map_or(0.0, |c| c.turn)
    }
}

impl Conveyor {
    /// The centre line as straight pieces, each with the index of the
    /// configured segment it belongs to: a straight segment as it is, a
    /// curve as equal chords of at most [`CHORD_DEG`], each heading along
    /// the arc at its middle. A chord is given the arc's length over the
    /// number of chords (0.07 % longer than the true chord at 7.5°), so
    /// that a position along the belt means the same metres as in the
    /// config. [`crate::config::layout::Layout`] walks them in plan.
    pub fn chords(&self) -> Vec<(usize, Segment)> {
        let mut out = Vec::with_capacity(self.segments.len());
        for (k, s) in self.segments.iter().enumerate() {
            match s.curve {
                None => out.push((k, s.clone())),
                Some(c) => {
                    let n = (c.turn.abs() / CHORD_DEG).ceil().max(1.0);
                    let step = c.turn / n;
                    for i in 0..n as usize {
                        out.push((
                            k,
                            Segment {
                                length: Loc::new(s.length.value / n, s.length.span.clone()),
                                heading: s.heading + step * (i as f64 + 0.5),
                                curve: None,
                            },
                        ));
                    }
                }
            }
        }
        out
    }
}

pub(super) fn decode_conveyor(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Conveyor> {
    let t_span = t.span();
    let id = t.req_str(sink, "id");
    let speed_tag = t.req_str(sink, "speed_tag");
    let width = t.req_f64(sink, "width");
    let width = positive(sink, &t, "width", width, "metres");
    let height = t.opt_f64(sink, "height");
    let height = match height {
        Some(h) => positive(sink, &t, "height", Some(h), "metres").map(|h| h.value),
        None => Some(0.8),
    };
    let origin = match t.opt_f64_array(sink, "origin") {
        None => Some([0.0, 0.0]),
        Some(xy) => match xy.as_slice() {
            [x, y] => Some([*x, *y]),
            _ => {
                if let Some(span) = t.key_span("origin") {
                    sink.push(
                        Diagnostic::error(
                            span,
                            t.key_path("origin"),
                            format!(
                                "origin has {} number{}",
                                xy.len(),
                                if xy.len() == 1 { "" } else { "s" }
                            ),
                        )
                        .expected("two numbers: the plan position [x, y] in metres"),
                    );
                }
                None
            }
        },
    };
    let zone = t.opt_f64(sink, "accumulation_zone");
    let zone_ok =
        zone.is_none() || positive(sink, &t, "accumulation_zone", zone.clone(), "metres").is_some();
    let tables = t.opt_table_array(sink, "segments");
    let n_tables = tables.len();
    // A curve without a `heading` continues the direction the previous
    // segment ends in (a straight one keeps its default, east).
    let mut end_heading = 0.0;
    let segments: Vec<Segment> = tables
        .into_iter()
        .filter_map(|s| decode_segment(sink, s))
        .map(|(mut s, heading_given)| {
            if s.curve.is_some() && !heading_given {
                s.heading = end_heading;
            }
            end_heading = s.end_heading();
            s
        })
        .collect();
    if n_tables == 0 {
        sink.push(
            Diagnostic::error(
                t.key_span("segments").unwrap_or(t_span),
                t.key_path("segments"),
                "a conveyor needs at least one segment",
            )
            .expected("one or more `[[lines.conveyors.segments]]` tables, each with a `length`")
            .help("add `segments = [{ length = 5.0 }]` for a straight 5 m belt"),
        );
    }
    t.finish(sink);
    // A broken segment is reported where it is; the conveyor is dropped so
    // that the physics never sees a partial belt.
    if segments.len() != n_tables || n_tables == 0 || !zone_ok {
        return None;
    }
    Some(Conveyor {
        id: id?,
        speed_tag: speed_tag?,
        width: width?,
        height: height?,
        origin: origin?,
        segments,
        accumulation_zone: zone,
    })
}

/// A segment, and whether its `heading` was given.
fn decode_segment(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<(Segment, bool)> {
    let heading = t.opt_f64(sink, "heading");
    let radius = t.opt_f64(sink, "radius");
    let turn = t.opt_f64(sink, "turn");
    let heading_given = heading.is_some();
    let heading = heading.map_or(0.0, |h| h.value);
    if radius.is_none() && turn.is_none() {
        let length = t.req_f64(sink, "length");
        let length = positive(sink, &t, "length", length, "metres");
        t.finish(sink);
        return Some((
            Segment {
                length: length?,
                heading,
                curve: None,
            },
            heading_given,
        ));
    }
    // A curve: `radius` and `turn`; its length follows from them.
    let mut ok = true;
    if let Some(span) = t.key_span("length") {
        sink.push(
            Diagnostic::error(
                span,
                t.key_path("length"),
                "a curved segment has `length` as well as `radius`/`turn`",
            )
            .expected("either `length` (a straight segment) or `radius` and `turn` (a curve)")
            .help("drop `length`: a curve's length is its radius times its turn in radians"),
        );
        ok = false;
    }
    let _ = t.opt_f64(sink, "length");
    for (key, v) in [("radius", &radius), ("turn", &turn)] {
        if v.is_none() {
            sink.push(
                Diagnostic::error(
                    t.span(),
                    t.key_path(key),
                    format!("a curved segment needs `{key}`"),
                )
                .expected("`radius` (metres, of the centre line) and `turn` (degrees, positive turns left)")
                .help("e.g. `{ radius = 0.8, turn = 90 }` for a quarter turn to the left"),
            );
            ok = false;
        }
    }
    let radius = positive(sink, &t, "radius", radius, "metres");
    let turn = match turn {
        Some(tv) if tv.value != 0.0 && tv.value.abs() <= 180.0 => Some(tv.value),
        Some(tv) => {
            sink.push(
                Diagnostic::error(
                    tv.span.clone(),
                    t.key_path("turn"),
                    format!("turn {} is not a curve", tv.value),
                )
                .expected("degrees, not 0, between -180 and 180 (positive turns left)")
                .help("a straight piece is a segment with `length`"),
            );
            None
        }
        None => None,
    };
    t.finish(sink);
    let (radius, turn) = (radius?, turn?);
    if !ok {
        return None;
    }
    Some((
        Segment {
            length: Loc::new(radius.value * turn.abs().to_radians(), radius.span.clone()),
            heading,
            curve: Some(Curve {
                radius: radius.value,
                turn,
            }),
        },
        heading_given,
    ))
}
