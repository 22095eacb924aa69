//! `twin whatif CONFIG --set TAG=VALUE ... --horizon 60s`: what a line would
//! do under other setpoints, for engineers.
//!
//! It builds the line's physics model from the config, runs it at the base
//! values (`--base`, then the product's nominal arrival interval) until it
//! is in a steady state (`--warmup`), and from that one state forecasts the
//! horizon twice: as is, and with `--set` applied. Both forecasts come from
//! [`LineModel::lookahead`], the API the optimiser and the guard use. No
//! source is contacted; the plant is not touched.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::EXIT_FAILURE;
use crate::config::{Line, StationCycle};
use crate::physics::LineModel;
use crate::physics::lookahead::{Candidate, Forecast, LOOKAHEAD_DT};
use crate::wallclock;

#[derive(Debug, Args)]
pub struct WhatifArgs {
    /// Plant config file.
    pub config: PathBuf,
    /// A candidate setpoint: a belt's speed tag (m/s) or a station's
    /// cycle-time tag (s), or `conveyor:ID` (m/s) or `station:ID` (s).
    #[arg(long = "set", value_name = "TAG=VALUE")]
    pub set: Vec<String>,
    /// The value a setpoint has now, in the same form as --set. Every belt
    /// needs a speed from --base or --set (there is no live plant here).
    #[arg(long = "base", value_name = "TAG=VALUE")]
    pub base: Vec<String>,
    /// How far to look ahead.
    #[arg(long, default_value = "60s", value_parser = super::parse_duration)]
    pub horizon: Duration,
    /// Simulated time at the base values before the forecasts start, to fill
    /// the line.
    #[arg(long, default_value = "120s", value_parser = super::parse_duration)]
    pub warmup: Duration,
    /// Time between arrivals at the infeed. Default: the product's
    /// `spawn_interval`.
    #[arg(long = "arrival-interval", value_name = "DURATION", value_parser = super::parse_duration)]
    pub arrival_interval: Option<Duration>,
    /// The line to forecast. Default: the first line with geometry.
    #[arg(long, value_name = "ID")]
    pub line: Option<String>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// A setpoint, resolved to what it drives in the line's model.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    Belt(usize),
    Station(usize),
}

/// Resolves `NAME=VALUE` against the line: a conveyor's speed tag or
/// `conveyor:ID`, a station's cycle-time tag or `station:ID`.
fn resolve(line: &Line, arg: &str) -> Result<(Target, f64), String> {
    let (name, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("`{arg}`: expected NAME=VALUE, e.g. infeed.speed=0.8"))?;
    let value: f64 = value
        .trim()
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("`{arg}`: the value must be a number >= 0"))?;
    let name = name.trim();
    let belt = line.conveyors.iter().position(|c| {
        c.speed_tag.value == name || name.strip_prefix("conveyor:") == Some(c.id.value.as_str())
    });
    if let Some(i) = belt {
        return Ok((Target::Belt(i), value));
    }
    let station = line.stations.iter().position(|s| {
        name.strip_prefix("station:") == Some(s.id.value.as_str())
            || matches!(&s.cycle, StationCycle::Tag(t) if t.value == name)
    });
    if let Some(i) = station {
        return Ok((Target::Station(i), value));
    }
    let mut known: Vec<String> = line
        .conveyors
        .iter()
        .map(|c| c.speed_tag.value.clone())
        .collect();
    known.extend(line.stations.iter().map(|s| match &s.cycle {
        StationCycle::Tag(t) => t.value.clone(),
        StationCycle::Fixed(_) => format!("station:{}", s.id.value),
    }));
    Err(format!(
        "`{name}` is not a setpoint of line \"{}\"; it has: {}",
        line.id.value,
        known.join(", ")
    ))
}

fn apply(c: &mut Candidate, target: Target, value: f64) {
    match target {
        Target::Belt(i) => {
            c.belt_speeds.retain(|(k, _)| *k != i);
            c.belt_speeds.push((i, value as f32));
        }
        Target::Station(i) => {
            c.station_cycles.retain(|(k, _)| *k != i);
            c.station_cycles.push((
                i,
                Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX),
            ));
        }
    }
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
    let cfg = match super::load::load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let fail = |msg: String| {
        let _ = writeln!(std::io::stderr(), "error: {msg}");
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
    let mut base = Candidate {
        arrival_interval: arrival,
        ..Candidate::default()
    };
    for a in &args.base {
        match resolve(line, a) {
            Ok((t, v)) => apply(&mut base, t, v),
            Err(e) => return fail(format!("--base {e}")),
        }
    }
    let mut candidate = base.clone();
    for a in &args.set {
        match resolve(line, a) {
            Ok((t, v)) => apply(&mut candidate, t, v),
            Err(e) => return fail(format!("--set {e}")),
        }
    }
    for (i, c) in line.conveyors.iter().enumerate() {
        if !candidate.belt_speeds.iter().any(|(k, _)| *k == i) {
            return fail(format!(
                "conveyor \"{}\" has no speed: give its current value with --base {}=M_PER_S (no live plant is read)",
                c.id.value, c.speed_tag.value
            ));
        }
    }
    // Belts the candidate does not set run at their base speed; a belt set
    // only by --set runs at that speed in both (there is no other value).
    for &(i, v) in &candidate.belt_speeds {
        if !base.belt_speeds.iter().any(|(k, _)| *k == i) {
            base.belt_speeds.push((i, v));
        }
    }

    let model = match LineModel::new(line, LOOKAHEAD_DT).lookahead_state(&base, args.warmup) {
        Ok((m, _)) => m,
        Err(e) => return fail(format!("the warm-up failed: {e}")),
    };
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

    let mut out = std::io::stdout().lock();
    if args.json {
        let v = json!({
            "line": line.id.value,
            "horizon_s": args.horizon.as_secs_f64(),
            "warmup_s": args.warmup.as_secs_f64(),
            "base": forecast_json(&now),
            "candidate": forecast_json(&then),
            "speed_x_real_time": speed.round(),
        });
        let _ = writeln!(out, "{v}");
        return 0;
    }
    let _ = writeln!(
        out,
        "line {}: next {} after {} of warm-up",
        line.id.value,
        humantime::format_duration(args.horizon),
        humantime::format_duration(args.warmup)
    );
    let heads = [
        "throughput/min",
        "out",
        "WIP end",
        "WIP max",
        "infeed blocked",
        "jam risk",
    ];
    let _ = writeln!(
        out,
        "{:<12}{}",
        "",
        heads.map(|h| format!("{h:>16}")).join("")
    );
    for (name, f) in [("as is", &now), ("candidate", &then)] {
        let _ = writeln!(
            out,
            "{name:<12}{}",
            row(f).map(|c| format!("{c:>16}")).join("")
        );
    }
    let _ = writeln!(out, "(simulated {:.0}x faster than real time)", speed);
    0
}
