//! `twin whatif --grid TAG=LO:HI:STEP ...`: many candidates from one start.
//!
//! A setpoint model is trained on the best of many forecasts from the same
//! line state (models/demo/train_setpoint.py). One `--set` per call would
//! replay the recording (or warm the line up) once per candidate; a grid
//! reaches the start once and forecasts every point of the product of its
//! axes from that one state, which is what makes a grid per state
//! affordable. The candidates run one after another on one thread: the
//! machines this runs on are shared, and a caller that wants more cores
//! runs several states at once.

use std::time::Duration;

use serde_json::json;

use super::{EXIT_FAILURE, Target, apply, forecast_json, resolve, split_setpoint};
use crate::cli::output::{self, Stdout};
use crate::config::Line;
use crate::physics::LineModel;
use crate::physics::lookahead::{Candidate, Forecast};
use crate::wallclock;

/// More candidates than this in one call is a typo more often than a plan
/// (three axes of 0.01 steps), and would run for hours.
pub(super) const MAX_CANDIDATES: usize = 10_000;

/// One `--grid` axis, resolved against the line.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Axis {
    /// The name as given (a tag, `conveyor:ID` or `station:ID`).
    pub name: String,
    pub target: Target,
    pub values: Vec<f64>,
}

/// `TAG=LO:HI:STEP` checked for its form (a usage error otherwise); the
/// name is resolved against the line later.
pub(super) fn parse_grid(arg: &str) -> Result<String, String> {
    split_grid(arg).map(|_| arg.to_string())
}

/// The name and the values `LO, LO+STEP, ... <= HI`, each rounded to 1e-9
/// so that 0.1 + 2 × 0.1 prints as 0.3.
fn split_grid(arg: &str) -> Result<(&str, Vec<f64>), String> {
    let bad = || {
        format!(
            "`{arg}`: expected TAG=LO:HI:STEP with 0 <= LO <= HI and STEP > 0, e.g. infeed.speed=0.2:1.2:0.1"
        )
    };
    let (name, range) = arg.split_once('=').ok_or_else(bad)?;
    let parts: Vec<f64> = range
        .split(':')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad())?;
    let [lo, hi, step] = parts[..] else {
        return Err(bad());
    };
    if !(lo.is_finite()
        && hi.is_finite()
        && step.is_finite()
        && lo >= 0.0
        && lo <= hi
        && step > 0.0)
    {
        return Err(bad());
    }
    // A tolerance of a millionth of a step keeps HI in when (HI - LO) / STEP
    // is a whole number that floating point misses by an ulp.
    let n = ((hi - lo) / step + 1e-6).floor();
    if n >= MAX_CANDIDATES as f64 {
        return Err(format!(
            "`{arg}`: {} values on one axis; at most {MAX_CANDIDATES} candidates per call",
            n + 1.0
        ));
    }
    let values = (0..=n as usize)
        .map(|i| ((lo + i as f64 * step) * 1e9).round() / 1e9)
        .collect();
    Ok((name.trim(), values))
}

/// Resolves every `--grid` against the line: each names a setpoint once,
/// and none is also a `--set`.
pub(super) fn axes(line: &Line, grid: &[String], sets: &[String]) -> Result<Vec<Axis>, String> {
    let fixed: Vec<Target> = sets
        .iter()
        .filter_map(|s| resolve(line, s).ok().map(|(t, _)| t))
        .collect();
    let mut out: Vec<Axis> = Vec::with_capacity(grid.len());
    for arg in grid {
        let (name, values) = split_grid(arg).map_err(|e| format!("--grid {e}"))?;
        // The name is resolved as a `--set` of the axis's first value.
        let (target, _) =
            resolve(line, &format!("{name}={}", values[0])).map_err(|e| format!("--grid {e}"))?;
        if let Some(other) = out.iter().find(|a| a.target == target) {
            return Err(format!(
                "--grid `{name}` drives the same setpoint as --grid `{}`; give each setpoint one axis",
                other.name
            ));
        }
        if fixed.contains(&target) {
            return Err(format!(
                "--grid `{name}` is also given with --set; a setpoint is either fixed or an axis"
            ));
        }
        out.push(Axis {
            name: name.to_string(),
            target,
            values,
        });
    }
    let total = out
        .iter()
        .try_fold(1usize, |n, a| n.checked_mul(a.values.len()))
        .filter(|&n| n <= MAX_CANDIDATES);
    if total.is_none() {
        let sizes: Vec<String> = out.iter().map(|a| a.values.len().to_string()).collect();
        return Err(format!(
            "--grid: {} candidates; at most {MAX_CANDIDATES} per call (use coarser steps or fewer axes)",
            sizes.join(" × ")
        ));
    }
    Ok(out)
}

/// The product of the axes, the first axis varying slowest: per candidate,
/// one value per axis.
pub(super) fn points(axes: &[Axis]) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = vec![Vec::new()];
    for a in axes {
        out = out
            .into_iter()
            .flat_map(|p| {
                a.values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push(*v);
                    q
                })
            })
            .collect();
    }
    out
}

/// A setpoint's value in seconds for a station, m/s for a belt: what the
/// candidate's JSON `set` reports, in `--set`'s units.
pub(super) fn fixed_values(sets: &[String]) -> Vec<(String, f64)> {
    sets.iter()
        .filter_map(|s| split_setpoint(s).ok())
        .map(|(n, v)| (n.to_string(), v))
        .collect()
}

/// What the grid starts from, as `whatif.rs` has worked it out.
pub(super) struct Start<'a> {
    pub model: &'a LineModel,
    /// The as-is candidate (the base values).
    pub base: &'a Candidate,
    /// The base with every `--set` applied: each grid point starts here.
    pub fixed: &'a Candidate,
    pub fixed_values: Vec<(String, f64)>,
    pub horizon: Duration,
    /// The JSON header without its forecast (`line`, `start`, ...), and the
    /// table's first line.
    pub header: serde_json::Value,
    pub describe: String,
}

/// Forecasts the as-is values and every grid point, and prints them: with
/// `json`, a `start` line (the state and the as-is forecast) and then one
/// `candidate` line per point, in [`points`] order; else a table.
pub(super) fn run(start: Start<'_>, axes: &[Axis], json: bool) -> i32 {
    let fail = |msg: String| {
        output::error(msg);
        EXIT_FAILURE
    };
    let points = points(axes);
    let t0 = wallclock::monotonic();
    let as_is = match start.model.lookahead(start.base, start.horizon) {
        Ok(f) => f,
        Err(e) => return fail(format!("the forecast failed: {e}")),
    };
    let mut out = Stdout::new();
    let mut table = String::new();
    if json {
        let mut head = start.header;
        if let Some(h) = head.as_object_mut() {
            h.insert("type".into(), json!("start"));
            h.insert("base".into(), forecast_json(&as_is));
            h.insert("candidates".into(), json!(points.len()));
            h.insert(
                "grid".into(),
                axes.iter()
                    .map(|a| (a.name.clone(), json!(a.values)))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
            );
        }
        out.line(head);
    } else {
        table += &format!("{}\n", start.describe);
        table += &format!(
            "next {}, {} candidates\n",
            humantime::format_duration(start.horizon),
            points.len()
        );
        let mut heads: Vec<String> = axes.iter().map(|a| a.name.clone()).collect();
        heads.extend(["throughput/min", "out", "lost", "WIP end", "jam risk"].map(String::from));
        table += &heads.iter().map(|h| format!("{h:>16}")).collect::<String>();
        table += "\n";
        table += &grid_row(&["as is".to_string()], axes.len(), &as_is);
    }
    for (i, p) in points.iter().enumerate() {
        let mut c = start.fixed.clone();
        for (a, &v) in axes.iter().zip(p) {
            apply(&mut c, a.target, v);
        }
        let f = match start.model.lookahead(&c, start.horizon) {
            Ok(f) => f,
            Err(e) => return fail(format!("the forecast of candidate {i} failed: {e}")),
        };
        if json {
            let mut set: serde_json::Map<String, serde_json::Value> = start
                .fixed_values
                .iter()
                .map(|(n, v)| (n.clone(), json!(v)))
                .collect();
            set.extend(axes.iter().zip(p).map(|(a, v)| (a.name.clone(), json!(v))));
            out.line(json!({
                "type": "candidate",
                "index": i,
                "set": set,
                "candidate": forecast_json(&f),
            }));
        } else {
            let cells: Vec<String> = p.iter().map(|v| format!("{v}")).collect();
            table += &grid_row(&cells, axes.len(), &f);
        }
    }
    if !json {
        let wall = wallclock::since(t0).as_secs_f64().max(1e-9);
        let speed = (points.len() + 1) as f64 * start.horizon.as_secs_f64() / wall;
        table += &format!("(simulated {speed:.0}x faster than real time)\n");
        out.write(&table);
    }
    out.exit_code(0)
}

/// A table row: the axis cells (or one label spanning them), then the
/// forecast.
fn grid_row(cells: &[String], axes: usize, f: &Forecast) -> String {
    let mut row = String::new();
    if cells.len() == axes {
        row += &cells.iter().map(|c| format!("{c:>16}")).collect::<String>();
    } else {
        let width = 16 * axes.max(1);
        row += &format!("{:>width$}", cells.join(" "));
    }
    for c in [
        format!("{:.1}", f.throughput_per_min),
        f.out.to_string(),
        f.lost.to_string(),
        f.wip_end.to_string(),
        format!("{:.2}", f.jam_risk),
    ] {
        row += &format!("{c:>16}");
    }
    row + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_axis_includes_both_ends_without_float_dust() {
        let (name, v) = split_grid("infeed.speed=0.1:1.2:0.1").expect("valid");
        assert_eq!(name, "infeed.speed");
        assert_eq!(v.len(), 12, "{v:?}");
        assert_eq!(v[2], 0.3);
        assert_eq!(v[11], 1.2);
        let (_, one) = split_grid("station:filler=0.8:0.8:0.1").expect("valid");
        assert_eq!(one, [0.8]);
        let (_, v) = split_grid("outfeed.speed=0.2:0.55:0.1").expect("valid");
        assert_eq!(v, [0.2, 0.3, 0.4, 0.5], "HI is a bound, not a point");
    }

    #[test]
    fn grid_axis_refuses_bad_ranges() {
        for bad in [
            "infeed.speed",
            "infeed.speed=0.1:1.2",
            "infeed.speed=0.1:1.2:0",
            "infeed.speed=1.2:0.1:0.1",
            "infeed.speed=-0.1:1.2:0.1",
            "infeed.speed=a:1:0.1",
            "infeed.speed=0:1:0.1:3",
            "infeed.speed=0:inf:0.1",
        ] {
            assert!(
                split_grid(bad).is_err_and(|e| e.contains("expected TAG=LO:HI:STEP")),
                "{bad}"
            );
        }
        assert!(
            split_grid("infeed.speed=0:100:0.001").is_err_and(|e| e.contains("at most 10000")),
            "one axis too long"
        );
    }

    #[test]
    fn grid_points_are_the_product_first_axis_slowest() {
        let axis = |values: &[f64], i| Axis {
            name: String::new(),
            target: Target::Belt(i),
            values: values.to_vec(),
        };
        let p = points(&[axis(&[1.0, 2.0], 0), axis(&[5.0, 6.0, 7.0], 1)]);
        assert_eq!(
            p,
            [
                vec![1.0, 5.0],
                vec![1.0, 6.0],
                vec![1.0, 7.0],
                vec![2.0, 5.0],
                vec![2.0, 6.0],
                vec![2.0, 7.0]
            ]
        );
        assert_eq!(points(&[]), [Vec::<f64>::new()]);
    }
}
