//! Seeing a line: read-only views of a [`LineModel`] (belt segments,
//! stations, photo-eyes, product poses) and a top-down SVG drawing of them,
//! for `twin snapshot`, docs and debugging.
//!
//! Like the rest of the model this does no I/O: [`svg`] returns the
//! document and the command line writes it. The drawing is a pure function
//! of the model's state, with every number printed to two decimals (of a
//! pixel), so the same config and options give the same bytes; its
//! trigonometry is `libm`'s, so they are the same bytes on every system.

use std::fmt::Write as _;

use rapier3d::prelude::Vector;

use super::{LineModel, convert};
use crate::physics::PlanPoint;

/// One straight piece of belt, in plan.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentView {
    /// Index of its conveyor in [`LineModel::conveyors`].
    pub conveyor: usize,
    /// Start of the segment on the belt's centre line.
    pub start: PlanPoint,
    /// Degrees counter-clockwise from east.
    pub heading_deg: f64,
    pub length: f64,
    pub width: f64,
}

/// A station or a photo-eye: where it stands and its state now.
#[derive(Debug, Clone, PartialEq)]
pub struct PlaceView {
    pub id: String,
    /// On the belt's centre line.
    pub at: PlanPoint,
    /// Direction of travel there, degrees counter-clockwise from east.
    pub heading_deg: f64,
    /// Width of the belt there.
    pub width: f64,
    /// Station: holding a product. Photo-eye: blocked.
    pub active: bool,
}

impl LineModel {
    /// Every product's centre and heading (radians counter-clockwise from
    /// east, the direction its length points), in spawn order.
    pub fn product_poses(&self) -> Vec<(PlanPoint, f32)> {
        self.products
            .iter()
            .map(|h| {
                let body = &self.world.bodies[*h];
                let x = *body.rotation() * Vector::X;
                (
                    self.frame.to_plan(body.translation()),
                    convert::atan2(-x.z, x.x),
                )
            })
            .collect()
    }

    /// The belt segments, conveyor by conveyor, in config order.
    pub fn segment_views(&self) -> Vec<SegmentView> {
        let mut out = Vec::new();
        for (ci, l) in self.geometry.iter().enumerate() {
            for p in &l.pieces {
                out.push(SegmentView {
                    conveyor: ci,
                    start: PlanPoint {
                        x: p.start[0] as f32,
                        y: p.start[1] as f32,
                        z: l.height as f32,
                    },
                    heading_deg: p.heading,
                    length: p.length,
                    width: l.width,
                });
            }
        }
        out
    }

    /// The stations (those on known conveyors), in config order; `active`
    /// while one holds a product.
    pub fn station_views(&self) -> Vec<PlaceView> {
        self.stations
            .iter()
            .map(|s| PlaceView {
                id: s.id.clone(),
                at: self.frame.to_plan(s.place.point),
                heading_deg: s.place.heading,
                width: f64::from(s.place.half_width) * 2.0,
                active: s.holding(),
            })
            .collect()
    }

    /// The photo-eyes (those on known conveyors), in config order; `active`
    /// while blocked.
    pub fn photo_eye_views(&self) -> Vec<PlaceView> {
        self.photo_eyes
            .iter()
            .filter_map(|e| {
                let c = self.world.colliders.get(e.collider)?;
                let x = c.rotation() * Vector::X;
                let half_width = c.shape().as_cuboid().map_or(0.0, |b| b.half_extents.z);
                Some(PlaceView {
                    id: e.id.clone(),
                    at: self.frame.to_plan(c.translation()),
                    heading_deg: f64::from(convert::atan2(-x.z, x.x)).to_degrees(),
                    width: f64::from(half_width) * 2.0,
                    active: e.blocked(),
                })
            })
            .collect()
    }

    /// The largest product type's length and width (along and across the
    /// belt), if the line has a product: what a station's glyph is sized
    /// for.
    pub fn product_size(&self) -> Option<(f64, f64)> {
        self.envelope.as_ref().map(|p| (p.length, p.width))
    }

    /// Each product's own length and width, in the order of
    /// [`LineModel::product_poses`] (after a changeover they differ): the
    /// configured size of the type its collider matches, so that drawings
    /// print the config's numbers, not their f32 round trip.
    pub fn product_sizes(&self) -> Vec<(f64, f64)> {
        self.products
            .iter()
            .map(|h| {
                let Some(z) = self.product_size_of(*h) else {
                    return (0.1, 0.1);
                };
                let (l, w) = (f64::from(z.length), f64::from(z.width));
                self.types
                    .iter()
                    .find(|t| (t.length - l).abs() < 1e-4 && (t.width - w).abs() < 1e-4)
                    .map_or((l, w), |t| (t.length, t.width))
            })
            .collect()
    }
}

/// One line to draw: its id and title, and the model in the state to show.
pub struct Panel<'a> {
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub model: &'a LineModel,
}

/// Pixels per metre: a 10 m line is 1000 px wide.
const SCALE: f64 = 100.0;
/// Margin round each line's drawing, px.
const MARGIN: f64 = 60.0;
/// Height of a line's title above its drawing, px.
const TITLE: f64 = 30.0;
/// Height of the legend and scale bar at the bottom, px.
const LEGEND: f64 = 60.0;

const BELT_FILL: &str = "#d9d9d9";
const BELT_STROKE: &str = "#555555";
const STATION_IDLE: &str = "#fff2cc";
const STATION_HOLDING: &str = "#ffc000";
const PRODUCT: &str = "#4472c4";
const EYE_CLEAR: &str = "#2e9e44";
const EYE_BLOCKED: &str = "#d62728";

/// A number for the document: two decimals, no negative zero.
fn n(v: f64) -> String {
    let s = format!("{v:.2}");
    if s == "-0.00" { "0.00".into() } else { s }
}

/// Escapes text for XML content and attributes.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The text anchor of a label placed `dx` (plan, east) from what it names:
/// labels to the side read away from it.
fn anchor(dx: f64) -> &'static str {
    if dx > 0.05 {
        "start"
    } else if dx < -0.05 {
        "end"
    } else {
        "middle"
    }
}

/// A plan rectangle (centre, heading, length along it, width across) as its
/// four corners.
fn corners(cx: f64, cy: f64, heading_rad: f64, length: f64, width: f64) -> [(f64, f64); 4] {
    let (s, c) = libm::sincos(heading_rad);
    let (hl, hw) = (length / 2.0, width / 2.0);
    [(-hl, -hw), (hl, -hw), (hl, hw), (-hl, hw)]
        .map(|(a, b)| (cx + a * c - b * s, cy + a * s + b * c))
}

/// Plan bounds (min x, min y, max x, max y) of everything drawn for a line.
fn bounds(model: &LineModel) -> (f64, f64, f64, f64) {
    let mut b = (
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    );
    let mut grow = |(x, y): (f64, f64)| {
        b = (b.0.min(x), b.1.min(y), b.2.max(x), b.3.max(y));
    };
    for s in model.segment_views() {
        let h = s.heading_deg.to_radians();
        let (sin, cos) = libm::sincos(h);
        let cx = f64::from(s.start.x) + cos * s.length / 2.0;
        let cy = f64::from(s.start.y) + sin * s.length / 2.0;
        corners(cx, cy, h, s.length, s.width)
            .into_iter()
            .for_each(&mut grow);
    }
    if !b.0.is_finite() {
        return (0.0, 0.0, 1.0, 1.0);
    }
    b
}

/// A rectangle in plan: centre, heading (degrees counter-clockwise from
/// east), length along the heading and width across it, metres.
#[derive(Debug, Clone, Copy)]
struct Oriented {
    x: f64,
    y: f64,
    heading_deg: f64,
    length: f64,
    width: f64,
}

/// Where plan coordinates land in one panel of the document.
struct Frame {
    min_x: f64,
    max_y: f64,
    /// Top of the drawing area, px.
    top: f64,
}

impl Frame {
    fn x(&self, x: f64) -> f64 {
        MARGIN + (x - self.min_x) * SCALE
    }
    /// North up: plan y grows up, SVG y grows down.
    fn y(&self, y: f64) -> f64 {
        self.top + (self.max_y - y) * SCALE
    }
    /// An SVG rotation (clockwise degrees) about a plan point, for a plan
    /// heading (counter-clockwise).
    fn rotate(&self, heading_deg: f64, x: f64, y: f64) -> String {
        format!(
            "rotate({} {} {})",
            n(-heading_deg),
            n(self.x(x)),
            n(self.y(y))
        )
    }
    /// A plan rectangle centred at (x, y), as an SVG `rect` rotated into
    /// place.
    fn rect(&self, class: &str, b: Oriented, style: &str) -> String {
        let Oriented {
            x,
            y,
            heading_deg,
            length,
            width,
        } = b;
        format!(
            "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" transform=\"{}\" {style}/>\n",
            n(self.x(x) - length * SCALE / 2.0),
            n(self.y(y) - width * SCALE / 2.0),
            n(length * SCALE),
            n(width * SCALE),
            self.rotate(heading_deg, x, y)
        )
    }
}

/// Draws the lines one under the other, each with its belts (conveyor id
/// and direction arrow on each), stations (filled while holding a product),
/// photo-eyes (red while blocked, green while clear) and products, then a
/// legend and a 1 m scale bar. `caption` goes under the legend (e.g. the
/// simulated time and belt speeds).
pub fn svg(panels: &[Panel<'_>], caption: &str) -> String {
    let boxes: Vec<(f64, f64, f64, f64)> = panels.iter().map(|p| bounds(p.model)).collect();
    let width = boxes
        .iter()
        .map(|b| (b.2 - b.0) * SCALE + 2.0 * MARGIN)
        .fold(520.0, f64::max);
    let heights: Vec<f64> = boxes
        .iter()
        .map(|b| TITLE + (b.3 - b.1) * SCALE + 2.0 * MARGIN)
        .collect();
    let height = heights.iter().sum::<f64>() + LEGEND + 20.0;

    let mut d = String::new();
    let _ = writeln!(
        d,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">",
        w = n(width),
        h = n(height)
    );
    let _ = writeln!(
        d,
        "<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"5\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 Z\" fill=\"{BELT_STROKE}\"/></marker></defs>"
    );
    let _ = writeln!(
        d,
        "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"#ffffff\"/>",
        n(width),
        n(height)
    );

    let mut top = 0.0;
    for ((p, b), h) in panels.iter().zip(&boxes).zip(&heights) {
        let title = match p.name {
            Some(name) => format!("{} ({})", esc(name), esc(p.id)),
            None => esc(p.id),
        };
        let _ = writeln!(
            d,
            "<g class=\"line\" id=\"line-{}\">\n<text x=\"{}\" y=\"{}\" font-size=\"16\" font-weight=\"bold\">{title}</text>",
            esc(p.id),
            n(MARGIN),
            n(top + 22.0)
        );
        let f = Frame {
            min_x: b.0,
            max_y: b.3,
            top: top + TITLE + MARGIN,
        };
        draw_line(&mut d, &f, p.model);
        d.push_str("</g>\n");
        top += h;
    }
    legend(&mut d, top + 10.0, caption);
    d.push_str("</svg>\n");
    d
}

fn draw_line(d: &mut String, f: &Frame, model: &LineModel) {
    let segments = model.segment_views();
    // Belts first, then everything that stands on them.
    for s in &segments {
        let h = s.heading_deg.to_radians();
        let (sin, cos) = libm::sincos(h);
        let (x0, y0) = (f64::from(s.start.x), f64::from(s.start.y));
        let (cx, cy) = (x0 + cos * s.length / 2.0, y0 + sin * s.length / 2.0);
        let style = format!("fill=\"{BELT_FILL}\" stroke=\"{BELT_STROKE}\" stroke-width=\"1\"");
        let b = Oriented {
            x: cx,
            y: cy,
            heading_deg: s.heading_deg,
            length: s.length,
            width: s.width,
        };
        d.push_str(&f.rect("belt", b, &style));
    }
    for (k, s) in segments.iter().enumerate() {
        let h = s.heading_deg.to_radians();
        let (sin, cos) = libm::sincos(h);
        let (x0, y0) = (f64::from(s.start.x), f64::from(s.start.y));
        // An arrow along the centre line, in the middle of the segment.
        let half = (s.length * 0.15).min(0.3);
        let (cx, cy) = (x0 + cos * s.length / 2.0, y0 + sin * s.length / 2.0);
        let _ = writeln!(
            d,
            "<line class=\"arrow\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{BELT_STROKE}\" stroke-width=\"1.5\" marker-end=\"url(#arrow)\"/>",
            n(f.x(cx - cos * half)),
            n(f.y(cy - sin * half)),
            n(f.x(cx + cos * half)),
            n(f.y(cy + sin * half))
        );
        // The conveyor's id once, beside its first segment, left of travel.
        let first = k == 0 || segments[k - 1].conveyor != s.conveyor;
        if let (true, Some(c)) = (first, model.conveyors().get(s.conveyor)) {
            let off = s.width / 2.0 + 0.12;
            let (lx, ly) = (cx - sin * off, cy + cos * off);
            let _ = writeln!(
                d,
                "<text class=\"conveyor\" x=\"{}\" y=\"{}\" text-anchor=\"{}\" dominant-baseline=\"middle\" font-weight=\"bold\" fill=\"{BELT_STROKE}\">{}</text>",
                n(f.x(lx)),
                n(f.y(ly)),
                anchor(-sin * off),
                esc(&c.id)
            );
        }
    }
    let (p_len, _) = model.product_size().unwrap_or((0.1, 0.1));
    for s in model.station_views() {
        let (x, y) = (f64::from(s.at.x), f64::from(s.at.y));
        let fill = if s.active {
            STATION_HOLDING
        } else {
            STATION_IDLE
        };
        let style =
            format!("fill=\"{fill}\" fill-opacity=\"0.8\" stroke=\"#7f6000\" stroke-width=\"1.5\"");
        let along = (p_len * 2.0).max(0.2);
        let b = Oriented {
            x,
            y,
            heading_deg: s.heading_deg,
            length: along,
            width: s.width + 0.2,
        };
        d.push_str(&f.rect("station", b, &style));
        let (sin, cos) = convert::sin_cos_deg(s.heading_deg);
        let off = s.width / 2.0 + 0.22;
        let _ = writeln!(
            d,
            "<text class=\"station-id\" x=\"{}\" y=\"{}\" text-anchor=\"{}\" dominant-baseline=\"middle\" fill=\"#7f6000\">{}</text>",
            n(f.x(x + sin * off)),
            n(f.y(y - cos * off)),
            anchor(sin * off),
            esc(&s.id)
        );
    }
    for ((at, heading), (length, width)) in
        model.product_poses().into_iter().zip(model.product_sizes())
    {
        let style = format!("fill=\"{PRODUCT}\" stroke=\"#203864\" stroke-width=\"0.5\"");
        let b = Oriented {
            x: f64::from(at.x),
            y: f64::from(at.y),
            heading_deg: f64::from(heading).to_degrees(),
            length,
            width,
        };
        d.push_str(&f.rect("product", b, &style));
    }
    for e in model.photo_eye_views() {
        let (x, y) = (f64::from(e.at.x), f64::from(e.at.y));
        let (sin, cos) = convert::sin_cos_deg(e.heading_deg);
        let reach = e.width / 2.0 + 0.08;
        let colour = if e.active { EYE_BLOCKED } else { EYE_CLEAR };
        let state = if e.active { "blocked" } else { "clear" };
        let _ = writeln!(
            d,
            "<line class=\"eye {state}\" x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{colour}\" stroke-width=\"3\"/>",
            n(f.x(x - sin * reach)),
            n(f.y(y + cos * reach)),
            n(f.x(x + sin * reach)),
            n(f.y(y - cos * reach))
        );
        let off = reach + 0.1;
        let _ = writeln!(
            d,
            "<text class=\"eye-id\" x=\"{}\" y=\"{}\" text-anchor=\"{}\" dominant-baseline=\"middle\" font-size=\"11\" fill=\"{colour}\">{}</text>",
            n(f.x(x - sin * off)),
            n(f.y(y + cos * off)),
            anchor(-sin * off),
            esc(&e.id)
        );
    }
}

fn legend(d: &mut String, top: f64, caption: &str) {
    let y = top + 10.0;
    let mut x = MARGIN;
    d.push_str("<g class=\"legend\">\n");
    // (is a line, fill or colour, stroke, label)
    let items = [
        (false, BELT_FILL, BELT_STROKE, "belt"),
        (false, STATION_IDLE, "#7f6000", "station"),
        (false, STATION_HOLDING, "#7f6000", "station holding"),
        (false, PRODUCT, "#203864", "product"),
        (true, EYE_CLEAR, "", "eye clear"),
        (true, EYE_BLOCKED, "", "eye blocked"),
    ];
    for (is_line, fill, stroke, label) in items {
        if is_line {
            let _ = writeln!(
                d,
                "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{fill}\" stroke-width=\"3\"/>",
                n(x + 8.0),
                n(y - 2.0),
                n(x + 8.0),
                n(y + 14.0)
            );
        } else {
            let _ = writeln!(
                d,
                "<rect class=\"legend\" x=\"{}\" y=\"{}\" width=\"16\" height=\"12\" fill=\"{fill}\" stroke=\"{stroke}\"/>",
                n(x),
                n(y)
            );
        }
        let _ = writeln!(
            d,
            "<text x=\"{}\" y=\"{}\" dominant-baseline=\"middle\">{label}</text>",
            n(x + 22.0),
            n(y + 6.0)
        );
        x += 22.0 + 7.0 * label.len() as f64 + 16.0;
    }
    // Scale bar: 1 m.
    let (sx, sy) = (MARGIN, y + 32.0);
    let _ = writeln!(
        d,
        "<path class=\"scale\" d=\"M{a},{t} L{a},{b} L{c},{b} L{c},{t}\" fill=\"none\" stroke=\"#000000\" stroke-width=\"1.5\"/>\n<text x=\"{}\" y=\"{}\">1 m</text>",
        n(sx + SCALE + 8.0),
        n(sy + 4.0),
        a = n(sx),
        c = n(sx + SCALE),
        t = n(sy - 5.0),
        b = n(sy + 1.0)
    );
    if !caption.is_empty() {
        let _ = writeln!(
            d,
            "<text class=\"caption\" x=\"{}\" y=\"{}\" fill=\"#555555\">{}</text>",
            n(sx + SCALE + 50.0),
            n(sy + 4.0),
            esc(caption)
        );
    }
    d.push_str("</g>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use std::path::Path;
    use std::time::Duration;

    fn demo() -> crate::config::LoadedConfig {
        let text = include_str!("../../plant-configs/packaging-line.toml");
        load_str(Path::new("packaging-line.toml"), text).expect("the demo config is valid")
    }

    #[test]
    fn views_follow_the_config() {
        let cfg = demo();
        let line = &cfg.config.lines[0];
        let mut m = LineModel::new(line, Duration::from_millis(5));
        let segs = m.segment_views();
        assert_eq!(segs.len(), 3);
        // The outfeed's second segment starts at (7, 0) and heads north.
        assert_eq!((segs[2].start.x, segs[2].start.y), (7.0, 0.0));
        assert_eq!(segs[2].heading_deg, 90.0);
        let eyes = m.photo_eye_views();
        assert_eq!(eyes.len(), 4);
        // eye_exit: 4.8 m along the outfeed = 1.8 m up its northward leg.
        let exit = &eyes[3];
        assert!((exit.at.x - 7.0).abs() < 1e-4 && (exit.at.y - 1.8).abs() < 1e-4);
        assert!(
            (exit.heading_deg - 90.0).abs() < 1e-3,
            "{}",
            exit.heading_deg
        );
        assert!((exit.width - 0.3).abs() < 1e-6);
        assert_eq!(m.station_views()[2].id, "labeller");

        m.spawn_product_at(1, 4.0).expect("product");
        let (at, heading) = m.product_poses()[0];
        assert!((at.x - 7.0).abs() < 1e-4 && (at.y - 1.0).abs() < 1e-4);
        assert!((heading - std::f32::consts::FRAC_PI_2).abs() < 1e-4);
    }

    #[test]
    fn the_drawing_is_deterministic_and_escapes_text() {
        let cfg = demo();
        let line = &cfg.config.lines[0];
        let mut m = LineModel::new(line, Duration::from_millis(5));
        m.spawn_product().expect("product");
        let panel = [Panel {
            id: "a<b",
            name: None,
            model: &m,
        }];
        let a = svg(&panel, "t = 0s");
        assert_eq!(a, svg(&panel, "t = 0s"));
        assert!(a.contains("a&lt;b") && !a.contains("a<b"));
        assert_eq!(a.matches("class=\"belt\"").count(), 3);
        assert_eq!(a.matches("class=\"product\"").count(), 1);
        assert!(!a.contains("NaN") && !a.contains("\"inf") && !a.contains("\"-inf"));
    }
}
