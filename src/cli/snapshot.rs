//! `twin snapshot CONFIG -o FILE`: a top-down SVG of a config's lines, after
//! simulating them for a while. Needs no source and no network: the belts
//! run at the speeds given on the command line, not at measured ones.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::EXIT_FAILURE;
use crate::physics::LineModel;
use crate::physics::snapshot::{Panel, svg};

/// Exit code for a command line that names no drawable line or conveyor,
/// as for clap's usage errors.
const EXIT_USAGE: i32 = 2;

/// Belt speed when `--speed` does not name a conveyor, m/s.
pub const DEFAULT_SPEED: f32 = 0.5;

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Plant config file.
    pub config: PathBuf,
    /// Write the SVG to FILE.
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    pub output: PathBuf,
    /// Draw only this line (default: every line with conveyors, one under
    /// the other).
    #[arg(long, value_name = "ID")]
    pub line: Option<String>,
    /// Simulate this long before drawing, e.g. `20s` (`0s`: the empty line).
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration, default_value = "0s")]
    pub at: Duration,
    /// Belt speed of conveyor CONVEYOR while simulating, in m/s (in every
    /// drawn line that has a conveyor of that id). Every belt not named runs
    /// at 0.5 m/s. Repeatable.
    #[arg(long = "speed", value_name = "CONVEYOR=M_PER_S", value_parser = parse_speed)]
    pub speed: Vec<(String, f32)>,
}

fn parse_speed(s: &str) -> Result<(String, f32), String> {
    let (id, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected CONVEYOR=M_PER_S, e.g. infeed=0.6, found {s:?}"))?;
    let v: f32 = v
        .trim()
        .parse()
        .map_err(|_| format!("speed {v:?} is not a number of m/s"))?;
    if !v.is_finite() {
        return Err(format!("speed {v} is not a finite number of m/s"));
    }
    Ok((id.trim().to_string(), v))
}

pub fn run(args: &SnapshotArgs) -> i32 {
    let cfg = match super::load::load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let lines: Vec<_> = cfg
        .config
        .lines
        .iter()
        .filter(|l| !l.conveyors.is_empty())
        .filter(|l| args.line.as_ref().is_none_or(|id| l.id.value == *id))
        .collect();
    if lines.is_empty() {
        let with_geometry: Vec<&str> = cfg
            .config
            .lines
            .iter()
            .filter(|l| !l.conveyors.is_empty())
            .map(|l| l.id.value.as_str())
            .collect();
        match &args.line {
            Some(id) => eprintln!(
                "error: {}: no line \"{id}\" with conveyors (lines with conveyors: {})",
                args.config.display(),
                if with_geometry.is_empty() {
                    "none".to_string()
                } else {
                    with_geometry.join(", ")
                }
            ),
            None => eprintln!(
                "error: {}: no line has conveyors to draw; add `[[lines.conveyors]]` (see docs/config.md)",
                args.config.display()
            ),
        }
        return EXIT_USAGE;
    }
    for (id, _) in &args.speed {
        if !lines
            .iter()
            .any(|l| l.conveyors.iter().any(|c| c.id.value == *id))
        {
            eprintln!("error: --speed {id}=...: no drawn line has a conveyor \"{id}\"");
            return EXIT_USAGE;
        }
    }

    let mut models = Vec::new();
    for line in &lines {
        match simulate(line, args) {
            Ok(m) => models.push(m),
            Err(e) => {
                eprintln!("error: line \"{}\": {e}", line.id.value);
                return EXIT_FAILURE;
            }
        }
    }
    let panels: Vec<Panel<'_>> = lines
        .iter()
        .zip(&models)
        .map(|(l, m)| Panel {
            id: &l.id.value,
            name: l.name.as_deref(),
            model: m,
        })
        .collect();
    let speeds = if args.speed.is_empty() {
        format!("all belts {DEFAULT_SPEED} m/s")
    } else {
        let named: Vec<String> = args.speed.iter().map(|(c, v)| format!("{c} {v}")).collect();
        format!("{} m/s, others {DEFAULT_SPEED} m/s", named.join(", "))
    };
    let caption = format!("t = {} ({speeds})", humantime::format_duration(args.at));
    let doc = svg(&panels, &caption);
    if let Err(e) = std::fs::write(&args.output, doc) {
        eprintln!(
            "error: cannot write the snapshot to {}: {e}",
            args.output.display()
        );
        return EXIT_FAILURE;
    }
    0
}

/// Builds a line's model and runs it for `--at`, spawning products as the
/// twin's core does: at the product's `spawn_interval`, skipping a spawn
/// while the infeed spot is still occupied. Stations with a
/// `cycle_time_tag` have no value here and hold their product, as the twin
/// does while the tag is unknown.
fn simulate(
    line: &crate::config::Line,
    args: &SnapshotArgs,
) -> Result<LineModel, crate::physics::PhysicsError> {
    let dt = crate::twin::lines::MAX_DT;
    let mut geometry = line.clone();
    let interval = geometry
        .product
        .as_mut()
        .and_then(|p| p.spawn_interval.take())
        .map(|d| d.as_nanos())
        .filter(|d| *d > 0);
    let mut m = LineModel::new(&geometry, dt);
    for (k, c) in line.conveyors.iter().enumerate() {
        let speed = args
            .speed
            .iter()
            .rev()
            .find(|(id, _)| *id == c.id.value)
            .map_or(DEFAULT_SPEED, |(_, v)| *v);
        m.set_belt_speed_at(k, speed)?;
    }
    let steps = args.at.as_nanos() / dt.as_nanos().max(1);
    let mut next_spawn: u128 = 0;
    for step in 0..steps {
        if let Some(every) = interval {
            let now = step * dt.as_nanos();
            if now >= next_spawn {
                if m.infeed_clear() {
                    m.spawn_product()?;
                }
                next_spawn += every;
            }
        }
        m.step()?;
        m.remove_finished();
    }
    Ok(m)
}
