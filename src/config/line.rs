//! `[[lines]]`: a production line, its machines in flow order, and what
//! stands on its belts: stations, photo-eyes, pushers, diverters and zones.
//! The belts themselves are in [`super::conveyor`], the products in
//! [`super::product`].

use std::time::Duration;

use super::conveyor::{Conveyor, decode_conveyor};
use super::decode::{HOUR, Loc, MS, Sink, Table};
use super::diagnostics::Diagnostic;
use super::product::{Product, ProductType, decode_arrivals, decode_product, decode_product_type};

/// A production line: which machines it is made of, in flow order, and
/// optionally its geometry for the physics twin (`crate::physics`):
/// conveyors, the product, stations, photo-eyes, pushers and diverters.
/// Other transfers join the geometry later.
#[derive(Debug, Clone)]
pub struct Line {
    pub id: Loc<String>,
    pub name: Option<String>,
    pub machines: Vec<Loc<String>>,
    pub conveyors: Vec<Conveyor>,
    /// Ids of `[[lines.conveyors]]` entries left out of `conveyors` because
    /// they had errors (already reported): a station or eye naming one is
    /// not reported again as naming an unknown conveyor.
    pub undecoded_conveyors: Vec<String>,
    /// The product the line starts with: its first type (see `products`),
    /// with the arrival keys (`spawn_interval`, `infeed_counter_tag`) in it
    /// whichever table they were written in. Code that knows one product
    /// per line reads this.
    pub product: Option<Product>,
    /// Every product type (SKU) the line can run, in file order: the
    /// `[[lines.products]]` entries, or the single `[lines.product]` as one
    /// type (id `"product"`, code 1). A `Line` built by hand may leave it
    /// empty: [`Line::product_types`] then falls back to `product`.
    pub products: Vec<ProductType>,
    /// The tag that says which type runs now: a text value matches a type's
    /// `id`, a number its `code` (`[[lines.products]]` only).
    pub product_tag: Option<Loc<String>>,
    /// Whether the types come from `[[lines.products]]`, whose arrival keys
    /// are keys of the line table (for diagnostics' key paths).
    pub products_listed: bool,
    pub stations: Vec<Station>,
    pub photo_eyes: Vec<PhotoEye>,
    /// Reject pushers, each fired by a coil tag.
    pub pushers: Vec<Pusher>,
    /// Diverters onto branch conveyors, each fired by a coil tag.
    pub diverters: Vec<Diverter>,
    /// Named stretches of belt whose products the twin counts (buffers,
    /// accumulation sections), besides the per-conveyor counts.
    pub zones: Vec<Zone>,
    /// How far a measured photo-eye edge may be from the expected one and
    /// still be on time (`None`: the twin's default, 500 ms).
    pub residual_tolerance: Option<Duration>,
    /// How long an eye must read blocked while products should pass it
    /// before a jam or stuck-on verdict (`None`: 5 s).
    pub jam_after: Option<Duration>,
    /// How late a measured edge may be and still pair, as `late`, with an
    /// expected one (`None`: 3 s, or four tolerances if longer).
    pub late_window: Option<Duration>,
    /// Expected products in a row that an eye reading clear must miss
    /// before it may be called stuck off (`None`: 3).
    pub stuck_off_after: Option<u32>,
}

/// Default of `residual_tolerance`.
pub const RESIDUAL_TOLERANCE: Duration = Duration::from_millis(500);
/// Default of `late_window`, unless four tolerances are longer.
pub const LATE_WINDOW: Duration = Duration::from_secs(3);
/// Default of `jam_after`.
pub const JAM_AFTER: Duration = Duration::from_secs(5);
/// Default of `stuck_off_after`.
pub const STUCK_OFF_AFTER: u32 = 3;

impl Line {
    /// `residual_tolerance`, or its default.
    pub fn residual_tolerance(&self) -> Duration {
        self.residual_tolerance.unwrap_or(RESIDUAL_TOLERANCE)
    }

    /// `late_window`, or its default: 3 s, or four tolerances if that is
    /// longer (a window shorter than a few tolerances would call a product
    /// missing that is only somewhat late).
    pub fn late_window(&self) -> Duration {
        self.late_window
            .unwrap_or_else(|| LATE_WINDOW.max(self.residual_tolerance().saturating_mul(4)))
    }

    /// `jam_after`, or its default.
    pub fn jam_after(&self) -> Duration {
        self.jam_after.unwrap_or(JAM_AFTER)
    }

    /// `stuck_off_after`, or its default.
    pub fn stuck_off_after(&self) -> u32 {
        self.stuck_off_after.unwrap_or(STUCK_OFF_AFTER)
    }
}

/// A place on a belt where each product stops for one cycle (fill, cap,
/// label, inspect).
#[derive(Debug, Clone)]
pub struct Station {
    pub id: Loc<String>,
    /// Id of the conveyor (in the same line) the station stands at.
    pub conveyor: Loc<String>,
    /// Metres along that conveyor's belt, from its start.
    pub position: Loc<f64>,
    pub cycle: StationCycle,
    /// `cycle_time` given with `cycle_time_tag`: the cycle the station was
    /// commissioned with. The twin's live model follows the tag alone (it
    /// invents no cycle it cannot see); the virtual plant runs the station
    /// at this cycle until it is written to, and `twin whatif` starts from
    /// it when it has no recording.
    pub commissioned: Option<Duration>,
    /// `rate_tag`: the station's measured rate in products per minute (a
    /// filler's bpm). With it the twin's model runs the station at the
    /// cycle it measures (60 / rate), which a worn or slowed machine makes
    /// longer than its setpoint; the cycle tag stays the setpoint, and a
    /// forecast scales a candidate setpoint by how far the station runs off
    /// its setpoint now.
    pub rate_tag: Option<Loc<String>>,
}

/// Where a station's cycle time comes from: the tag when one is given,
/// else the fixed duration.
#[derive(Debug, Clone)]
pub enum StationCycle {
    /// `cycle_time_tag`: the tag's current value, in seconds.
    Tag(Loc<String>),
    /// `cycle_time`: a fixed duration.
    Fixed(Duration),
}

/// A named stretch of one conveyor's belt, `from` to `to` metres along it:
/// the twin reports how many products are on it (an accumulation section
/// before a station, a buffer).
#[derive(Debug, Clone)]
pub struct Zone {
    pub id: Loc<String>,
    pub conveyor: Loc<String>,
    pub from: Loc<f64>,
    pub to: Loc<f64>,
}

/// A photo-eye across a belt, bound to the digital input it drives.
#[derive(Debug, Clone)]
pub struct PhotoEye {
    pub id: Loc<String>,
    pub conveyor: Loc<String>,
    /// Metres along the conveyor's belt, from its start.
    pub position: Loc<f64>,
    /// The measured input tag (blocked = true).
    pub tag: Loc<String>,
}

/// A reject pusher beside a belt, bound to the PLC coil that fires it:
/// while the coil is on, its paddle strokes across the belt and pushes the
/// product in front of it off the far side (see `crate::physics`).
#[derive(Debug, Clone)]
pub struct Pusher {
    pub id: Loc<String>,
    pub conveyor: Loc<String>,
    /// Metres along the conveyor's belt, from its start, to the middle of
    /// the paddle.
    pub position: Loc<f64>,
    /// The coil (fired = true, or a number: non-zero is fired).
    pub coil_tag: Loc<String>,
}

/// A diverter on a belt, bound to the PLC coil that fires it: while the
/// coil is on, products reaching it are steered sideways off the belt onto
/// the branch conveyor `to` (a reject lane, a second packing line); while
/// off, they pass straight on (see `crate::physics`).
#[derive(Debug, Clone)]
pub struct Diverter {
    pub id: Loc<String>,
    /// The main conveyor the diverter stands on.
    pub conveyor: Loc<String>,
    /// Metres along the main conveyor's belt, from its start, to the middle
    /// of the diverter.
    pub position: Loc<f64>,
    /// The coil (fired = true, or a number: non-zero is fired).
    pub coil_tag: Loc<String>,
    /// Id of the branch conveyor (in the same line) products are sent to.
    pub to: Loc<String>,
}

pub(super) fn decode_line(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Line> {
    let id = t.req_str(sink, "id");
    let name = t.opt_str(sink, "name").map(|n| n.value);
    let machines = t.opt_str_array(sink, "machines").unwrap_or_default();
    let mut undecoded_conveyors = Vec::new();
    let conveyors = t
        .opt_table_array(sink, "conveyors")
        .into_iter()
        .filter_map(|c| {
            let id = c.peek_str("id");
            let decoded = decode_conveyor(sink, c);
            if decoded.is_none() {
                undecoded_conveyors.extend(id);
            }
            decoded
        })
        .collect();
    let single_span = t.key_span("product");
    let product = t
        .opt_table(sink, "product")
        .and_then(|p| decode_product(sink, p));
    let has_list = t.key_span("products").is_some();
    let listed: Vec<ProductType> = t
        .opt_table_array(sink, "products")
        .into_iter()
        .enumerate()
        .filter_map(|(k, p)| decode_product_type(sink, p, k))
        .collect();
    let (product, products, product_tag, products_listed) =
        decode_arrivals(sink, &mut t, product, single_span, listed, has_list);
    let stations = t
        .opt_table_array(sink, "stations")
        .into_iter()
        .filter_map(|s| decode_station(sink, s))
        .collect();
    let photo_eyes = t
        .opt_table_array(sink, "photo_eyes")
        .into_iter()
        .filter_map(|e| decode_photo_eye(sink, e))
        .collect();
    let pushers = t
        .opt_table_array(sink, "pushers")
        .into_iter()
        .filter_map(|p| decode_pusher(sink, p))
        .collect();
    let diverters = t
        .opt_table_array(sink, "diverters")
        .into_iter()
        .filter_map(|d| decode_diverter(sink, d))
        .collect();
    let zones = t
        .opt_table_array(sink, "zones")
        .into_iter()
        .filter_map(|z| decode_zone(sink, z))
        .collect();
    let residual_tolerance = t
        .opt_duration(sink, "residual_tolerance", MS, Duration::from_secs(60))
        .map(|d| d.value);
    let jam_after = t
        .opt_duration(sink, "jam_after", Duration::from_millis(100), HOUR)
        .map(|d| d.value);
    let late_window = t.opt_duration(sink, "late_window", MS, Duration::from_secs(600));
    let tolerance = residual_tolerance.unwrap_or(RESIDUAL_TOLERANCE);
    let late_window = match late_window {
        // An edge later than the tolerance is late; a window shorter than
        // the tolerance would leave no room for late at all.
        Some(w) if w.value < tolerance => {
            sink.push(
                Diagnostic::error(
                    w.span,
                    t.key_path("late_window"),
                    format!(
                        "late_window ({}) is shorter than residual_tolerance ({})",
                        humantime::format_duration(w.value),
                        humantime::format_duration(tolerance)
                    ),
                )
                .expected("a duration at least the line's `residual_tolerance` (default 500ms)")
                .help("raise `late_window`, or lower `residual_tolerance`"),
            );
            None
        }
        w => w.map(|w| w.value),
    };
    let stuck_off_after = t
        .opt_int(sink, "stuck_off_after", 2, 100)
        .and_then(|n| u32::try_from(n.value).ok());
    t.finish(sink);
    Some(Line {
        id: id?,
        name,
        machines,
        conveyors,
        undecoded_conveyors,
        product,
        products,
        product_tag,
        products_listed,
        stations,
        photo_eyes,
        pushers,
        diverters,
        zones,
        residual_tolerance,
        jam_after,
        late_window,
        stuck_off_after,
    })
}

/// Whether `from < to` and both are on the belt is checked by `validate`,
/// which knows the conveyor's length.
fn decode_zone(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Zone> {
    let id = t.req_str(sink, "id");
    let conveyor = t.req_str(sink, "conveyor");
    let from = t.req_f64(sink, "from");
    let to = t.req_f64(sink, "to");
    t.finish(sink);
    Some(Zone {
        id: id?,
        conveyor: conveyor?,
        from: from?,
        to: to?,
    })
}

/// The position and whether it is on the belt are checked by `validate`,
/// which knows the conveyor's length.
fn decode_station(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Station> {
    let t_span = t.span();
    let id = t.req_str(sink, "id");
    let conveyor = t.req_str(sink, "conveyor");
    let position = t.req_f64(sink, "position");
    let tag = t.opt_str(sink, "cycle_time_tag");
    let fixed = t.opt_duration(sink, "cycle_time", MS, HOUR);
    let fixed_given = t.key_span("cycle_time").is_some();
    let rate_tag = t.opt_str(sink, "rate_tag");
    let commissioned = match (&tag, &fixed) {
        (Some(_), Some(d)) => Some(d.value),
        _ => None,
    };
    let cycle = match (tag, fixed) {
        (Some(tag), _) => Some(StationCycle::Tag(tag)),
        (None, Some(d)) => Some(StationCycle::Fixed(d.value)),
        // A `cycle_time` that did not decode is reported already.
        (None, None) if fixed_given => None,
        (None, None) => {
            sink.push(
                Diagnostic::error(
                    t_span,
                    t.key_path("cycle_time_tag"),
                    "a station needs a cycle time",
                )
                .expected("`cycle_time_tag` (a tag, in seconds), `cycle_time` (a fixed duration), or both (the tag, and the commissioned cycle)")
                .help("add `cycle_time = \"2s\"` for a fixed cycle"),
            );
            None
        }
    };
    t.finish(sink);
    // A broken cycle is reported above and refuses the file; keeping the
    // station (with a placeholder cycle) keeps the key paths of the
    // stations after it right in `validate`'s messages.
    Some(Station {
        id: id?,
        conveyor: conveyor?,
        position: position?,
        cycle: cycle.unwrap_or(StationCycle::Fixed(Duration::ZERO)),
        commissioned,
        rate_tag,
    })
}

fn decode_photo_eye(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<PhotoEye> {
    let id = t.req_str(sink, "id");
    let conveyor = t.req_str(sink, "conveyor");
    let position = t.req_f64(sink, "position");
    let tag = t.req_str(sink, "tag");
    t.finish(sink);
    Some(PhotoEye {
        id: id?,
        conveyor: conveyor?,
        position: position?,
        tag: tag?,
    })
}

/// Like a photo-eye: the position and whether it is on the belt, and the
/// coil tag, are checked by `validate`.
fn decode_pusher(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Pusher> {
    let id = t.req_str(sink, "id");
    let conveyor = t.req_str(sink, "conveyor");
    let position = t.req_f64(sink, "position");
    let coil_tag = t.req_str(sink, "coil_tag");
    t.finish(sink);
    Some(Pusher {
        id: id?,
        conveyor: conveyor?,
        position: position?,
        coil_tag: coil_tag?,
    })
}

/// Like a pusher: the position, the coil tag and the branch conveyor (that
/// it exists and starts beside the belt) are checked by `validate`.
fn decode_diverter(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Diverter> {
    let id = t.req_str(sink, "id");
    let conveyor = t.req_str(sink, "conveyor");
    let position = t.req_f64(sink, "position");
    let coil_tag = t.req_str(sink, "coil_tag");
    let to = t.req_str(sink, "to");
    t.finish(sink);
    Some(Diverter {
        id: id?,
        conveyor: conveyor?,
        position: position?,
        coil_tag: coil_tag?,
        to: to?,
    })
}
