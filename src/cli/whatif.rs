//! `twin whatif CONFIG --set TAG=VALUE ... --horizon 60s`: what a line would
//! do under other setpoints, for engineers.
//!
//! It starts from a state of the line (see `start`): a recording's at a
//! given time (`--at`), the live plant's current values (`--endpoints`),
//! or, with neither, the virtual plant's nominal values, each one said.
//! Without a recorded state it runs the line at those base values until it
//! is in a steady state (`--warmup`). From that one state it forecasts the
//! horizon twice: as is, and with `--set` applied. Both forecasts come from
//! [`LineModel::lookahead`], the API the optimiser and the guard use.
//! Nothing is written to the plant. With `--grid` it forecasts many
//! candidates from the one state instead of one (see `grid`).

mod grid;
mod start;

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::EXIT_FAILURE;
use super::output::{self, Stderr, Stdout};
use crate::config::Line;
use crate::config::knob;
use crate::physics::LineModel;
use crate::physics::lookahead::{Candidate, Forecast, LOOKAHEAD_DT};
use crate::wallclock;
use start::Origin;

#[derive(Debug, Args)]
pub struct WhatifArgs {
    /// Plant config file.
    pub config: PathBuf,
    /// A candidate setpoint: a belt's speed tag (m/s) or a station's
    /// cycle-time tag (s), or `conveyor:ID` (m/s) or `station:ID` (s).
    #[arg(long = "set", value_name = "TAG=VALUE", value_parser = parse_setpoint)]
    pub set: Vec<String>,
    /// Forecast every value LO, LO+STEP, ... up to HI of a setpoint named as
    /// in --set; repeat for more setpoints to forecast every combination,
    /// all from the one start (--set values apply to each). With --json:
    /// a `start` line, then one `candidate` line per combination.
    #[arg(long = "grid", value_name = "TAG=LO:HI:STEP", value_parser = grid::parse_grid)]
    pub grid: Vec<String>,
    /// The value a setpoint has now, in the same form as --set. Overrides
    /// the value read (--at, --endpoints) or assumed.
    #[arg(long = "base", value_name = "TAG=VALUE", value_parser = parse_setpoint)]
    pub base: Vec<String>,
    /// Start from a recording's state at TIME: REC.mcap@90s (an offset into
    /// the recording) or REC.mcap@2026-12-04T10:00:00Z. The recording is
    /// replayed under CONFIG up to TIME; the forecasts start from the line
    /// as the twin had it then, products on the belts included.
    #[arg(long, value_name = "REC.mcap@TIME", conflicts_with_all = ["live", "endpoints", "modbus", "mqtt"])]
    pub at: Option<String>,
    /// Read the current belt speeds and station cycle times from the live
    /// plant at the config's addresses (implied by --endpoints, --modbus,
    /// --mqtt).
    #[arg(long)]
    pub live: bool,
    /// Read the live plant with endpoint overrides from a JSON file (as
    /// written by `twin sim --endpoints-out`).
    #[arg(long, value_name = "FILE")]
    pub endpoints: Option<PathBuf>,
    /// Read the live plant with Modbus device DEVICE at HOST:PORT.
    #[arg(long = "modbus", value_name = "DEVICE=HOST:PORT", value_parser = super::parse_modbus_override)]
    pub modbus: Vec<String>,
    /// Read the live plant with MQTT or Sparkplug source SOURCE at URL.
    #[arg(long = "mqtt", value_name = "SOURCE=URL", value_parser = super::parse_override)]
    pub mqtt: Vec<String>,
    /// How long to wait for the live plant's values to be good.
    #[arg(long = "read-timeout", value_name = "DURATION", default_value = "10s", value_parser = super::parse_duration)]
    pub read_timeout: Duration,
    /// How far to look ahead (above zero, at most 24h).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_horizon)]
    pub horizon: Duration,
    /// Simulated time at the base values before the forecasts start, to fill
    /// the line (not with --at: the recording says where the products are).
    /// At most 24h.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_warmup)]
    pub warmup: Duration,
    /// Time between arrivals at the infeed. Default: the product's
    /// `spawn_interval`.
    #[arg(long = "arrival-interval", value_name = "DURATION", value_parser = super::parse_period)]
    pub arrival_interval: Option<Duration>,
    /// The line to forecast. Default: the first line with geometry.
    #[arg(long, value_name = "ID")]
    pub line: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

impl WhatifArgs {
    fn reads_live(&self) -> bool {
        self.live || self.endpoints.is_some() || !self.modbus.is_empty() || !self.mqtt.is_empty()
    }
}

/// A setpoint, resolved to what it drives in the line's model (the one
/// mapping the optimiser uses too).
pub(super) use crate::config::knob::Knob as Target;

/// The longest simulated span a what-if runs: a day. The model steps the
/// line's physics at its own tick (a 24 h forecast takes minutes), and a
/// forecast a day out says little about a line whose inputs change by the
/// shift; `--horizon 100000h` used to run for hours.
const MAX_SPAN: Duration = Duration::from_secs(24 * 3600);

fn parse_horizon(s: &str) -> Result<Duration, String> {
    match super::parse_period(s)? {
        d if d > MAX_SPAN => {
            Err("must be at most 24h (a forecast a day out; use e.g. 60s, 10m, 2h)".to_string())
        }
        d => Ok(d),
    }
}

fn parse_warmup(s: &str) -> Result<Duration, String> {
    match super::parse_duration(s)? {
        d if d > MAX_SPAN => Err("must be at most 24h (use e.g. 120s, 10m)".to_string()),
        d => Ok(d),
    }
}

/// `NAME=VALUE` with VALUE a number >= 0.
fn split_setpoint(arg: &str) -> Result<(&str, f64), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("`{arg}`: expected NAME=VALUE, e.g. infeed.speed=0.8"))?;
    let value: f64 = value
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("`{arg}`: the value must be a number >= 0"))?;
    Ok((name.trim(), value))
}

/// A `--set`/`--base` checked for its form on the command line, so a
/// malformed one is a usage error; its name is resolved against the line
/// later.
fn parse_setpoint(arg: &str) -> Result<String, String> {
    split_setpoint(arg).map(|_| arg.to_string())
}

/// Resolves `NAME=VALUE` against the line: a conveyor's speed tag or
/// `conveyor:ID`, a station's cycle-time tag or `station:ID`.
fn resolve(line: &Line, arg: &str) -> Result<(Target, f64), String> {
    let (name, value) = split_setpoint(arg)?;
    match knob::knob_of(line, name) {
        Some(k) => Ok((k, value)),
        None => Err(format!(
            "`{name}` is not a setpoint of line \"{}\"; it has: {}",
            line.id.value,
            knob::knob_names(line).join(", ")
        )),
    }
}

/// Why `value` of `target` is outside its `[[setpoints]]` bounds, if it is
/// and the tag has an entry.
fn outside_bounds(
    cfg: &crate::config::LoadedConfig,
    line: &Line,
    target: Target,
    value: f64,
) -> Option<String> {
    let tag = knob::tag_of(line, target)?;
    let sp = cfg.guard.setpoint(cfg.tags.id(tag)?)?;
    (value < sp.min || value > sp.max).then(|| {
        format!(
            "{tag}={value} is outside its [[setpoints]] bounds {}..{}: the guard would never write it; the forecast is the model's answer to a question, not a plan",
            sp.min, sp.max
        )
    })
}

fn apply(c: &mut Candidate, target: Target, value: f64) {
    c.set(target, value);
}

fn row(f: &Forecast) -> [String; 6] {
    [
        format!("{:.1}", f.throughput_per_min),
        f.out.to_string(),
        f.wip_end.to_string(),
        f.wip_max.to_string(),
        f.infeed_blocked.to_string(),
        format!("{:.2}", f.jam_risk),
    ]
}

fn forecast_json(f: &Forecast) -> serde_json::Value {
    json!({
        "throughput_per_min": f.throughput_per_min,
        "out": f.out,
        "lost": f.lost,
        "pushed": f.pushed,
        "diverted": f.diverted,
        "arrivals": f.arrivals,
        "infeed_blocked": f.infeed_blocked,
        "wip_start": f.wip_start,
        "wip_end": f.wip_end,
        "wip_max": f.wip_max,
        "max_standing": f.max_standing,
        "jam_risk": f.jam_risk,
    })
}

pub fn run(args: &WhatifArgs) -> i32 {
    let cfg = match super::load::load(&args.config, Stderr::Wait) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let fail = |msg: String| {
        output::error(msg);
        EXIT_FAILURE
    };
    let with_geometry = || cfg.config.lines.iter().filter(|l| !l.conveyors.is_empty());
    let line = match &args.line {
        Some(id) => with_geometry().find(|l| l.id.value == *id),
        None => with_geometry().next(),
    };
    let Some(line) = line else {
        let ids: Vec<&str> = with_geometry().map(|l| l.id.value.as_str()).collect();
        return fail(match &args.line {
            Some(id) if !ids.is_empty() => format!(
                "no line \"{id}\" with geometry; lines with geometry: {}",
                ids.join(", ")
            ),
            _ => format!(
                "{} has no line with conveyor geometry; add [[lines.conveyors]] to forecast one",
                args.config.display()
            ),
        });
    };
    let arrival = args
        .arrival_interval
        .or_else(|| line.product.as_ref().and_then(|p| p.spawn_interval));
    if line.product.is_none() {
        return fail(format!(
            "line \"{}\" has no [lines.product]; the forecast needs products",
            line.id.value
        ));
    }
    let mut overrides = Vec::new();
    for a in &args.base {
        match resolve(line, a) {
            Ok(tv) => overrides.push(tv),
            Err(e) => return fail(format!("--base {e}")),
        }
    }
    let mut sets = Vec::new();
    for a in &args.set {
        match resolve(line, a) {
            Ok(tv) => sets.push(tv),
            Err(e) => return fail(format!("--set {e}")),
        }
    }
    let axes = match grid::axes(line, &args.grid, &args.set) {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let given: Vec<Target> = overrides.iter().map(|(t, _)| *t).collect();
    let start = if let Some(spec) = &args.at {
        start::recording(&cfg, line, spec)
    } else if args.reads_live() {
        start::live(
            &cfg,
            line,
            &given,
            &start::LiveArgs {
                endpoints: args.endpoints.as_deref(),
                modbus: &args.modbus,
                mqtt: &args.mqtt,
                timeout: args.read_timeout,
            },
        )
    } else {
        start::nominal(&cfg, line, &given)
    };
    let start = match start {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if !start.assumed.is_empty() {
        let mut text = String::new();
        for a in &start.assumed {
            text += &format!("assumed: {} = {} {} ({})\n", a.name, a.value, a.unit, a.why);
        }
        text += "hint: give current values with --base TAG=VALUE, or start from a recording (--at REC.mcap@TIME) or the live plant (--endpoints FILE)\n";
        Stderr::Wait.write(&text);
    }
    // A value the guard would never write is still a fair question to ask
    // the model, but the answer should not read as a plan.
    let mut outside = String::new();
    for (flag, (t, v)) in (args.base.iter().map(|_| "--base"))
        .zip(&overrides)
        .chain(args.set.iter().map(|_| "--set").zip(&sets))
    {
        if let Some(note) = outside_bounds(&cfg, line, *t, *v) {
            outside += &format!("note: {flag} {note}\n");
        }
    }
    if !outside.is_empty() {
        Stderr::Wait.write(&outside);
    }
    let mut base = Candidate {
        arrival_interval: arrival,
        ..Candidate::default()
    };
    for &(t, v) in start.values.iter().chain(&overrides) {
        apply(&mut base, t, v);
    }
    let mut candidate = base.clone();
    for &(t, v) in &sets {
        apply(&mut candidate, t, v);
    }
    let (model, warmup) = match start.model {
        // A recorded state: belts and stations run as the model holds them
        // unless --base says otherwise.
        Some(m) => (m, Duration::ZERO),
        None => match LineModel::new(line, LOOKAHEAD_DT).lookahead_state(&base, args.warmup) {
            Ok((m, _)) => (m, args.warmup),
            Err(e) => return fail(format!("the warm-up failed: {e}")),
        },
    };
    let state = StartState::of(line, &model, &base);
    if !axes.is_empty() {
        let header = json!({
            "line": line.id.value,
            "horizon_s": args.horizon.as_secs_f64(),
            "warmup_s": warmup.as_secs_f64(),
            "start": state.json(&start.origin),
            "assumed": assumed_json(&start.assumed),
        });
        let start = grid::Start {
            model: &model,
            base: &base,
            fixed: &candidate,
            fixed_values: grid::fixed_values(&args.set),
            horizon: args.horizon,
            header,
            describe: format!(
                "line {}: {}",
                line.id.value,
                state.describe(&start.origin, warmup)
            ),
        };
        return grid::run(start, &axes, args.json);
    }
    let t0 = wallclock::monotonic();
    // The two forecasts are independent copies of one state: run them side
    // by side (each is deterministic on its own, so this changes nothing
    // but the wait).
    let (as_is, cand) = std::thread::scope(|scope| {
        let other = scope.spawn(|| model.lookahead(&candidate, args.horizon));
        let mine = model.lookahead(&base, args.horizon);
        (mine, other.join())
    });
    let Ok(cand) = cand else {
        return fail(
            "the candidate forecast stopped unexpectedly; please report this with the config"
                .into(),
        );
    };
    let (now, then) = match (as_is, cand) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return fail(format!("the forecast failed: {e}")),
    };
    let wall = wallclock::since(t0).as_secs_f64().max(1e-9);
    // Simulated seconds per wall second, both forecasts together.
    let speed = 2.0 * args.horizon.as_secs_f64() / wall;

    let mut out = Stdout::new();
    if args.json {
        let v = json!({
            "line": line.id.value,
            "horizon_s": args.horizon.as_secs_f64(),
            "warmup_s": warmup.as_secs_f64(),
            "start": state.json(&start.origin),
            "assumed": assumed_json(&start.assumed),
            "base": forecast_json(&now),
            "candidate": forecast_json(&then),
            "speed_x_real_time": speed.round(),
        });
        out.line(v);
        return out.exit_code(0);
    }
    let mut table = format!(
        "line {}: {}\n",
        line.id.value,
        state.describe(&start.origin, warmup)
    );
    table += &format!("next {}\n", humantime::format_duration(args.horizon));
    let heads = [
        "throughput/min",
        "out",
        "WIP end",
        "WIP max",
        "infeed blocked",
        "jam risk",
    ];
    table += &format!("{:<12}{}\n", "", heads.map(|h| format!("{h:>16}")).join(""));
    for (name, f) in [("as is", &now), ("candidate", &then)] {
        table += &format!(
            "{name:<12}{}\n",
            row(f).map(|c| format!("{c:>16}")).join("")
        );
    }
    table += &format!("(simulated {:.0}x faster than real time)\n", speed);
    out.write(&table);
    out.exit_code(0)
}

fn assumed_json(assumed: &[start::Assumed]) -> serde_json::Value {
    assumed
        .iter()
        .map(|a| {
            json!({
                "setpoint": a.name,
                "value": a.value,
                "unit": a.unit,
                "why": a.why,
            })
        })
        .collect::<Vec<_>>()
        .into()
}

/// The state the forecasts start from, as reported: WIP and the base
/// values of the belts and stations.
struct StartState {
    wip: usize,
    /// (speed tag, m/s).
    belts: Vec<(String, f64)>,
    /// (station id, cycle time in s; `None`: unknown, the station holds).
    stations: Vec<(String, Option<f64>)>,
}

impl StartState {
    /// `model` as the forecasts take it, with `base` applied.
    fn of(line: &Line, model: &LineModel, base: &Candidate) -> Self {
        let belts = line
            .conveyors
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let v = base
                    .belt_speeds
                    .iter()
                    .find(|(k, _)| *k == i)
                    .map(|(_, v)| *v)
                    .or_else(|| model.belt_speed_at(i))
                    .unwrap_or(0.0);
                (c.speed_tag.value.clone(), f64::from(v))
            })
            .collect();
        let stations = line
            .stations
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let c = base
                    .station_cycles
                    .iter()
                    .find(|(k, _)| *k == i)
                    .map(|(_, c)| *c)
                    .or_else(|| model.stations().get(i).and_then(|m| m.cycle()));
                (s.id.value.clone(), c.map(|c| c.as_secs_f64()))
            })
            .collect();
        StartState {
            wip: model.product_count(),
            belts,
            stations,
        }
    }

    fn json(&self, origin: &Origin) -> serde_json::Value {
        let belts: serde_json::Map<String, serde_json::Value> = self
            .belts
            .iter()
            .map(|(t, v)| (t.clone(), json!(round3(*v))))
            .collect();
        let stations: serde_json::Map<String, serde_json::Value> = self
            .stations
            .iter()
            .map(|(id, c)| (id.clone(), json!(c.map(round3))))
            .collect();
        let mut v = json!({
            "wip": self.wip,
            "belt_speeds": belts,
            "station_cycles_s": stations,
        });
        let extra = match origin {
            Origin::Recording { path, t_ns, offset } => json!({
                "from": "recording",
                "recording": path.display().to_string(),
                "t": crate::twin::events::rfc3339(*t_ns),
                "offset_s": offset.as_secs_f64(),
                "products_known": true,
            }),
            Origin::Live { t_ns, read } => json!({
                "from": "live",
                "t": crate::twin::events::rfc3339(*t_ns),
                "read": read.iter().map(|(t, v)| (t.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "products_known": false,
            }),
            Origin::Nominal => json!({
                "from": "assumed",
                "products_known": false,
            }),
        };
        if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
            v.extend(extra.clone());
        }
        v
    }

    /// One line: where the state came from, its WIP and base values.
    fn describe(&self, origin: &Origin, warmup: Duration) -> String {
        let warm = humantime::format_duration(warmup);
        let from = match origin {
            Origin::Recording { path, t_ns, offset } => format!(
                "from {} at {} ({})",
                path.display(),
                humantime::format_duration(*offset),
                crate::twin::events::rfc3339(*t_ns)
            ),
            Origin::Live { t_ns, .. } => format!(
                "from the live plant at {} (where the products are is not known live: warmed up for {warm} at these values)",
                crate::twin::events::rfc3339(*t_ns)
            ),
            Origin::Nominal => format!("after {warm} of warm-up at these values"),
        };
        let mut values: Vec<String> = self
            .belts
            .iter()
            .map(|(t, v)| format!("{t} {v:.3} m/s"))
            .collect();
        values.extend(self.stations.iter().map(|(id, c)| match c {
            Some(c) => format!("{id} {c:.3} s"),
            None => format!("{id} cycle unknown (holds)"),
        }));
        format!("{from}: WIP {}, {}", self.wip, values.join(", "))
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
