//! The report's plots, drawn with plotters' SVG backend into strings that
//! the page embeds inline.
//!
//! Every plot shares one time axis (the whole input's span), so plots on
//! the page line up vertically and a jam on the line plot sits above the
//! tags that moved with it.

use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::collect::{Kind, LineTrack, Marked, TagTrack};
use super::series::{Grid, Level, Point, Span};
use crate::twin::events::rfc3339;

pub const WIDTH: u32 = 960;
const TAG_HEIGHT: u32 = 190;
const LINE_HEIGHT: u32 = 380;

const LINE_BLUE: RGBColor = RGBColor(31, 100, 180);
const WIP_GREEN: RGBColor = RGBColor(30, 130, 70);
const BAD_RED: RGBColor = RGBColor(215, 48, 39);
const STALE_GREY: RGBColor = RGBColor(140, 140, 140);
const UNCERTAIN_AMBER: RGBColor = RGBColor(240, 170, 0);
const STUCK_ORANGE: RGBColor = RGBColor(240, 120, 20);
const GAP_VIOLET: RGBColor = RGBColor(120, 90, 170);

/// A drawing failed; with the string backend this means a bug, not input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("drawing a plot failed: {0}")]
pub struct PlotError(String);

fn err(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// The shared time axis: the input's first and last time.
#[derive(Debug, Clone, Copy)]
pub struct Axis {
    pub t0: i64,
    pub t1: i64,
    /// What x = 0 stands for: `t0` rounded down to a whole minute, hour or
    /// day, so that the round numbers plotters puts its ticks on are round
    /// times of day, not offsets from an odd start.
    origin: i64,
    /// Nanoseconds per unit of x: seconds, minutes or hours, whichever
    /// gives ticks at round times for the span.
    unit: i64,
}

const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

impl Axis {
    pub fn new(first: i64, last: i64) -> Self {
        // A one-tick file still gets an axis a second wide.
        let t1 = last.max(first.saturating_add(SECOND));
        let span = t1.saturating_sub(first);
        let (unit, floor) = if span <= 10 * MINUTE {
            (SECOND, MINUTE)
        } else if span <= 10 * HOUR {
            (MINUTE, HOUR)
        } else {
            (HOUR, DAY)
        };
        Axis {
            t0: first,
            t1,
            origin: first - first.rem_euclid(floor),
            unit,
        }
    }

    /// Units since the origin: the plots' x coordinate.
    fn x(&self, t: i64) -> f64 {
        (i128::from(t) - i128::from(self.origin)) as f64 / self.unit as f64
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.x(self.t0)..self.x(self.t1)
    }

    /// An x label: time of day (UTC); seconds only on an axis in seconds.
    fn label(&self, x: f64) -> String {
        // Whole milliseconds, so a tick at 28.0 s never reads 27.999.
        let ms = (x * self.unit as f64 / 1e6).round() as i64;
        let t = self.origin.saturating_add(ms.saturating_mul(1_000_000));
        let s = rfc3339(t);
        let end = if self.unit == SECOND { 19 } else { 16 };
        s.get(11..end).unwrap_or(&s).to_string()
    }
}

fn level_colour(l: Level) -> RGBAColor {
    match l {
        Level::Good => WHITE.mix(0.0),
        Level::Uncertain => UNCERTAIN_AMBER.mix(0.25),
        Level::Stale => STALE_GREY.mix(0.3),
        Level::Bad => BAD_RED.mix(0.22),
    }
}

/// Value range with some headroom; a flat series gets a band around it.
fn y_range(range: Option<(f64, f64)>, kind: Kind) -> (f64, f64) {
    if kind == Kind::Bool {
        return (-0.15, 1.15);
    }
    match range {
        None => (0.0, 1.0),
        Some((lo, hi)) if hi - lo < 1e-12 => {
            let pad = (lo.abs() * 0.1).max(1.0);
            (lo - pad, hi + pad)
        }
        Some((lo, hi)) => {
            let pad = (hi - lo) * 0.08;
            (lo - pad, hi + pad)
        }
    }
}

/// A value that holds until the next point, as a list of polylines; a
/// point without a value (`null`) breaks the line.
fn step_runs(points: &[Point], end: i64, axis: &Axis) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    for (i, &(t, v)) in points.iter().enumerate() {
        if v.is_finite() {
            let next = points.get(i + 1).map_or(end, |p| p.0).max(t);
            cur.push((axis.x(t), v));
            cur.push((axis.x(next), v));
        } else if !cur.is_empty() {
            runs.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        runs.push(cur);
    }
    runs
}

/// A sampled series (one point a second) as polylines, broken at gaps of
/// data.
fn line_runs(points: &[Point], axis: &Axis) -> Vec<Vec<(f64, f64)>> {
    points
        .split(|p| !p.1.is_finite())
        .filter(|r| !r.is_empty())
        .map(|r| r.iter().map(|&(t, v)| (axis.x(t), v)).collect())
        .collect()
}

type Coords = Cartesian2d<RangedCoordf64, RangedCoordf64>;

fn mesh_style<'f, DB: DrawingBackend>(
    chart: &'f mut ChartContext<'_, DB, Coords>,
    y_desc: &str,
    y_fmt: &'f dyn Fn(&f64) -> String,
    x_fmt: &'f dyn Fn(&f64) -> String,
) -> Result<(), PlotError> {
    chart
        .configure_mesh()
        .x_labels(8)
        .y_labels(5)
        .x_label_formatter(x_fmt)
        .y_label_formatter(y_fmt)
        .y_desc(y_desc)
        .light_line_style(RGBColor(235, 235, 235))
        .bold_line_style(RGBColor(210, 210, 210))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(err)
}

/// Labels for a y axis spanning `lo..hi`: as many decimals as its five or
/// so ticks need to differ, the same on every label.
fn y_number(lo: f64, hi: f64) -> impl Fn(&f64) -> String {
    let span = (hi - lo).abs().max(1e-12);
    let big = lo.abs().max(hi.abs()) >= 1e6;
    let decimals = (-(span / 5.0).log10().floor()).clamp(0.0, 6.0) as usize;
    move |v: &f64| {
        if big {
            format!("{v:.2e}")
        } else {
            format!("{v:.decimals$}")
        }
    }
}

fn y_bool(v: &f64) -> String {
    if (*v - 1.0).abs() < 1e-9 {
        "true".into()
    } else if v.abs() < 1e-9 {
        "false".into()
    } else {
        String::new()
    }
}

/// One tag: its value over time, the stretches below good shaded by
/// quality, and a tick at the top wherever the quality changed.
pub fn tag_plot(tag: &TagTrack, grid: &Grid, axis: &Axis) -> Result<String, PlotError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, TAG_HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (y0, y1) = y_range(tag.values.range(), tag.kind);
        let mut chart = ChartBuilder::on(&root)
            .margin(6)
            .x_label_area_size(24)
            .y_label_area_size(64)
            .build_cartesian_2d(axis.range(), y0..y1)
            .map_err(err)?;
        let x_fmt = |x: &f64| axis.label(*x);
        let numbers = y_number(y0, y1);
        let y_fmt: &dyn Fn(&f64) -> String = if tag.kind == Kind::Bool {
            &y_bool
        } else {
            &numbers
        };
        let unit = tag.unit.as_deref().unwrap_or("");
        mesh_style(&mut chart, unit, y_fmt, &x_fmt)?;

        let spans = tag.quality.spans(grid, axis.t1);
        chart
            .draw_series(
                spans
                    .iter()
                    .map(|s| shade(axis, s.from, s.to, y0, y1, level_colour(s.level))),
            )
            .map_err(err)?;
        let dy = (y1 - y0) * 0.1;
        chart
            .draw_series(tag.quality.changes().into_iter().map(|t| {
                let x = axis.x(t);
                PathElement::new(vec![(x, y1), (x, y1 - dy)], BLACK.stroke_width(1))
            }))
            .map_err(err)?;
        let end = axis.t1;
        for run in step_runs(&tag.values.points(), end, axis) {
            chart
                .draw_series(LineSeries::new(run, LINE_BLUE.stroke_width(1)))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn shade(
    axis: &Axis,
    from: i64,
    to: i64,
    y0: f64,
    y1: f64,
    colour: RGBAColor,
) -> Rectangle<(f64, f64)> {
    Rectangle::new(
        [(axis.x(from), y0), (axis.x(to.max(from)), y1)],
        colour.filled(),
    )
}

/// What the line plot marks on both of its panels.
struct LineMarks<'a> {
    jams: &'a [Marked],
    stuck: &'a [Marked],
    quality: Vec<Span>,
    gaps: &'a [(i64, i64)],
}

/// One line: throughput (with a dot per bucket of residuals, sized by how
/// many, and a cross per eye verdict) above WIP; jams, stuck eyes,
/// uncertain stretches and gaps in the stream shaded on both.
pub fn line_plot(
    line: &LineTrack,
    grid: &Grid,
    axis: &Axis,
    gaps: &[(i64, i64)],
) -> Result<String, PlotError> {
    let marks = LineMarks {
        jams: &line.jams,
        stuck: &line.stuck,
        quality: line.quality.spans(grid, axis.t1),
        gaps,
    };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, LINE_HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (top, bottom) = root.split_vertically(LINE_HEIGHT / 2);
        let tp = line.throughput.points();
        panel(
            &top,
            axis,
            &marks,
            &tp,
            line.throughput.range(),
            "products/min",
            LINE_BLUE,
            |chart, y0, y1| {
                let r = line.residuals.marks();
                let y = y0 + (y1 - y0) * 0.06;
                chart
                    .draw_series(r.iter().map(|&(t, n)| {
                        let radius = 2 + (32 - n.leading_zeros()).min(6) as i32;
                        Circle::new((axis.x(t), y), radius, BAD_RED.filled())
                    }))
                    .map_err(err)?;
                let e = line.eye_marks.marks();
                let y = y0 + (y1 - y0) * 0.16;
                chart
                    .draw_series(
                        e.iter().map(|&(t, _)| {
                            Cross::new((axis.x(t), y), 4, STUCK_ORANGE.stroke_width(2))
                        }),
                    )
                    .map_err(err)?;
                Ok(())
            },
        )?;
        let wp = line.wip.points();
        panel(
            &bottom,
            axis,
            &marks,
            &wp,
            line.wip.range(),
            "WIP",
            WIP_GREEN,
            |_, _, _| Ok(()),
        )?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Coords>;

#[expect(
    clippy::too_many_arguments,
    reason = "one panel: its area, axis, marks, data and styling, all distinct"
)]
fn panel<'b>(
    area: &DrawingArea<SVGBackend<'b>, Shift>,
    axis: &Axis,
    marks: &LineMarks<'_>,
    points: &[Point],
    range: Option<(f64, f64)>,
    desc: &str,
    colour: RGBColor,
    extra: impl FnOnce(&mut Chart<'_, 'b>, f64, f64) -> Result<(), PlotError>,
) -> Result<(), PlotError> {
    // Counts start at zero: a WIP of 17 against 18 is no cliff.
    let (_, hi) = y_range(range.map(|(lo, hi)| (lo.min(0.0), hi)), Kind::Num);
    let (y0, y1) = (0.0, hi.max(1.0));
    let mut chart = ChartBuilder::on(area)
        .margin(6)
        .x_label_area_size(24)
        .y_label_area_size(64)
        .build_cartesian_2d(axis.range(), y0..y1)
        .map_err(err)?;
    let x_fmt = |x: &f64| axis.label(*x);
    let numbers = y_number(y0, y1);
    mesh_style(&mut chart, desc, &numbers, &x_fmt)?;
    let end = axis.t1;
    let open = |m: &Marked| m.to.unwrap_or(end);
    chart
        .draw_series(
            marks
                .quality
                .iter()
                .map(|s| shade(axis, s.from, s.to, y0, y1, STALE_GREY.mix(0.25))),
        )
        .map_err(err)?;
    chart
        .draw_series(
            marks
                .gaps
                .iter()
                .map(|&(a, b)| shade(axis, a, b, y0, y1, GAP_VIOLET.mix(0.3))),
        )
        .map_err(err)?;
    chart
        .draw_series(
            marks
                .stuck
                .iter()
                .map(|m| shade(axis, m.from, open(m), y0, y1, STUCK_ORANGE.mix(0.25))),
        )
        .map_err(err)?;
    chart
        .draw_series(
            marks
                .jams
                .iter()
                .map(|m| shade(axis, m.from, open(m), y0, y1, BAD_RED.mix(0.25))),
        )
        .map_err(err)?;
    for run in line_runs(points, axis) {
        chart
            .draw_series(LineSeries::new(run, colour.stroke_width(2)))
            .map_err(err)?;
    }
    extra(&mut chart, y0, y1)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_breaks_the_step_line_and_the_last_value_holds_to_the_end() {
        let axis = Axis::new(60_000_000_000, 70_000_000_000);
        let runs = step_runs(
            &[
                (60_000_000_000, 1.0),
                (62_000_000_000, f64::NAN),
                (64_000_000_000, 2.0),
            ],
            axis.t1,
            &axis,
        );
        assert_eq!(
            runs,
            vec![vec![(0.0, 1.0), (2.0, 1.0)], vec![(4.0, 2.0), (10.0, 2.0)]]
        );
    }

    #[test]
    fn y_labels_carry_the_decimals_their_span_needs() {
        assert_eq!(y_number(0.0, 15.0)(&5.0), "5");
        assert_eq!(y_number(0.0, 150.0)(&50.0), "50");
        assert_eq!(y_number(0.59, 0.63)(&0.6), "0.600");
        assert_eq!(y_number(0.0, 5e7)(&2.5e7), "2.50e7");
    }

    #[test]
    fn axis_labels_drop_seconds_on_long_spans() {
        let t0 = 1_800_000_000_000_000_000; // 2027-01-15T08:00:00Z
        let short = Axis::new(t0, t0 + 60_000_000_000);
        assert_eq!(short.label(30.0), "08:00:30");
        // Hours since midnight on a day's axis; minutes past 08:00 on a shift's.
        let day = Axis::new(t0, t0 + 86_400_000_000_000);
        assert_eq!(day.label(9.0), "09:00");
        let shift = Axis::new(t0, t0 + 8 * 3_600_000_000_000);
        assert_eq!(shift.label(90.0), "09:30");
    }

    #[test]
    fn axis_ticks_on_round_numbers_are_round_times_of_day() {
        // A run that starts at 08:00:27.700: x counts from 08:00:00, so a
        // tick at x = 28 is 08:00:28, not 27.7 s + 28 s.
        let t0 = 1_800_000_000_000_000_000 + 27_700_000_000;
        let axis = Axis::new(t0, t0 + 15_000_000_000);
        assert_eq!(axis.range().start, 27.7);
        assert_eq!(axis.label(28.0), "08:00:28");
        assert_eq!(axis.x(t0 + 300_000_000), 28.0);
    }
}
