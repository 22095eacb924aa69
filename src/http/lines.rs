//! The lines as the page draws them (`GET /api/v1/lines`,
//! `GET /api/v1/lines/{id}`): each line's fixed geometry and its state now.
//!
//! [`LineFollower`] lives inside [`super::HttpSink`] on the tick thread. The
//! geometry (belt pieces, stations, eyes, pushers, diverters, in plan
//! metres) is taken once from the physics model and the config's layout
//! walk and shared behind an `Arc`; the state (product poses, eyes, stations,
//! pushers, diverters, jams, residuals, slip) is taken from the core at
//! publish time, so a handler only serialises what is already built and
//! never reaches into the core.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::Serialize;

use crate::config::LoadedConfig;
use crate::config::layout::Layout;
use crate::twin::TwinCore;
use crate::twin::events::{JamEvent, TwinEvent, rfc3339};

/// Residual events kept per line for the drawing: the newest this many,
/// and none older than [`RESIDUAL_WINDOW_NS`] of tick time.
pub const RESIDUALS_KEPT: usize = 64;
/// How long a residual stays on the drawing, in tick time.
pub const RESIDUAL_WINDOW_NS: i64 = 60_000_000_000;

/// Plan metres, to the millimetre: the drawing needs no more, and short
/// numbers keep a 4 Hz poll small.
fn mm(v: f64) -> f64 {
    if v.is_finite() {
        // `+ 0.0` turns a negative zero positive: no `-0.0` in the JSON.
        (v * 1000.0).round() / 1000.0 + 0.0
    } else {
        0.0
    }
}

/// Degrees to a hundredth.
fn deg(v: f64) -> f64 {
    if v.is_finite() {
        (v * 100.0).round() / 100.0 + 0.0
    } else {
        0.0
    }
}

/// One straight piece of belt (a curve is several chords).
#[derive(Debug, Clone, Serialize)]
pub struct SegmentJson {
    pub conveyor: Arc<str>,
    /// Start on the belt's centre line, plan metres.
    pub x: f64,
    pub y: f64,
    /// Degrees counter-clockwise from east.
    pub heading: f64,
    pub length: f64,
    pub width: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConveyorJson {
    pub id: Arc<str>,
    pub length: f64,
    pub width: f64,
    /// Where its belt starts, and its first heading (for its label).
    pub x: f64,
    pub y: f64,
    pub heading: f64,
}

/// A thing standing on a belt: a station, an eye, a pusher, a diverter.
#[derive(Debug, Clone, Serialize)]
pub struct PlaceJson {
    pub id: Arc<str>,
    pub conveyor: Arc<str>,
    /// Metres along its conveyor.
    pub position: f64,
    pub x: f64,
    pub y: f64,
    /// Direction of travel there.
    pub heading: f64,
    /// Width of the belt there.
    pub width: f64,
    /// An eye's tag; a pusher's or diverter's coil tag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<Arc<str>>,
    /// A diverter's branch conveyor, and the branch's first heading.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to_heading: Option<f64>,
}

/// A line's fixed drawing, computed once for the run.
#[derive(Debug, Clone, Serialize)]
pub struct LineGeometry {
    pub id: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Plan bounds of the belts: `[min x, min y, max x, max y]`.
    pub bounds: [f64; 4],
    pub conveyors: Vec<ConveyorJson>,
    pub segments: Vec<SegmentJson>,
    pub stations: Vec<PlaceJson>,
    pub eyes: Vec<PlaceJson>,
    pub pushers: Vec<PlaceJson>,
    pub diverters: Vec<PlaceJson>,
    /// The largest product type's length and width, metres.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<[f64; 2]>,
}

/// A product now: centre, heading (degrees), length, width.
#[derive(Debug, Clone, Serialize)]
pub struct ProductJson {
    pub x: f64,
    pub y: f64,
    pub heading: f64,
    pub length: f64,
    pub width: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EyeNow {
    pub id: Arc<str>,
    /// What the model expects the beam to see now.
    pub expected_blocked: bool,
    /// The twin's verdict on the sensor: `ok`, `stuck_on`, `stuck_off`.
    pub condition: &'static str,
    /// Residuals at this eye within [`RESIDUAL_WINDOW_NS`].
    pub residuals: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ActiveNow {
    pub id: Arc<str>,
    /// Station: holding a product. Pusher, diverter: coil fired.
    pub active: bool,
    /// Pusher: paddle away from home.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extended: Option<bool>,
}

/// A place on a belt given by a conveyor and metres along it.
#[derive(Debug, Clone, Serialize)]
pub struct Along {
    pub conveyor: Arc<str>,
    pub m: f64,
    pub x: f64,
    pub y: f64,
}

/// An active jam, between the eye it backed up to and the next one.
#[derive(Debug, Clone, Serialize)]
pub struct JamNow {
    pub after_eye: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before_eye: Option<Arc<str>>,
    pub from: Along,
    /// `None`: to the end of the line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<Along>,
    pub since: String,
    /// The stretch of belt it covers, as plan points along the centre line.
    pub path: Vec<[f64; 2]>,
}

/// A recent residual, at its eye.
#[derive(Debug, Clone, Serialize)]
pub struct ResidualNow {
    pub t: String,
    #[serde(skip)]
    pub t_ns: i64,
    pub eye: Arc<str>,
    /// `missing`, `extra` or `late` (as in the `residual` event).
    #[serde(rename = "residual")]
    pub kind: &'static str,
    pub x: f64,
    pub y: f64,
}

/// A belt's slip as the last `line` event estimated it.
#[derive(Debug, Clone, Serialize)]
pub struct BeltSlip {
    pub conveyor: Arc<str>,
    pub slip: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_slip: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatusJson {
    pub wip: u64,
    pub out: u64,
    pub lost: u64,
    pub pushed: u64,
    pub diverted: u64,
    pub throughput_per_min: f64,
    pub uncertain: bool,
}

/// A line's state at one publish.
#[derive(Debug, Clone, Serialize)]
pub struct LineStateJson {
    pub status: StatusJson,
    /// In spawn order. The model keeps no product ids, so a product's index
    /// shifts when one ahead of it leaves.
    pub products: Vec<ProductJson>,
    pub eyes: Vec<EyeNow>,
    pub stations: Vec<ActiveNow>,
    pub pushers: Vec<ActiveNow>,
    pub diverters: Vec<ActiveNow>,
    pub jams: Vec<JamNow>,
    pub residuals: Vec<ResidualNow>,
    pub belts: Vec<BeltSlip>,
}

/// One line in the snapshot: its geometry (shared) and its state.
#[derive(Debug, Clone)]
pub struct LineView {
    pub geometry: Arc<LineGeometry>,
    pub state: LineStateJson,
}

/// Per line, what the events told (jams, residuals, slip), and the layout
/// walk of each conveyor for placing them.
struct Followed {
    id: Arc<str>,
    name: Option<String>,
    /// Conveyor id → its layout, in config order.
    layouts: Vec<(Arc<str>, Layout)>,
    pushers: Vec<PlaceJson>,
    diverters: Vec<PlaceJson>,
    /// Station id → its conveyor and metres along it.
    station_at: BTreeMap<String, (Arc<str>, f64)>,
    jams: BTreeMap<Arc<str>, JamNow>,
    residuals: VecDeque<ResidualNow>,
    belts: Vec<BeltSlip>,
    /// Eye id → plan point.
    eye_at: BTreeMap<Arc<str>, [f64; 2]>,
}

impl Followed {
    fn layout(&self, conveyor: &str) -> Option<&Layout> {
        self.layouts
            .iter()
            .find(|(id, _)| &**id == conveyor)
            .map(|(_, l)| l)
    }

    fn along(&self, conveyor: &Arc<str>, m: f64) -> Along {
        let [x, y] = self.layout(conveyor).map_or([0.0, 0.0], |l| l.at(m).0);
        Along {
            conveyor: conveyor.clone(),
            m: mm(m),
            x: mm(x),
            y: mm(y),
        }
    }

    /// Plan points along the belts from `from` to `to` (same conveyor, or
    /// on to the next one), every piece's joint included.
    fn path(&self, from: (&str, f64), to: Option<(&str, f64)>) -> Vec<[f64; 2]> {
        let mut out = Vec::new();
        let mut walk = |conveyor: &str, a: f64, b: f64| {
            let Some(l) = self.layout(conveyor) else {
                return;
            };
            let b = b.min(l.length());
            out.push(l.at(a).0);
            let mut at = 0.0;
            for p in &l.pieces {
                at += p.length;
                if at > a && at < b {
                    out.push(p.end);
                }
            }
            out.push(l.at(b).0);
        };
        match to {
            Some((c, m)) if c == from.0 => walk(c, from.1, m),
            Some((c, m)) => {
                walk(from.0, from.1, f64::INFINITY);
                walk(c, 0.0, m);
            }
            None => walk(from.0, from.1, f64::INFINITY),
        }
        out.into_iter().map(|[x, y]| [mm(x), mm(y)]).collect()
    }
}

/// The lines' part of the HTTP sink.
pub struct LineFollower {
    lines: Vec<Followed>,
    /// Built at the first publish, from the models as built.
    geometry: Option<Vec<Arc<LineGeometry>>>,
}

fn place(
    id: &str,
    conveyor: &str,
    position: f64,
    layout: Option<&Layout>,
    tag: &str,
) -> Option<PlaceJson> {
    let l = layout?;
    let ([x, y], heading) = l.at(position);
    Some(PlaceJson {
        id: Arc::from(id),
        conveyor: Arc::from(conveyor),
        position: mm(position),
        x: mm(x),
        y: mm(y),
        heading: deg(heading),
        width: mm(l.width),
        tag: Some(Arc::from(tag)),
        to: None,
        to_heading: None,
    })
}

impl LineFollower {
    /// Lay out `cfg`'s lines (those with conveyors, as the core models).
    pub fn new(cfg: &LoadedConfig) -> Self {
        let lines = cfg
            .config
            .lines
            .iter()
            .filter(|l| !l.conveyors.is_empty())
            .map(|l| {
                let layouts: Vec<(Arc<str>, Layout)> = l
                    .conveyors
                    .iter()
                    .map(|c| (Arc::from(c.id.value.as_str()), Layout::of(c)))
                    .collect();
                let find = |id: &str| layouts.iter().find(|(c, _)| &**c == id).map(|(_, lay)| lay);
                let pushers = l
                    .pushers
                    .iter()
                    .filter_map(|p| {
                        place(
                            &p.id.value,
                            &p.conveyor.value,
                            p.position.value,
                            find(&p.conveyor.value),
                            &p.coil_tag.value,
                        )
                    })
                    .collect();
                let diverters = l
                    .diverters
                    .iter()
                    .filter_map(|d| {
                        let mut p = place(
                            &d.id.value,
                            &d.conveyor.value,
                            d.position.value,
                            find(&d.conveyor.value),
                            &d.coil_tag.value,
                        )?;
                        p.to = Some(Arc::from(d.to.value.as_str()));
                        p.to_heading = find(&d.to.value)
                            .and_then(|b| b.pieces.first())
                            .map(|piece| deg(piece.heading));
                        Some(p)
                    })
                    .collect();
                let station_at = l
                    .stations
                    .iter()
                    .map(|st| {
                        (
                            st.id.value.clone(),
                            (Arc::from(st.conveyor.value.as_str()), st.position.value),
                        )
                    })
                    .collect();
                // Where each eye is, for residuals that come before the
                // first publish has built the geometry.
                let eye_at = l
                    .photo_eyes
                    .iter()
                    .filter_map(|e| {
                        let ([x, y], _) = find(&e.conveyor.value)?.at(e.position.value);
                        Some((Arc::from(e.id.value.as_str()), [mm(x), mm(y)]))
                    })
                    .collect();
                Followed {
                    station_at,
                    eye_at,
                    id: Arc::from(l.id.value.as_str()),
                    name: l.name.clone(),
                    layouts,
                    pushers,
                    diverters,
                    jams: BTreeMap::new(),
                    residuals: VecDeque::new(),
                    belts: Vec::new(),
                }
            })
            .collect();
        LineFollower {
            lines,
            geometry: None,
        }
    }

    fn line_mut(&mut self, id: &str) -> Option<&mut Followed> {
        self.lines.iter_mut().find(|l| &*l.id == id)
    }

    /// Take what a tick's events say about the lines.
    pub fn follow(&mut self, e: &TwinEvent) {
        match e {
            TwinEvent::Jam(j) => self.jam(j),
            TwinEvent::Residual(r) => {
                let Some(l) = self.line_mut(&r.line) else {
                    return;
                };
                let [x, y] = l.eye_at.get(&r.eye).copied().unwrap_or([0.0, 0.0]);
                l.residuals.push_back(ResidualNow {
                    t: rfc3339(r.t_ns),
                    t_ns: r.t_ns,
                    eye: r.eye.clone(),
                    kind: r.kind,
                    x,
                    y,
                });
                while l.residuals.len() > RESIDUALS_KEPT {
                    l.residuals.pop_front();
                }
            }
            TwinEvent::Line(ev) => {
                if let Some(l) = self.line_mut(&ev.line) {
                    l.belts = ev
                        .belts
                        .iter()
                        .map(|b| BeltSlip {
                            conveyor: b.conveyor.clone(),
                            slip: b.slip,
                            model_slip: b.model_slip,
                        })
                        .collect();
                }
            }
            _ => {}
        }
    }

    fn jam(&mut self, j: &JamEvent) {
        let Some(l) = self.line_mut(&j.line) else {
            return;
        };
        if j.state != "start" {
            l.jams.remove(&j.after_eye);
            return;
        }
        let to = match (&j.to_conveyor, j.to_m) {
            (Some(c), Some(m)) => Some((c, m)),
            _ => None,
        };
        let jam = JamNow {
            after_eye: j.after_eye.clone(),
            before_eye: j.before_eye.clone(),
            from: l.along(&j.from_conveyor, j.from_m),
            to: to.map(|(c, m)| l.along(c, m)),
            since: rfc3339(j.since_ns),
            path: l.path((&j.from_conveyor, j.from_m), to.map(|(c, m)| (&**c, m))),
        };
        l.jams.insert(j.after_eye.clone(), jam);
    }

    /// Every modelled line now, for the snapshot.
    pub fn views(&mut self, core: &TwinCore, t_ns: i64) -> Vec<LineView> {
        if self.geometry.is_none() {
            self.geometry = Some(self.build_geometry(core));
        }
        let geometry = self.geometry.clone().unwrap_or_default();
        let mut out = Vec::with_capacity(geometry.len());
        for st in core.lines() {
            let Some(g) = geometry.iter().find(|g| g.id == st.id) else {
                continue;
            };
            let Some(f) = self.lines.iter_mut().find(|l| l.id == st.id) else {
                continue;
            };
            while f
                .residuals
                .front()
                .is_some_and(|r| t_ns.saturating_sub(r.t_ns) > RESIDUAL_WINDOW_NS)
            {
                f.residuals.pop_front();
            }
            let m = st.model();
            let products = m
                .product_poses()
                .into_iter()
                .zip(m.product_sizes())
                .map(|((at, h), (length, width))| ProductJson {
                    x: mm(f64::from(at.x)),
                    y: mm(f64::from(at.y)),
                    heading: deg(f64::from(h).to_degrees()),
                    length: mm(length),
                    width: mm(width),
                })
                .collect();
            let expected = m.photo_eyes();
            let eyes = st
                .eyes()
                .iter()
                .map(|e| EyeNow {
                    id: e.id.clone(),
                    expected_blocked: expected
                        .iter()
                        .find(|x| *x.id == *e.id)
                        .is_some_and(|x| x.blocked()),
                    condition: e.condition.as_str(),
                    residuals: f.residuals.iter().filter(|r| r.eye == e.id).count(),
                })
                .collect();
            let stations = m
                .stations()
                .iter()
                .map(|s| ActiveNow {
                    id: Arc::from(s.id.as_str()),
                    active: s.holding(),
                    extended: None,
                })
                .collect();
            let pushers = m
                .pushers()
                .iter()
                .map(|p| ActiveNow {
                    id: Arc::from(p.id.as_str()),
                    active: p.fired(),
                    extended: Some(p.extended()),
                })
                .collect();
            let diverters = m
                .diverters()
                .iter()
                .map(|d| ActiveNow {
                    id: Arc::from(d.id.as_str()),
                    active: d.fired(),
                    extended: None,
                })
                .collect();
            let s = &st.status;
            out.push(LineView {
                geometry: g.clone(),
                state: LineStateJson {
                    status: StatusJson {
                        wip: s.wip,
                        out: s.out,
                        lost: s.lost,
                        pushed: s.pushed,
                        diverted: s.diverted,
                        throughput_per_min: (s.throughput_per_min * 100.0).round() / 100.0,
                        uncertain: s.uncertain,
                    },
                    products,
                    eyes,
                    stations,
                    pushers,
                    diverters,
                    jams: f.jams.values().cloned().collect(),
                    residuals: f.residuals.iter().cloned().collect(),
                    belts: f.belts.clone(),
                },
            });
        }
        out
    }

    /// The fixed drawing of each modelled line: the model's belt pieces,
    /// stations and eyes (as `twin snapshot` draws them), the config's
    /// pushers and diverters placed by the layout walk.
    fn build_geometry(&mut self, core: &TwinCore) -> Vec<Arc<LineGeometry>> {
        let mut out = Vec::new();
        for st in core.lines() {
            let Some(f) = self.lines.iter_mut().find(|l| l.id == st.id) else {
                continue;
            };
            let m = st.model();
            let conveyor_id =
                |i: usize| -> Arc<str> { f.layouts.get(i).map_or(Arc::from("?"), |c| c.0.clone()) };
            let segments: Vec<SegmentJson> = m
                .segment_views()
                .into_iter()
                .map(|s| SegmentJson {
                    conveyor: conveyor_id(s.conveyor),
                    x: mm(f64::from(s.start.x)),
                    y: mm(f64::from(s.start.y)),
                    heading: deg(s.heading_deg),
                    length: mm(s.length),
                    width: mm(s.width),
                })
                .collect();
            let mut b = [
                f64::INFINITY,
                f64::INFINITY,
                f64::NEG_INFINITY,
                f64::NEG_INFINITY,
            ];
            for s in &segments {
                let (sin, cos) = crate::config::layout::sin_cos_deg(s.heading);
                let (hw, len) = (s.width / 2.0, s.length);
                for (a, c) in [(0.0, -hw), (0.0, hw), (len, -hw), (len, hw)] {
                    let (x, y) = (s.x + a * cos - c * sin, s.y + a * sin + c * cos);
                    b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
                }
            }
            if !b[0].is_finite() {
                b = [0.0, 0.0, 1.0, 1.0];
            }
            let conveyors = f
                .layouts
                .iter()
                .map(|(id, l)| ConveyorJson {
                    id: id.clone(),
                    length: mm(l.length()),
                    width: mm(l.width),
                    x: mm(l.start[0]),
                    y: mm(l.start[1]),
                    heading: deg(l.pieces.first().map_or(0.0, |p| p.heading)),
                })
                .collect();
            let eye_place = |e: &crate::twin::lines::EyeState| -> PlaceJson {
                let conveyor = conveyor_id(e.conveyor);
                let ([x, y], heading) = f
                    .layouts
                    .get(e.conveyor)
                    .map_or(([0.0, 0.0], 0.0), |(_, l)| l.at(e.position));
                let width = f.layouts.get(e.conveyor).map_or(0.0, |(_, l)| l.width);
                PlaceJson {
                    id: e.id.clone(),
                    conveyor,
                    position: mm(e.position),
                    x: mm(x),
                    y: mm(y),
                    heading: deg(heading),
                    width: mm(width),
                    tag: Some(e.tag.clone()),
                    to: None,
                    to_heading: None,
                }
            };
            let eyes: Vec<PlaceJson> = st.eyes().iter().map(eye_place).collect();
            let stations = m
                .station_views()
                .into_iter()
                .map(|s| {
                    let (conveyor, position) = f
                        .station_at
                        .get(&s.id)
                        .cloned()
                        .unwrap_or_else(|| (Arc::from(""), 0.0));
                    PlaceJson {
                        id: Arc::from(s.id.as_str()),
                        conveyor,
                        position: mm(position),
                        x: mm(f64::from(s.at.x)),
                        y: mm(f64::from(s.at.y)),
                        heading: deg(s.heading_deg),
                        width: mm(s.width),
                        tag: None,
                        to: None,
                        to_heading: None,
                    }
                })
                .collect();
            out.push(Arc::new(LineGeometry {
                id: f.id.clone(),
                name: f.name.clone(),
                bounds: b.map(mm),
                conveyors,
                segments,
                stations,
                eyes,
                pushers: f.pushers.clone(),
                diverters: f.diverters.clone(),
                product: m.product_size().map(|(l, w)| [mm(l), mm(w)]),
            }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use std::path::Path;

    fn demo() -> LoadedConfig {
        let text = include_str!("../../plant-configs/packaging-line.toml");
        load_str(Path::new("packaging-line.toml"), text).expect("the demo config is valid")
    }

    /// A 3 m belt east with a reject pusher at 1 m, and a diverter at 2 m
    /// onto a lane heading north from its north edge.
    const DEVICES: &str = r#"
[plant]
name = "devices"
tick = "100ms"

[[sources.modbus]]
name = "plc"
address = "127.0.0.1:502"
registers = [
  { tag = "belt.speed", table = "input", address = 0, unit = "m/s" },
  { tag = "reject.coil", table = "coil", address = 0 },
  { tag = "divert.coil", table = "coil", address = 1 },
]

[[lines]]
id = "l1"
  [[lines.conveyors]]
  id = "main"
  speed_tag = "belt.speed"
  width = 0.6
  segments = [{ length = 3.0 }]
  [[lines.conveyors]]
  id = "lane"
  speed_tag = "belt.speed"
  width = 0.4
  origin = [2.0, 0.3]
  segments = [{ length = 1.5, heading = 90 }]
  [lines.product]
  length = 0.2
  width = 0.2
  height = 0.2
  mass = 1.0
  [[lines.pushers]]
  id = "reject"
  conveyor = "main"
  position = 1.0
  coil_tag = "reject.coil"
  [[lines.diverters]]
  id = "gate"
  conveyor = "main"
  position = 2.0
  coil_tag = "divert.coil"
  to = "lane"
"#;

    #[test]
    fn pushers_and_diverters_are_placed_by_the_layout_walk() {
        let cfg = load_str(Path::new("devices.toml"), DEVICES).expect("valid");
        let f = LineFollower::new(&cfg);
        let l = &f.lines[0];
        let p = &l.pushers[0];
        assert_eq!(
            (&*p.id, &*p.conveyor, p.x, p.y, p.heading, p.width),
            ("reject", "main", 1.0, 0.0, 0.0, 0.6)
        );
        assert_eq!(p.tag.as_deref(), Some("reject.coil"));
        let d = &l.diverters[0];
        assert_eq!((&*d.id, d.x, d.y), ("gate", 2.0, 0.0));
        assert_eq!((d.to.as_deref(), d.to_heading), (Some("lane"), Some(90.0)));
        // A jam to the end of the line (no eye after it) runs to the belt's
        // end.
        assert_eq!(l.path(("main", 2.5), None), vec![[2.5, 0.0], [3.0, 0.0]]);
    }

    #[test]
    fn a_jam_is_located_along_the_belts_and_cleared() {
        let cfg = demo();
        let mut f = LineFollower::new(&cfg);
        let line: Arc<str> = Arc::from(cfg.config.lines[0].id.value.as_str());
        let jam = |state: &'static str| {
            TwinEvent::Jam(Box::new(JamEvent {
                t_ns: 5_000_000_000,
                line: line.clone(),
                state,
                after_eye: Arc::from("eye_transfer"),
                from_conveyor: Arc::from("outfeed"),
                from_m: 0.3,
                before_eye: Some(Arc::from("eye_exit")),
                to_conveyor: Some(Arc::from("outfeed")),
                to_m: Some(4.8),
                since_ns: 1_000_000_000,
            }))
        };
        f.follow(&jam("start"));
        let l = &f.lines[0];
        let j = l.jams.get("eye_transfer").expect("the jam is held");
        // The outfeed runs east from (4, 0) for 3 m, then north: its joint
        // at (7, 0) is on the path, which ends 1.8 m up the northward leg.
        assert_eq!(j.path.first(), Some(&[4.3, 0.0]));
        assert!(j.path.contains(&[7.0, 0.0]), "{:?}", j.path);
        assert_eq!(j.path.last(), Some(&[7.0, 1.8]));
        assert_eq!((j.from.x, j.from.y), (4.3, 0.0));
        f.follow(&jam("clear"));
        assert!(f.lines[0].jams.is_empty());
    }
}
