//! Lines: their machines, conveyors, products, and what stands on their
//! belts (stations, photo-eyes, pushers, diverters, zones), each at a place
//! that exists. The layout itself is checked by `config::geometry`.

use std::collections::BTreeMap;
use std::ops::Range;

use super::{Cx, Refs};
use crate::config::decode::{Loc, Sink};
use crate::config::diagnostics::{Diagnostic, did_you_mean};
use crate::config::{Conveyor, Diverter, Line, PlantConfig, StationCycle};

pub(super) fn check(sink: &mut Sink, cx: &Cx<'_>, cfg: &PlantConfig, refs: &Refs<'_>) {
    let mut line_ids = BTreeMap::new();
    for (i, line) in cfg.lines.iter().enumerate() {
        cx.dup(
            sink,
            &mut line_ids,
            "line id",
            format!("lines[{i}].id"),
            &line.id,
        );
        check_line(sink, cx, refs, i, line);
    }
}

fn check_line(sink: &mut Sink, cx: &Cx<'_>, refs: &Refs<'_>, i: usize, line: &Line) {
    let mut in_line = BTreeMap::new();
    for (j, m) in line.machines.iter().enumerate() {
        let path = format!("lines[{i}].machines[{j}]");
        if refs.machine(sink, path.clone(), m) {
            cx.dup(sink, &mut in_line, "machine in this line", path, m);
        }
    }
    // Conveyor ids name a belt within its line (events will say
    // "line/conveyor"), so they are unique per line.
    let mut conveyor_ids = BTreeMap::new();
    for (j, c) in line.conveyors.iter().enumerate() {
        cx.dup(
            sink,
            &mut conveyor_ids,
            "conveyor id in this line",
            format!("lines[{i}].conveyors[{j}].id"),
            &c.id,
        );
        refs.tag(
            sink,
            format!("lines[{i}].conveyors[{j}].speed_tag"),
            &c.speed_tag,
        );
    }
    // Stations, photo-eyes, pushers and diverters stand at a place on a belt
    // of this line. Their ids are one namespace per line (events will name
    // them).
    let mut places = Places {
        cx,
        line,
        ids: BTreeMap::new(),
    };
    for (j, s) in line.stations.iter().enumerate() {
        let path = format!("lines[{i}].stations[{j}]");
        places.check(sink, &path, &s.id, &s.conveyor, &s.position);
        if let StationCycle::Tag(tag) = &s.cycle {
            refs.tag(sink, format!("{path}.cycle_time_tag"), tag);
        }
        if let Some(tag) = &s.rate_tag {
            refs.tag(sink, format!("{path}.rate_tag"), tag);
            // Only a station whose cycle comes from a tag follows a rate:
            // a fixed cycle would silently ignore it.
            if let StationCycle::Fixed(_) = s.cycle {
                sink.push(
                    Diagnostic::error(
                        tag.span.clone(),
                        format!("{path}.rate_tag"),
                        "a station with a fixed `cycle_time` does not follow a measured rate",
                    )
                    .expected("`rate_tag` together with `cycle_time_tag` (the station's cycle setpoint)")
                    .help("add `cycle_time_tag` (keep `cycle_time` as the commissioned cycle), or remove `rate_tag`"),
                );
            }
        }
    }
    products(sink, cx, refs, i, line);
    for (j, e) in line.photo_eyes.iter().enumerate() {
        let path = format!("lines[{i}].photo_eyes[{j}]");
        places.check(sink, &path, &e.id, &e.conveyor, &e.position);
        refs.tag(sink, format!("{path}.tag"), &e.tag);
    }
    for (j, p) in line.pushers.iter().enumerate() {
        let path = format!("lines[{i}].pushers[{j}]");
        places.check(sink, &path, &p.id, &p.conveyor, &p.position);
        refs.tag(sink, format!("{path}.coil_tag"), &p.coil_tag);
    }
    for (j, d) in line.diverters.iter().enumerate() {
        let path = format!("lines[{i}].diverters[{j}]");
        places.check(sink, &path, &d.id, &d.conveyor, &d.position);
        refs.tag(sink, format!("{path}.coil_tag"), &d.coil_tag);
        check_branch(sink, i, &path, line, d);
    }
    zones(sink, cx, i, line, conveyor_ids);
}

/// The tags a line's products name, and their ids and codes.
fn products(sink: &mut Sink, cx: &Cx<'_>, refs: &Refs<'_>, i: usize, line: &Line) {
    // With `[[lines.products]]` the arrival keys are the line's own.
    let arrivals = if line.products_listed {
        format!("lines[{i}]")
    } else {
        format!("lines[{i}].product")
    };
    if let Some(tag) = line
        .product
        .as_ref()
        .and_then(|p| p.infeed_counter_tag.as_ref())
    {
        refs.tag(sink, format!("{arrivals}.infeed_counter_tag"), tag);
    }
    if let Some(tag) = &line.product_tag {
        refs.tag(sink, format!("lines[{i}].product_tag"), tag);
    }
    // A changeover names a type by id (text) or code (number): both are
    // namespaces of the line.
    if !line.products_listed {
        return;
    }
    let mut type_ids = BTreeMap::new();
    let mut codes: BTreeMap<i64, Range<usize>> = BTreeMap::new();
    for (k, p) in line.products.iter().enumerate() {
        cx.dup(
            sink,
            &mut type_ids,
            "product id in this line",
            format!("lines[{i}].products[{k}].id"),
            &p.id,
        );
        if let Some(first) = codes.get(&p.code.value) {
            sink.push(
                Diagnostic::error(
                    p.code.span.clone(),
                    format!("lines[{i}].products[{k}].code"),
                    format!("duplicate product code {} in this line", p.code.value),
                )
                .expected("a recipe number no other product of the line has")
                .help(format!(
                    "first seen at {}; a product without `code` takes its 1-based position in the list",
                    cx.at(first)
                )),
            );
        } else {
            codes.insert(p.code.value, p.code.span.clone());
        }
    }
}

/// Zone counts share the `zones` object of line events with the
/// per-conveyor counts, so a zone may not take a conveyor's id.
fn zones(
    sink: &mut Sink,
    cx: &Cx<'_>,
    i: usize,
    line: &Line,
    conveyor_ids: BTreeMap<String, Range<usize>>,
) {
    let mut zone_ids = conveyor_ids;
    for (j, z) in line.zones.iter().enumerate() {
        let path = format!("lines[{i}].zones[{j}]");
        cx.dup(
            sink,
            &mut zone_ids,
            "zone or conveyor id in this line",
            format!("{path}.id"),
            &z.id,
        );
        let Some(c) = find_conveyor(sink, line, &path, &z.conveyor) else {
            continue;
        };
        let from_ok = on_belt(sink, &path, "from", &z.from, c);
        let to_ok = on_belt(sink, &path, "to", &z.to, c);
        if from_ok && to_ok && z.from.value >= z.to.value {
            sink.push(
                Diagnostic::error(
                    z.to.span.clone(),
                    format!("{path}.to"),
                    format!(
                        "the zone ends ({} m) before it starts ({} m)",
                        z.to.value, z.from.value
                    ),
                )
                .expected("from < to, in the direction the belt runs")
                .maybe_help(
                    (z.from.value > z.to.value).then(|| "swap `from` and `to`".to_string()),
                ),
            );
        }
    }
}

/// The places on a line's belts, one id namespace.
struct Places<'a> {
    cx: &'a Cx<'a>,
    line: &'a Line,
    ids: BTreeMap<String, Range<usize>>,
}

impl Places<'_> {
    /// A station, eye, pusher or diverter: its id is new in the line, its
    /// conveyor exists, and its position is on that belt.
    fn check(
        &mut self,
        sink: &mut Sink,
        path: &str,
        id: &Loc<String>,
        conveyor: &Loc<String>,
        position: &Loc<f64>,
    ) {
        self.cx.dup(
            sink,
            &mut self.ids,
            "station, photo-eye, pusher or diverter id in this line",
            format!("{path}.id"),
            id,
        );
        if let Some(c) = find_conveyor(sink, self.line, path, conveyor) {
            on_belt(sink, path, "position", position, c);
        }
    }
}

/// The conveyor a station, eye, pusher or zone names, reported when
/// unknown.
fn find_conveyor<'l>(
    sink: &mut Sink,
    line: &'l Line,
    path: &str,
    conveyor: &Loc<String>,
) -> Option<&'l Conveyor> {
    let found = line.conveyors.iter().find(|c| c.id.value == conveyor.value);
    // A conveyor whose own entry had errors was reported there; "unknown
    // conveyor" for each eye and station on it would only mislead.
    if found.is_none() && !line.undecoded_conveyors.contains(&conveyor.value) {
        let names = line
            .conveyors
            .iter()
            .map(|c| c.id.value.as_str())
            .chain(line.undecoded_conveyors.iter().map(String::as_str));
        sink.push(
            Diagnostic::error(
                conveyor.span.clone(),
                format!("{path}.conveyor"),
                format!("unknown conveyor \"{}\"", conveyor.value),
            )
            .expected("the id of a `[[lines.conveyors]]` entry of this line")
            .maybe_help(did_you_mean(&conveyor.value, names)),
        );
    }
    found
}

/// Whether `key` (metres along `c`) is on its belt, reported when not.
fn on_belt(sink: &mut Sink, path: &str, key: &str, v: &Loc<f64>, c: &Conveyor) -> bool {
    let length: f64 = c.segments.iter().map(|s| s.length.value).sum();
    let p = v.value;
    let on = p.is_finite() && (0.0..=length).contains(&p);
    if !on {
        sink.push(
            Diagnostic::error(
                v.span.clone(),
                format!("{path}.{key}"),
                format!(
                    "{key} {p} m is off conveyor \"{}\", which is {length} m long",
                    c.id.value
                ),
            )
            .expected(format!(
                "metres along the belt from its start, 0 to {length}"
            )),
        );
    }
    on
}

/// Half-width of a belt's start, beyond the two belts' half-widths, within
/// which a diverter's branch conveyor must start: a product steered off the
/// main belt must land on it.
const BRANCH_REACH: f64 = 0.1;
/// The turn, degrees, from the main belt onto a diverter's branch: a
/// smaller one is not a diverter but a merge of two lanes; a larger one
/// sends products back against the flow.
const BRANCH_TURN: (f64, f64) = (30.0, 90.0);

/// A diverter's branch conveyor (`to`): it exists, is not the diverter's
/// own conveyor, and starts beside the main belt at the diverter, leaving
/// it at 30° to 90°. Unknown main conveyors and positions off the belt are
/// reported by `Places::check`; the placement is then not checked.
fn check_branch(sink: &mut Sink, i: usize, path: &str, line: &Line, d: &Diverter) {
    use crate::config::geometry::{num, pt, turn};
    let names = line
        .conveyors
        .iter()
        .map(|c| c.id.value.as_str())
        .filter(|c| *c != d.conveyor.value);
    let Some((k, branch)) = line
        .conveyors
        .iter()
        .enumerate()
        .find(|(_, c)| c.id.value == d.to.value)
    else {
        if line.undecoded_conveyors.contains(&d.to.value) {
            return;
        }
        sink.push(
            Diagnostic::error(
                d.to.span.clone(),
                format!("{path}.to"),
                format!("unknown conveyor \"{}\"", d.to.value),
            )
            .expected("the id of the `[[lines.conveyors]]` entry of this line that takes the diverted products")
            .maybe_help(did_you_mean(&d.to.value, names)),
        );
        return;
    };
    if branch.id.value == d.conveyor.value {
        sink.push(
            Diagnostic::error(
                d.to.span.clone(),
                format!("{path}.to"),
                format!(
                    "diverter \"{}\" sends products to its own conveyor \"{}\"",
                    d.id.value, d.to.value
                ),
            )
            .expected("the id of another conveyor of this line: the branch the diverted products leave on")
            .help("set `to` to the id of the branch conveyor: its own `[[lines.conveyors]]` entry, starting beside this belt at the diverter"),
        );
        return;
    }
    let Some(main) = line
        .conveyors
        .iter()
        .find(|c| c.id.value == d.conveyor.value)
    else {
        return;
    };
    let length: f64 = main.segments.iter().map(|s| s.length.value).sum();
    let p = d.position.value;
    if !(p.is_finite() && (0.0..=length).contains(&p)) {
        return;
    }
    // Where the physics puts the diverter: the one layout walk.
    let (at, heading) = crate::config::layout::Layout::of(main).at(p);
    let (sin, cos) = crate::config::layout::sin_cos_deg(heading);
    let branch_heading = branch.segments.first().map_or(0.0, |s| s.heading);
    let t = turn(heading, branch_heading);
    let (hw_main, hw_branch) = (main.width.value / 2.0, branch.width.value / 2.0);
    let reach = hw_main + hw_branch + BRANCH_REACH;
    let rel = [branch.origin[0] - at[0], branch.origin[1] - at[1]];
    let dist = rel[0].hypot(rel[1]);
    // The side the branch leaves on: where its origin is, else where it
    // turns to; left (counter-clockwise) when neither says.
    let lateral = cos * rel[1] - sin * rel[0];
    let left = if lateral.abs() > 1e-9 {
        lateral > 0.0
    } else {
        t >= 0.0
    };
    let lid = &line.id.value;
    if dist > reach {
        // A right-angle branch starts on the belt's edge; a slanted one
        // further out, so its start's near corner is on the edge.
        let slant = if t.abs() >= BRANCH_TURN.0 && t.abs() <= BRANCH_TURN.1 {
            hw_branch * t.to_radians().cos().abs()
        } else {
            0.0
        };
        let side = if left { 1.0 } else { -1.0 };
        let off = (hw_main + slant) * side;
        let origin = [at[0] - sin * off, at[1] + cos * off];
        sink.push(
            Diagnostic::error(
                d.to.span.clone(),
                format!("{path}.to"),
                format!(
                    "line \"{lid}\": branch conveyor \"{}\" starts at {}, {} m from diverter \"{}\" at {} on conveyor \"{}\"; products steered off the belt there would fall",
                    d.to.value,
                    pt(branch.origin),
                    num(dist),
                    d.id.value,
                    pt(at),
                    d.conveyor.value
                ),
            )
            .expected(format!(
                "a branch `origin` within {} m of the diverter's point on the main belt's centre line (half of each belt's width, plus {} m)",
                num(reach),
                num(BRANCH_REACH)
            ))
            .help(format!(
                "move conveyor \"{}\" (lines[{i}].conveyors[{k}]) beside the main belt: `origin = [{}, {}]`, or move the diverter's `position` to where the branch starts",
                d.to.value,
                num(origin[0]),
                num(origin[1])
            )),
        );
    }
    if !(BRANCH_TURN.0..=BRANCH_TURN.1).contains(&t.abs()) {
        let square = heading + if left { 90.0 } else { -90.0 };
        sink.push(
            Diagnostic::error(
                branch.id.span.clone(),
                format!("lines[{i}].conveyors[{k}].segments[0].heading"),
                format!(
                    "line \"{lid}\": diverter \"{}\" sends products onto conveyor \"{}\", whose first heading ({}°) turns {}° from conveyor \"{}\" at the diverter ({}°)",
                    d.id.value,
                    d.to.value,
                    num(branch_heading),
                    num(t.abs()),
                    d.conveyor.value,
                    num(heading)
                ),
            )
            .expected(format!(
                "a first heading {}° to {}° either side of {}°: a branch leaving the belt sideways",
                num(BRANCH_TURN.0),
                num(BRANCH_TURN.1),
                num(heading)
            ))
            .help(format!(
                "for a right-angle branch set its first segment's `heading = {}` (degrees counter-clockwise from east)",
                num(square.rem_euclid(360.0))
            )),
        );
    }
}
