//! Geometry checks of a line's layout: what `twin check` can tell about the
//! physics twin before it runs.
//!
//! [`super::validate`] has already checked references (conveyors, tags) and
//! that each station and photo-eye stands on its belt; this module looks at
//! the plan: belts that overlap, belts that do not hand products on, turns a
//! product cannot make, stations and eyes in awkward places, numbers that
//! look like the wrong unit, and photo-eyes polled too slowly to see a
//! product pass.
//!
//! Severity follows one rule. An **error** is a layout the physics cannot
//! represent faithfully (two belts in the same place, a product wider than
//! its belt, a turn back on itself, two products held in the same place):
//! the twin's expectations would be wrong from the first product on. A
//! **warning** is a layout that is probably a mistake but that the model
//! runs as written, or one that may be deliberate for reasons the config
//! cannot express yet (transfers by robot or pusher, unknown belt speeds).
//!
//! Several keys (`origin`, `heading`, `height`, the product's dimensions)
//! are decoded without a location, so diagnostics about them point at the
//! conveyor's (or the line's) `id` and name the key in the key path.

use super::decode::Sink;
use super::diagnostics::{Diagnostic, Severity};
use super::layout::Layout;
use super::plan::*;
use super::{Conveyor, Line, PlantConfig, ProductType};

/// How far apart (in plan) a conveyor's end and the next one's start may be
/// and still hand products over, and how thin an overlap of two belts may be
/// (side-by-side transfers, belts butted together): 5 cm, what a transfer
/// plate or a belt's nose roller bridges.
const TOL: f64 = 0.05;

/// Above this a belt width is more likely millimetres or centimetres than
/// metres.
const MAX_WIDTH: f64 = 3.0;
/// Above this a belt height is more likely millimetres or centimetres.
const MAX_HEIGHT: f64 = 5.0;
/// Above this a single straight segment is more likely written in mm or cm.
const MAX_SEGMENT: f64 = 200.0;
/// Plausible product densities, kg/m³ of its bounding box: from foam
/// packaging to a solid steel part, with margin.
const MIN_DENSITY: f64 = 1.0;
const MAX_DENSITY: f64 = 20_000.0;
/// Sharpest turn a product can follow between two segments, degrees.
const MAX_TURN: f64 = 90.0;
/// Thickness of a belt's box in the physics model (`physics::BELT_THICKNESS`):
/// belts whose surfaces are further apart than this plus the product's
/// height pass over each other without touching.
const BELT_THICKNESS: f64 = 0.05;
/// The belt speed a photo-eye's polling is judged against when the config
/// gives no upper bound for it. The config does not know a belt's nominal
/// speed, so the check takes one slower than almost any packaging belt
/// runs: a poll that misses products even there is wrong on any line, and
/// the message says up to which speed the poll is good, for the integrator
/// to compare with the real one.
const SLOW_BELT: f64 = 0.1;

pub(super) fn check_geometry(sink: &mut Sink, cfg: &PlantConfig) {
    for (i, line) in cfg.lines.iter().enumerate() {
        // A conveyor that failed to decode is missing from the list: the
        // layout is incomplete, and gaps or overlaps found now would be
        // wrong. Its own error is already reported. Wrong references
        // (`validate`'s unknown speed tag, duplicate id) keep the conveyor.
        let prefix = format!("lines[{i}].conveyors");
        let broken = sink.diags.iter().any(|d| {
            d.severity == Severity::Error
                && d.path.starts_with(&prefix)
                && !d.message.starts_with("unknown tag")
                && !d.message.starts_with("duplicate")
        });
        if broken {
            continue;
        }
        check_line(sink, cfg, i, line);
    }
}

/// One straight piece of belt in plan: a straight segment, or a chord of a
/// curve ([`Layout`]).
#[derive(Debug, Clone)]
struct Seg {
    /// Index of the configured segment it is (part of), for diagnostics.
    src: usize,
    a: P,
    b: P,
    dir: P,
    heading: f64,
    /// The belt's outline, counter-clockwise.
    rect: [P; 4],
}

/// A conveyor laid out in plan.
#[derive(Debug, Clone)]
struct Belt<'c> {
    c: &'c Conveyor,
    j: usize,
    segs: Vec<Seg>,
    start: P,
    end: P,
    length: f64,
    half_width: f64,
}

impl<'c> Belt<'c> {
    fn new(j: usize, c: &'c Conveyor) -> Self {
        let half_width = c.width.value / 2.0;
        // As the physics lays the belt out: the one layout walk.
        let layout = Layout::of(c);
        let segs = layout
            .pieces
            .iter()
            .map(|p| Seg {
                src: p.segment,
                a: p.start,
                b: p.end,
                dir: p.dir,
                heading: p.heading,
                rect: rect(p.start, p.end, p.dir, half_width),
            })
            .collect();
        Belt {
            c,
            j,
            segs,
            start: layout.start,
            end: layout.end,
            length: c.segments.iter().map(|s| s.length.value).sum(),
            half_width,
        }
    }

    fn id(&self) -> &str {
        &self.c.id.value
    }

    /// The edge across the belt at its start or end.
    fn cap(&self, at_end: bool) -> (P, P) {
        let (p, dir) = match (at_end, self.segs.first(), self.segs.last()) {
            (false, Some(s), _) => (self.start, s.dir),
            (true, _, Some(s)) => (self.end, s.dir),
            _ => (self.start, [1.0, 0.0]),
        };
        let n = scale([-dir[1], dir[0]], self.half_width);
        (sub(p, n), add(p, n))
    }

    /// Distance from the edge across this belt's start (or end) to the
    /// nearest point of `other`'s outline.
    fn cap_gap(&self, at_end: bool, other: &Belt<'_>) -> f64 {
        let (p, q) = self.cap(at_end);
        other
            .segs
            .iter()
            .map(|s| seg_poly_dist(p, q, &s.rect))
            .fold(f64::INFINITY, f64::min)
    }
}

/// Where two belt outlines overlap by more than a hair: the overlap, if it
/// has an area and is thicker than [`TOL`] in every direction.
fn overlap(r1: &[P; 4], r2: &[P; 4]) -> Option<Vec<P>> {
    let poly = clip(r1, r2);
    (poly.len() >= 3 && area(&poly) > 1e-6 && min_width(&poly) > TOL).then_some(poly)
}

/// The turn from heading `from` to `to`, in degrees, -180 to 180.
pub(super) fn turn(from: f64, to: f64) -> f64 {
    let d = (to - from).rem_euclid(360.0);
    if d > 180.0 { d - 360.0 } else { d }
}

/// A number for a message: up to 3 decimals, no trailing zeros.
pub(super) fn num(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

pub(super) fn pt(p: P) -> String {
    format!("({}, {})", num(p[0]), num(p[1]))
}

/// Where one conveyor's end meets the next one's start.
#[derive(Debug, Clone, Copy)]
struct HandOver {
    from: usize,
    to: usize,
}

fn check_line(sink: &mut Sink, cfg: &PlantConfig, i: usize, line: &Line) {
    let lid = &line.id.value;
    // Numbers TOML allows but no plan can hold (`inf`, `nan`) would turn
    // every check below into nonsense; report them and stop here.
    let mut finite = true;
    for (j, c) in line.conveyors.iter().enumerate() {
        let path = format!("lines[{i}].conveyors[{j}]");
        let mut bad = |key: String, span: std::ops::Range<usize>, v: f64| {
            finite = false;
            sink.push(
                Diagnostic::error(
                    span,
                    key,
                    format!(
                        "line \"{lid}\", conveyor \"{}\": {v} is not a finite number",
                        c.id.value
                    ),
                )
                .expected("a finite number of metres (or degrees for a heading)"),
            );
        };
        if !c.width.value.is_finite() {
            bad(format!("{path}.width"), c.width.span.clone(), c.width.value);
        }
        if !c.height.is_finite() {
            bad(format!("{path}.height"), c.id.span.clone(), c.height);
        }
        for (k, v) in c.origin.iter().enumerate() {
            if !v.is_finite() {
                bad(format!("{path}.origin[{k}]"), c.id.span.clone(), *v);
            }
        }
        for (k, s) in c.segments.iter().enumerate() {
            if !s.length.value.is_finite() {
                let p = format!("{path}.segments[{k}].length");
                bad(p, s.length.span.clone(), s.length.value);
            }
            if !s.heading.is_finite() {
                let p = format!("{path}.segments[{k}].heading");
                bad(p, s.length.span.clone(), s.heading);
            }
        }
    }
    if !finite {
        return;
    }
    // Sizes and reach the physics cannot represent (`limits`).
    super::limits::check_line(sink, i, line);

    let belts: Vec<Belt<'_>> = line
        .conveyors
        .iter()
        .enumerate()
        .map(|(j, c)| Belt::new(j, c))
        .collect();

    check_product(sink, i, line, &belts);
    for b in &belts {
        check_conveyor(sink, i, lid, line, b);
    }
    let hand_overs = check_links(sink, i, line, &belts);
    check_overlaps(sink, i, line, &belts, &hand_overs);
    check_places(sink, i, line, &belts, &hand_overs);
    check_eye_sampling(sink, cfg, i, line);
}

fn check_product(sink: &mut Sink, i: usize, line: &Line, belts: &[Belt<'_>]) {
    let lid = &line.id.value;
    if line.product.is_none() {
        return;
    }
    if belts.is_empty() {
        sink.push(
            Diagnostic::error(
                line.id.span.clone(),
                format!("lines[{i}].product"),
                format!("line \"{lid}\" has a product but no conveyors: 0 m of belt to put it on"),
            )
            .expected("at least one `[[lines.conveyors]]` entry in a line with `[lines.product]`")
            .help("add the line's conveyors, or remove `[lines.product]`"),
        );
    }
    // Every type must fit every belt, and have a believable density.
    for (k, p) in line.product_types().iter().enumerate() {
        check_product_type(sink, i, line, belts, k, p);
    }
}

/// One product type's width against the belts, and its density.
fn check_product_type(
    sink: &mut Sink,
    i: usize,
    line: &Line,
    belts: &[Belt<'_>],
    k: usize,
    p: &ProductType,
) {
    let lid = &line.id.value;
    // A single `[lines.product]` keeps its messages; a listed type is named.
    let (the_product, path, at) = if line.products_listed {
        (
            format!("product \"{}\"", p.id.value),
            format!("lines[{i}].products[{k}]"),
            p.id.span.clone(),
        )
    } else {
        (
            "the product".to_string(),
            format!("lines[{i}].product"),
            line.id.span.clone(),
        )
    };
    for b in belts {
        if p.width > b.c.width.value {
            sink.push(
                Diagnostic::error(
                    b.c.width.span.clone(),
                    format!("lines[{i}].conveyors[{}].width", b.j),
                    format!(
                        "line \"{lid}\": {the_product} ({} m wide) is wider than conveyor \"{}\" ({} m)",
                        num(p.width),
                        b.id(),
                        num(b.c.width.value)
                    ),
                )
                .expected(format!("a belt at least {} m wide", num(p.width)))
                .help("check both widths (metres), and that the product's `length` is along the belt and `width` across it"),
            );
        }
        // A zone holds one product, with room to stop in.
        if let Some(z) = &b.c.accumulation_zone
            && z.value < p.length
        {
            sink.push(
                Diagnostic::error(
                    z.span.clone(),
                    format!("lines[{i}].conveyors[{}].accumulation_zone", b.j),
                    format!(
                        "line \"{lid}\": conveyor \"{}\" has accumulation zones of {} m, shorter than {the_product} ({} m long)",
                        b.id(),
                        num(z.value),
                        num(p.length)
                    ),
                )
                .expected(format!("zones at least {} m long", num(p.length)))
                .help("a zero-pressure zone holds one product: use the conveyor's zone pitch (often 0.3 to 1 m), in metres"),
            );
        }
    }
    let density = p.mass / (p.length * p.width * p.height);
    if density.is_finite() && !(MIN_DENSITY..=MAX_DENSITY).contains(&density) {
        sink.push(
            Diagnostic::warning(
                at,
                format!("{path}.mass"),
                format!(
                    "line \"{lid}\": a product of {} kg in a {} × {} × {} m box has a density of {} kg/m³, {} any real product",
                    num(p.mass),
                    num(p.length),
                    num(p.width),
                    num(p.height),
                    num(density.round()),
                    if density > MAX_DENSITY { "denser than" } else { "lighter than" }
                ),
            )
            .expected(format!(
                "a density between {} and {} kg/m³",
                num(MIN_DENSITY),
                num(MAX_DENSITY)
            ))
            .help("check units: kilograms and metres (a 0.5 l bottle is about `mass = 0.55`, `height = 0.22`)"),
        );
    }
}

fn check_conveyor(sink: &mut Sink, i: usize, lid: &str, line: &Line, b: &Belt<'_>) {
    let c = b.c;
    let path = format!("lines[{i}].conveyors[{}]", b.j);
    let cid = b.id();
    if c.width.value > MAX_WIDTH {
        sink.push(
            Diagnostic::warning(
                c.width.span.clone(),
                format!("{path}.width"),
                format!(
                    "line \"{lid}\": conveyor \"{cid}\" is {} m wide, more than any belt conveyor",
                    num(c.width.value)
                ),
            )
            .expected(format!("a width up to {} m", num(MAX_WIDTH)))
            .help("check units: metres (a 300 mm belt is `width = 0.3`)"),
        );
    }
    if c.height > MAX_HEIGHT {
        sink.push(
            Diagnostic::warning(
                c.id.span.clone(),
                format!("{path}.height"),
                format!(
                    "line \"{lid}\": conveyor \"{cid}\" has its belt {} m above the floor",
                    num(c.height)
                ),
            )
            .expected(format!("a height up to {} m", num(MAX_HEIGHT)))
            .help("check units: metres (a belt at 800 mm is `height = 0.8`)"),
        );
    }
    for (k, s) in c.segments.iter().enumerate() {
        if s.length.value > MAX_SEGMENT {
            sink.push(
                Diagnostic::warning(
                    s.length.span.clone(),
                    format!("{path}.segments[{k}].length"),
                    format!(
                        "line \"{lid}\": segment {k} of conveyor \"{cid}\" is {} m long",
                        num(s.length.value)
                    ),
                )
                .expected(format!("a straight segment up to {} m", num(MAX_SEGMENT)))
                .help("check units: metres (a 4 m segment is `length = 4.0`)"),
            );
        }
    }
    // A curve's inner edge is its radius less half the belt's width: it must
    // stay a curve.
    for (k, s) in c.segments.iter().enumerate() {
        if let Some(curve) = s.curve
            && curve.radius <= c.width.value / 2.0
        {
            sink.push(
                Diagnostic::error(
                    s.length.span.clone(),
                    format!("{path}.segments[{k}].radius"),
                    format!(
                        "line \"{lid}\": curve {k} of conveyor \"{cid}\" has a radius of {} m, not more than half the width of its {} m belt: its inner edge would cross itself",
                        num(curve.radius),
                        num(c.width.value)
                    ),
                )
                .expected(format!("a centre-line radius above {} m", num(c.width.value / 2.0)))
                .help("the radius is measured to the belt's centre line; curve modules are sold by inner radius, so add half the belt width"),
            );
        }
    }
    // A product follows a turn by being pushed round it by the belt; past a
    // right angle the next segment runs back under the product's own belt.
    // (Between segments: a curve's own turn is made gradually and may be
    // up to a U-turn.)
    for k in 1..c.segments.len() {
        let before = c.segments[k - 1].end_heading();
        let t = turn(before, c.segments[k].heading);
        if t.abs() > MAX_TURN {
            sink.push(
                Diagnostic::error(
                    c.segments[k].length.span.clone(),
                    format!("{path}.segments[{k}].heading"),
                    format!(
                        "line \"{lid}\": conveyor \"{cid}\" turns {}° between segments {} and {k}; a product cannot follow a turn sharper than {}°",
                        num(t.abs()),
                        k - 1,
                        num(MAX_TURN)
                    ),
                )
                .expected(format!(
                    "a heading within {}° of the previous segment's ({}°)",
                    num(MAX_TURN),
                    num(before)
                ))
                .help("make the turn of several segments of at most 90° each, or check the heading's sign (degrees counter-clockwise from east)"),
            );
        }
    }
    // A belt folding back onto itself (two segments that are not
    // neighbours in the same place). Neighbours always share their joint.
    for k in 0..b.segs.len() {
        for m in k + 2..b.segs.len() {
            // Chords of one curve lie round its centre; a curve too tight
            // for its belt is reported on its own (below).
            if b.segs[k].src == b.segs[m].src {
                continue;
            }
            let Some(poly) = overlap(&b.segs[k].rect, &b.segs[m].rect) else {
                continue;
            };
            // A curve made of segments shorter than the belt is wide: the
            // segments either side of a short one overlap round its
            // corner. Only an overlap away from the segments in between
            // is a fold.
            let reach = 2.0 * b.half_width + TOL;
            let at_corner = poly.iter().all(|p| {
                b.segs[k + 1..m]
                    .iter()
                    .any(|s| point_seg_dist(*p, s.a, s.b) <= reach)
            });
            if !at_corner {
                let (k, m) = (b.segs[k].src, b.segs[m].src);
                sink.push(
                    Diagnostic::error(
                        c.segments[m].length.span.clone(),
                        format!("{path}.segments[{m}]"),
                        format!(
                            "line \"{lid}\": segment {m} of conveyor \"{cid}\" lies on its own segment {k}: the belt folds back onto itself"
                        ),
                    )
                    .expected("a belt's segments apart from each other in plan")
                    .help("check the segments' headings and lengths; a belt that passes over itself must be two conveyors at different heights"),
                );
            }
        }
    }
    // A product longer than a segment between two turns spans both corners
    // at once and bridges them instead of following the belt.
    // The longest type is the one that bridges a corner first.
    if let Some((length, ..)) = line.product_envelope() {
        let segs = &c.segments;
        for (k, s) in segs.iter().enumerate() {
            let turns_before = k > 0 && turn(segs[k - 1].end_heading(), s.heading) != 0.0;
            let turns_after =
                k + 1 < segs.len() && turn(s.end_heading(), segs[k + 1].heading) != 0.0;
            if s.curve.is_none() && length > s.length.value && (turns_before || turns_after) {
                sink.push(
                    Diagnostic::warning(
                        s.length.span.clone(),
                        format!("{path}.segments[{k}].length"),
                        format!(
                            "line \"{lid}\": the product ({} m long) is longer than segment {k} of conveyor \"{cid}\" ({} m), next to a turn: it will bridge the corner rather than follow the belt",
                            num(length),
                            num(s.length.value)
                        ),
                    )
                    .expected(format!("segments next to a turn at least {} m long", num(length)))
                    .help("merge short segments into fewer, longer ones, or check units: metres"),
                );
            }
        }
    }
}

/// Connections between conveyors. Returns the end-to-start hand-overs.
///
/// A conveyor's start should be fed by another conveyor (all but the first
/// in config order, which is where the physics puts new products) and its
/// end should lead onto another (all but the last, where products leave).
/// "Fed" and "leads onto" mean: the edge across the belt's start (or end)
/// is within [`TOL`] of another belt's outline. That covers the in-line
/// hand-over, a side-by-side transfer and a belt ending at another's side
/// (a merge).
///
/// A gap is a **warning**, not an error: the model runs (products reaching
/// the gap fall and are counted as lost), the rest of the config (sources,
/// tags, machines) is unaffected, and some real transfers (a robot, an
/// elevator, a pusher between belts) cannot be described in the config
/// yet, so an integrator may have to leave a gap on purpose.
fn check_links(sink: &mut Sink, i: usize, line: &Line, belts: &[Belt<'_>]) -> Vec<HandOver> {
    let mut hand_overs = Vec::new();
    for x in belts {
        for y in belts {
            if x.j != y.j && dist(x.end, y.start) <= TOL {
                hand_overs.push(HandOver { from: x.j, to: y.j });
            }
        }
    }
    if belts.len() < 2 {
        return hand_overs;
    }
    let lid = &line.id.value;
    // Products leave the line at the end of its last conveyor and at the
    // end of each diverter's branch; a branch listed last leaves the main
    // outfeed to the last conveyor that is no branch (as in the physics).
    let branch = |b: &Belt<'_>| {
        line.diverters
            .iter()
            .any(|d| d.to.value == b.id() && d.conveyor.value != d.to.value)
    };
    let last = belts
        .iter()
        .rev()
        .find(|b| !branch(b))
        .map_or(belts.len() - 1, |b| b.j);
    for b in belts {
        let path = format!("lines[{i}].conveyors[{}]", b.j);
        let others = || belts.iter().filter(|o| o.j != b.j);
        if b.j != 0 && !others().any(|o| b.cap_gap(false, o) <= TOL) {
            let nearest = others()
                .map(|o| (dist(o.end, b.start), o))
                .min_by(|p, q| p.0.total_cmp(&q.0));
            let detail = nearest.map_or(String::new(), |(d, o)| {
                format!(
                    "; the nearest conveyor end is \"{}\"'s at {}, {} m away",
                    o.id(),
                    pt(o.end),
                    num(d)
                )
            });
            let help = nearest.map_or(String::new(), |(_, o)| {
                format!(
                    "to take products from \"{}\", set `origin = [{}, {}]`; ",
                    o.id(),
                    num(o.end[0]),
                    num(o.end[1])
                )
            });
            sink.push(
                Diagnostic::warning(
                    b.c.id.span.clone(),
                    format!("{path}.origin"),
                    format!(
                        "line \"{lid}\": no conveyor hands products on to the start of conveyor \"{}\" at {}{detail}",
                        b.id(),
                        pt(b.start)
                    ),
                )
                .expected(format!(
                    "a start within {} m of another conveyor's belt (only the line's first conveyor starts on its own)",
                    num(TOL)
                ))
                .help(format!(
                    "{help}or list the conveyors in flow order: the first one is where products enter"
                )),
            );
        }
        if b.j != last && !branch(b) && !others().any(|o| b.cap_gap(true, o) <= TOL) {
            let nearest = others()
                .map(|o| (dist(o.start, b.end), o))
                .min_by(|p, q| p.0.total_cmp(&q.0));
            let detail = nearest.map_or(String::new(), |(d, o)| {
                format!(
                    "; the nearest conveyor start is \"{}\"'s at {}, {} m away",
                    o.id(),
                    pt(o.start),
                    num(d)
                )
            });
            let k = b.c.segments.len().saturating_sub(1);
            let span =
                b.c.segments
                    .last()
                    .map_or(b.c.id.span.clone(), |s| s.length.span.clone());
            sink.push(
                Diagnostic::warning(
                    span,
                    format!("{path}.segments[{k}]"),
                    format!(
                        "line \"{lid}\": products fall off the end of conveyor \"{}\" at {}: no conveyor continues there{detail}",
                        b.id(),
                        pt(b.end)
                    ),
                )
                .expected(format!(
                    "an end within {} m of another conveyor's belt (only the line's last conveyor ends on its own)",
                    num(TOL)
                ))
                .help("check the segments' lengths and headings and the next conveyor's `origin`, or list the conveyors in flow order: the last one is where products leave"),
            );
        }
    }
    hand_overs
}

/// Overlapping belts: error unless the overlap is at most [`TOL`] thin (belts
/// butted together, side-by-side transfers) or lies in the corner where one
/// conveyor hands over to the next. Belts far enough apart in height for a
/// product to pass between them (a belt bridging another) do not overlap.
fn check_overlaps(
    sink: &mut Sink,
    i: usize,
    line: &Line,
    belts: &[Belt<'_>],
    hand_overs: &[HandOver],
) {
    let lid = &line.id.value;
    // The tallest type must fit under a belt that crosses over.
    let clearance = BELT_THICKNESS + line.product_envelope().map_or(0.0, |(_, _, h)| h);
    for (xi, x) in belts.iter().enumerate() {
        for y in &belts[xi + 1..] {
            if (x.c.height - y.c.height).abs() >= clearance {
                continue;
            }
            let pair = hand_overs
                .iter()
                .find(|h| (h.from, h.to) == (x.j, y.j) || (h.from, h.to) == (y.j, x.j));
            'pairs: for (k, sx) in x.segs.iter().enumerate() {
                for (m, sy) in y.segs.iter().enumerate() {
                    let Some(poly) = overlap(&sx.rect, &sy.rect) else {
                        continue;
                    };
                    // The corner of a hand-over: within a belt width of the
                    // point where one ends and the other starts.
                    if let Some(h) = pair {
                        let (from, to) = (&belts[h.from], &belts[h.to]);
                        let joint = scale(add(from.end, to.start), 0.5);
                        let reach = 2.0 * from.half_width.max(to.half_width) + TOL;
                        let last_of_from = if h.from == x.j {
                            k + 1 == x.segs.len() && m == 0
                        } else {
                            m + 1 == y.segs.len() && k == 0
                        };
                        if last_of_from && poly.iter().all(|p| dist(*p, joint) <= reach) {
                            continue;
                        }
                    }
                    let at: P = scale(
                        poly.iter().fold([0.0, 0.0], |s, p| add(s, *p)),
                        1.0 / poly.len() as f64,
                    );
                    let (k, m) = (sx.src, sy.src);
                    sink.push(
                        Diagnostic::error(
                            y.c.segments[m].length.span.clone(),
                            format!("lines[{i}].conveyors[{}].segments[{m}]", y.j),
                            format!(
                                "line \"{lid}\": conveyor \"{}\" (segment {m}) overlaps conveyor \"{}\" (segment {k}) around {}, {} m² of belt in the same place",
                                y.id(),
                                x.id(),
                                pt(at),
                                num(area(&poly))
                            ),
                        )
                        .expected(format!(
                            "belts apart in plan, touching only where one hands over to the next (overlaps up to {} m are taken as butted belts)",
                            num(TOL)
                        ))
                        .help("check both conveyors' `origin`, segment lengths and headings; a belt passing over another needs a `height` that differs by more than the product's height"),
                    );
                    // One report per pair of conveyors is enough to find it.
                    break 'pairs;
                }
            }
        }
    }
    // Turns at a hand-over, as within a conveyor.
    for h in hand_overs {
        let (from, to) = (&belts[h.from], &belts[h.to]);
        let (Some(a), Some(b)) = (from.segs.last(), to.segs.first()) else {
            continue;
        };
        let t = turn(a.heading, b.heading);
        if t.abs() > MAX_TURN {
            sink.push(
                Diagnostic::error(
                    to.c.id.span.clone(),
                    format!("lines[{i}].conveyors[{}].segments[0].heading", to.j),
                    format!(
                        "line \"{lid}\": conveyor \"{}\" starts where \"{}\" ends but turns {}° from it; a product cannot follow a turn sharper than {}°",
                        to.id(),
                        from.id(),
                        num(t.abs()),
                        num(MAX_TURN)
                    ),
                )
                .expected(format!(
                    "a first heading within {}° of \"{}\"'s last ({}°)",
                    num(MAX_TURN),
                    from.id(),
                    num(a.heading)
                ))
                .help("check the heading's sign (degrees counter-clockwise from east)"),
            );
        }
    }
}

/// Stations and photo-eyes: two stations closer than a product, an eye
/// exactly at a station, and either at a hand-over.
fn check_places(
    sink: &mut Sink,
    i: usize,
    line: &Line,
    belts: &[Belt<'_>],
    hand_overs: &[HandOver],
) {
    let lid = &line.id.value;
    let belt = |conveyor: &str| belts.iter().find(|b| b.c.id.value == conveyor);
    // Places `validate` accepts: on a known conveyor, on its belt. The
    // others are reported there.
    let on_belt = |conveyor: &str, pos: f64| {
        belt(conveyor).filter(|b| pos.is_finite() && (0.0..=b.length).contains(&pos))
    };
    // The longest type: two stations must hold any two products apart, and
    // a station off a hand-over must keep any product off it.
    let product_length = line.product_envelope().map(|(l, ..)| l);

    // Two stations holding products less than a product apart would hold
    // two products in the same place.
    if let Some(len) = product_length {
        let longest = if line.products_listed {
            "the longest product's length"
        } else {
            "the product's length"
        };
        for (k, s) in line.stations.iter().enumerate() {
            if on_belt(&s.conveyor.value, s.position.value).is_none() {
                continue;
            }
            for t in &line.stations[..k] {
                let gap = (s.position.value - t.position.value).abs();
                if t.conveyor.value == s.conveyor.value && gap < len {
                    sink.push(
                        Diagnostic::error(
                            s.position.span.clone(),
                            format!("lines[{i}].stations[{k}].position"),
                            format!(
                                "line \"{lid}\": stations \"{}\" and \"{}\" are {} m apart on conveyor \"{}\", less than {longest} ({} m)",
                                t.id.value,
                                s.id.value,
                                num(gap),
                                s.conveyor.value,
                                num(len)
                            ),
                        )
                        .expected(format!(
                            "stations on one belt at least {} m apart",
                            num(len)
                        ))
                        .help("the products they hold would be in the same place; check both positions (metres along the belt from its start)"),
                    );
                }
            }
        }
    }

    for (k, e) in line.photo_eyes.iter().enumerate() {
        if on_belt(&e.conveyor.value, e.position.value).is_none() {
            continue;
        }
        let at_station = line.stations.iter().find(|s| {
            s.conveyor.value == e.conveyor.value
                && (s.position.value - e.position.value).abs() < 1e-3
        });
        if let Some(s) = at_station {
            sink.push(
                Diagnostic::warning(
                    e.position.span.clone(),
                    format!("lines[{i}].photo_eyes[{k}].position"),
                    format!(
                        "line \"{lid}\": photo-eye \"{}\" is exactly at station \"{}\" ({} m along conveyor \"{}\"): it stays blocked while the station holds a product, so it tells nothing about the flow",
                        e.id.value,
                        s.id.value,
                        num(e.position.value),
                        e.conveyor.value
                    ),
                )
                .expected("an eye before a station (to see its queue) or after it (to see its output)")
                .help("check the position; copying a station's position to its eye is a common slip"),
            );
        }
    }

    // At a hand-over a product rests on two belts and may drop, tilt or
    // pause: a station there holds it across the gap, and an eye there sees
    // it when the physics is least sure where it is.
    let junction = |conveyor: &str, pos: f64, reach: f64| -> Option<(String, String)> {
        let b = belt(conveyor)?;
        hand_overs.iter().find_map(|h| {
            let (from, to) = (&belts[h.from], &belts[h.to]);
            let near = (h.from == b.j && b.length - pos < reach) || (h.to == b.j && pos < reach);
            near.then(|| (from.id().to_string(), to.id().to_string()))
        })
    };
    for (k, s) in line.stations.iter().enumerate() {
        let reach = product_length.map_or(TOL, |l| (l / 2.0).max(TOL));
        if on_belt(&s.conveyor.value, s.position.value).is_none() {
            continue;
        }
        if let Some((from, to)) = junction(&s.conveyor.value, s.position.value, reach) {
            sink.push(
                Diagnostic::warning(
                    s.position.span.clone(),
                    format!("lines[{i}].stations[{k}].position"),
                    format!(
                        "line \"{lid}\": station \"{}\" stands at the hand-over from conveyor \"{from}\" to \"{to}\": a product held there rests on both belts",
                        s.id.value
                    ),
                )
                .expected(format!(
                    "a station at least {} m from where one conveyor ends and the next starts",
                    num(reach)
                ))
                .help("check the position (metres along the belt from its start) and the conveyor"),
            );
        }
    }
    for (k, e) in line.photo_eyes.iter().enumerate() {
        if on_belt(&e.conveyor.value, e.position.value).is_none() {
            continue;
        }
        if let Some((from, to)) = junction(&e.conveyor.value, e.position.value, TOL) {
            sink.push(
                Diagnostic::warning(
                    e.position.span.clone(),
                    format!("lines[{i}].photo_eyes[{k}].position"),
                    format!(
                        "line \"{lid}\": photo-eye \"{}\" is over the hand-over from conveyor \"{from}\" to \"{to}\", where products drop, tilt or pause: its expected state is least reliable there",
                        e.id.value
                    ),
                )
                .expected(format!(
                    "an eye at least {} m from where one conveyor ends and the next starts",
                    num(TOL)
                ))
                .help("to watch a transfer, put the eye a little past it on the receiving belt"),
            );
        }
    }
}

/// A photo-eye read by polling must be read at least twice while a product
/// blocks it, or products slip through between polls. A product of length
/// L at belt speed v blocks the beam for L / v, so the poll is good up to
/// v = L / (2 × poll_interval).
///
/// The config does not give a belt's nominal speed, only the tag that
/// measures it. The bound used is a setpoint's `max` on that tag when there
/// is one (a sound upper bound), else [`SLOW_BELT`]: the warning then only
/// fires when the eye misses products even on a slow belt, and says up to
/// which speed the poll is good. MQTT and Sparkplug tags are pushed, not
/// polled, and are not checked.
fn check_eye_sampling(sink: &mut Sink, cfg: &PlantConfig, i: usize, line: &Line) {
    let lid = &line.id.value;
    // The shortest type blocks the beam for the shortest time.
    let Some(length) = line
        .product_types()
        .iter()
        .map(|t| t.length)
        .min_by(f64::total_cmp)
    else {
        return;
    };
    for (k, e) in line.photo_eyes.iter().enumerate() {
        let Some(c) = line
            .conveyors
            .iter()
            .find(|c| c.id.value == e.conveyor.value)
        else {
            continue;
        };
        let polled = cfg.modbus.iter().find_map(|d| {
            d.registers
                .iter()
                .find(|r| r.tag.value == e.tag.value)
                .map(|r| (d, r.poll_interval.unwrap_or(d.poll_interval)))
        });
        let Some((device, poll)) = polled else {
            continue;
        };
        let poll_s = poll.as_secs_f64();
        if poll_s <= 0.0 {
            continue;
        }
        let bound = cfg
            .setpoints
            .iter()
            .find(|s| s.tag.value == c.speed_tag.value)
            .map(|s| s.max.value)
            .filter(|v| v.is_finite() && *v > 0.0);
        let speed = bound.unwrap_or(SLOW_BELT);
        let v_max = length / (2.0 * poll_s);
        if speed <= v_max {
            continue;
        }
        let why = match bound {
            Some(_) => format!(
                "the setpoint on \"{}\" lets the belt run at up to {} m/s",
                c.speed_tag.value,
                num(speed)
            ),
            None => format!(
                "the config gives no belt speed, and even a slow belt ({} m/s) is faster",
                num(SLOW_BELT)
            ),
        };
        let need_ms = (length / (2.0 * speed) * 1000.0).floor().max(1.0);
        sink.push(
            Diagnostic::warning(
                e.tag.span.clone(),
                format!("lines[{i}].photo_eyes[{k}].tag"),
                format!(
                    "line \"{lid}\": photo-eye \"{}\" may miss products: device \"{}\" polls \"{}\" every {}, which sees a {} m product at least twice only up to {} m/s; {why}",
                    e.id.value,
                    device.name.value,
                    e.tag.value,
                    humantime::format_duration(poll),
                    num(length),
                    num(v_max)
                ),
            )
            .expected(format!(
                "a poll interval of at most half the time a product blocks the beam ({}ms at {} m/s)",
                num(need_ms),
                num(speed)
            ))
            .help(format!(
                "set `poll_interval = \"{}ms\"` on the register or the device, or read the eye from a faster source",
                num(need_ms)
            )),
        );
    }
}

#[cfg(test)]
#[path = "geometry_tests.rs"]
mod tests;
