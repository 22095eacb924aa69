//! Where `twin whatif` starts from: the state the forecasts branch off.
//!
//! - **A recording** (`--at REC.mcap@TIME`): the recording is replayed
//!   through the twin's core under the config up to TIME, and the line's
//!   live model is taken from the core as it is then, products on the
//!   belts, stations mid-cycle and all. Nothing is assumed.
//! - **The live plant** (`--live`, `--endpoints`, `--modbus`, `--mqtt`): a
//!   short live run reads the belts' speed tags and the stations'
//!   cycle-time tags until each is good. Where the products are is not
//!   known from tags alone, so the line is warmed up at those values.
//! - **Nothing read**: the virtual plant's nominal values, each one said.
//!
//! `--base` overrides any of these values.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Target;
use crate::config::{Line, LoadedConfig, StationCycle, TagId};
use crate::physics::LineModel;
use crate::recording::RecordingReader;
use crate::runtime::{ReplayOptions, RunOptions, replay_driver, run_live};
use crate::sinks::{Sink, SinkError, TickOutput};
use crate::twin::components::{TagIndex, TagQuality, TagValue};
use crate::twin::events::rfc3339;
use crate::twin::{Quality, Value};

/// Where the starting state came from.
#[derive(Debug, Clone)]
pub(super) enum Origin {
    Recording {
        path: PathBuf,
        /// The time of the last tick replayed, and its offset into the
        /// recording.
        t_ns: i64,
        offset: Duration,
    },
    Live {
        /// The tick at which every value was good.
        t_ns: i64,
        /// (tag, its value then), exactly as the core had it.
        read: Vec<(String, f64)>,
    },
    Nominal,
}

/// A value the forecast assumed because nothing said what it is now.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Assumed {
    /// The setpoint as `--base` names it (a tag, or `station:ID`).
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    pub why: String,
}

pub(super) struct Start {
    pub origin: Origin,
    /// The replayed line; `None`: warm a fresh one up at the base values.
    pub model: Option<LineModel>,
    /// Base values read or assumed, before `--base`.
    pub values: Vec<(Target, f64)>,
    pub assumed: Vec<Assumed>,
}

/// The setpoints the forecast needs a current value for and `--base` does
/// not give: every belt's speed tag, and every station's cycle-time tag
/// (a fixed cycle time is in the config). (target, tag name).
fn wanted(line: &Line, given: &[Target]) -> Vec<(Target, String)> {
    let belts = line
        .conveyors
        .iter()
        .enumerate()
        .map(|(i, c)| (Target::Belt(i), c.speed_tag.value.clone()));
    let stations = line
        .stations
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.cycle {
            StationCycle::Tag(t) => Some((Target::Station(i), t.value.clone())),
            StationCycle::Fixed(_) => None,
        });
    belts
        .chain(stations)
        .filter(|(t, _)| !given.contains(t))
        .collect()
}

/// The virtual plant's nominal values for what `--base` does not give.
pub(super) fn nominal(cfg: &LoadedConfig, line: &Line, given: &[Target]) -> Result<Start, String> {
    let mut start = Start {
        origin: Origin::Nominal,
        model: None,
        values: Vec::new(),
        assumed: Vec::new(),
    };
    for (target, tag) in wanted(line, given) {
        let (value, unit, why) = match target {
            Target::Belt(_) => (
                crate::sim::truth::belt_nominal(cfg, &tag),
                "m/s",
                "the virtual plant's nominal belt speed; the config gives none".to_string(),
            ),
            Target::Station(i)
                if let Some(c) = line.stations.get(i).and_then(|s| s.commissioned) =>
            {
                (
                    c.as_secs_f64(),
                    "s",
                    "the station's commissioned cycle (`cycle_time` in the config)".to_string(),
                )
            }
            Target::Station(i) => {
                let Some(v) = crate::sim::truth::tag_nominal(cfg, &tag) else {
                    let id = line.stations.get(i).map_or("?", |s| s.id.value.as_str());
                    return Err(format!(
                        "station \"{id}\" takes its cycle time from tag \"{tag}\", and neither the config nor the virtual plant gives it a nominal value: give its current value with --base {tag}=SECONDS, or start from a recording (--at REC.mcap@TIME) or the live plant (--endpoints FILE)"
                    ));
                };
                (
                    v,
                    "s",
                    "the virtual plant's nominal value for the tag".to_string(),
                )
            }
        };
        start.values.push((target, value));
        start.assumed.push(Assumed {
            name: tag,
            value,
            unit,
            why,
        });
    }
    Ok(start)
}

/// `REC.mcap@TIME` split at its last `@` (a path may hold one, a time
/// never does).
fn split_at_spec(spec: &str) -> Result<(&str, &str), String> {
    match spec.rsplit_once('@') {
        Some((path, time)) if !path.is_empty() && !time.is_empty() => Ok((path, time)),
        _ => Err(format!(
            "--at `{spec}`: expected REC.mcap@TIME, e.g. shift.mcap@90s or shift.mcap@2026-12-04T10:00:00Z"
        )),
    }
}

/// The line as the twin had it at `spec`'s time in its recording, replayed
/// under `cfg`.
pub(super) fn recording(cfg: &LoadedConfig, line: &Line, spec: &str) -> Result<Start, String> {
    let (path, time) = split_at_spec(spec)?;
    let path = PathBuf::from(path);
    let mut reader = RecordingReader::open(std::slice::from_ref(&path))
        .map_err(|e| format!("--at: cannot read the recording: {e}"))?;
    let epoch = reader.info().epoch_ns;
    let at = crate::cli::replay::parse_time(time, epoch).map_err(|e| format!("--at: {e}"))?;
    if at < epoch {
        return Err(format!(
            "--at: {time} is before the recording starts ({})",
            rfc3339(epoch)
        ));
    }
    let mut opts = ReplayOptions::new();
    opts.to_ns = Some(at);
    let (summary, driver) = replay_driver(cfg, &mut reader, opts)
        .map_err(|e| format!("--at: the replay failed: {e}"))?;
    let clock = driver.clock();
    // The tick at or before TIME; a recording that ends before it has not
    // run that far.
    let period = clock.period_ns().max(1);
    let due = u64::try_from(at.saturating_sub(clock.time_of(0)) / period).unwrap_or(u64::MAX);
    if clock.tick() < due {
        let end = clock.now_ns();
        return Err(format!(
            "--at: {time} is past the end of {}, which ends {} in ({})",
            path.display(),
            humantime::format_duration(Duration::from_nanos(
                u64::try_from(end.saturating_sub(epoch)).unwrap_or(0)
            )),
            rfc3339(end)
        ));
    }
    if summary.unknown_tag_samples > 0 {
        tracing::warn!(
            samples = summary.unknown_tag_samples,
            first_tag = summary.first_unknown_tag.as_deref().unwrap_or(""),
            "Samples of tags the config does not have were skipped."
        );
    }
    let model = driver
        .core()
        .lines()
        .iter()
        .find(|l| *l.id == *line.id.value)
        .map(|l| l.model().clone())
        .ok_or_else(|| {
            format!(
                "--at: the twin has no model of line \"{}\" (no conveyor geometry?)",
                line.id.value
            )
        })?;
    let t_ns = clock.now_ns();
    Ok(Start {
        origin: Origin::Recording {
            path,
            t_ns,
            offset: Duration::from_nanos(u64::try_from(t_ns.saturating_sub(epoch)).unwrap_or(0)),
        },
        model: Some(model),
        values: Vec::new(),
        assumed: Vec::new(),
    })
}

/// A tag as the core had it: value, quality, reason.
type TagNow = (Option<Value>, Quality, Option<&'static str>);

/// What the reading sink saw of each wanted tag, and when all were good.
#[derive(Debug, Default)]
struct Seen {
    /// Per wanted tag: its last value and quality, once the core had one.
    last: Vec<Option<TagNow>>,
    /// The tick time at which every tag was good, and their values.
    done: Option<(i64, Vec<f64>)>,
}

/// A tag's value, if it is good and a number >= 0 (a speed or a cycle
/// time).
fn usable(seen: Option<&TagNow>) -> Option<f64> {
    match seen {
        Some((Some(v), Quality::Good, _)) => {
            Some(v.as_f64()).filter(|n| n.is_finite() && *n >= 0.0)
        }
        _ => None,
    }
}

/// A sink on the live run that reads the wanted tags after every tick and
/// stops the run once every one is good.
struct ReadOnce {
    tags: Vec<Option<TagId>>,
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
}

impl Sink for ReadOnce {
    fn write_tick(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        let world = out.core.world();
        let Some(index) = world.get_resource::<TagIndex>() else {
            return Ok(());
        };
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.done.is_some() {
            return Ok(());
        }
        let mut values = Vec::with_capacity(self.tags.len());
        seen.last.clear();
        for id in &self.tags {
            let entity = id.and_then(|id| index.0.get(id.index()).copied());
            let now = entity.and_then(|e| {
                let v = world.get::<TagValue>(e)?;
                let q = world.get::<TagQuality>(e)?;
                Some((v.0.clone(), q.quality, q.reason.map(|r| r.as_str())))
            });
            if let Some(n) = usable(now.as_ref()) {
                values.push(n);
            }
            seen.last.push(now);
        }
        if values.len() == self.tags.len() {
            seen.done = Some((out.t_ns, values));
            self.stop.cancel();
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// How the live plant is reached: `twin run`'s endpoint overrides.
pub(super) struct LiveArgs<'a> {
    pub endpoints: Option<&'a Path>,
    pub modbus: &'a [String],
    pub mqtt: &'a [String],
    pub timeout: Duration,
}

/// The live plant's current values of what `--base` does not give, read
/// once by a short live run.
pub(super) fn live(
    cfg: &LoadedConfig,
    line: &Line,
    given: &[Target],
    how: &LiveArgs<'_>,
) -> Result<Start, String> {
    let wanted = wanted(line, given);
    let start = |t_ns: i64, values: Vec<f64>| Start {
        origin: Origin::Live {
            t_ns,
            read: wanted
                .iter()
                .map(|(_, tag)| tag.clone())
                .zip(values.iter().copied())
                .collect(),
        },
        model: None,
        values: wanted.iter().map(|(t, _)| *t).zip(values).collect(),
        assumed: Vec::new(),
    };
    if wanted.is_empty() {
        return Ok(start(crate::wallclock::now_ns(), Vec::new()));
    }
    let ep = crate::cli::run::endpoints(how.endpoints, how.modbus, how.mqtt)
        .map_err(|e| e.to_string())?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = ReadOnce {
        tags: wanted.iter().map(|(_, t)| cfg.tags.id(t)).collect(),
        seen: seen.clone(),
        stop: CancellationToken::new(),
    };
    let stop = sink.stop.clone();
    let timeout = how.timeout;
    let mut failed = None;
    let mut interrupted = false;
    let (failed_ref, interrupted_ref) = (&mut failed, &mut interrupted);
    let code = crate::cli::block_on(|shutdown| async move {
        // Ctrl-C stops the read too.
        let forward = stop.clone();
        let watch = shutdown.clone();
        tokio::spawn(async move {
            watch.cancelled().await;
            forward.cancel();
        });
        let mut opts = RunOptions::new(Some(timeout));
        opts.sinks.push(Box::new(sink));
        if let Err(e) = run_live(cfg, &ep, opts, stop).await {
            *failed_ref = Some(e.to_string());
        }
        *interrupted_ref = shutdown.is_cancelled();
        0
    });
    if code != 0 {
        return Err("cannot start the live run".into());
    }
    if interrupted {
        return Err("interrupted while reading the live plant".into());
    }
    if let Some(e) = failed {
        return Err(format!("cannot read the live plant: {e}"));
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap_or_else(PoisonError::into_inner));
    if let Some((t_ns, values)) = seen.done {
        return Ok(start(t_ns, values));
    }
    let missing: Vec<String> = wanted
        .iter()
        .enumerate()
        .filter_map(|(k, (_, tag))| {
            let last = seen.last.get(k).and_then(Option::as_ref);
            if usable(last).is_some() {
                return None;
            }
            let what = match last {
                None | Some((None, Quality::Good, _)) => "no value".to_string(),
                Some((Some(v), Quality::Good, _)) => {
                    format!("{} is not a number >= 0", fmt_value(v))
                }
                Some((_, q, Some(r))) => format!("{} ({r})", q.as_str()),
                Some((_, q, None)) => q.as_str().to_string(),
            };
            Some(format!("{tag}: {what}"))
        })
        .collect();
    Err(format!(
        "could not read {} from the live plant within {}: {}; check the endpoints, or give the values with --base TAG=VALUE",
        if missing.len() == 1 {
            "this tag"
        } else {
            "these tags"
        },
        humantime::format_duration(timeout),
        missing.join("; ")
    ))
}

fn fmt_value(v: &Value) -> String {
    match v {
        Value::Bool(b) => b.to_string(),
        Value::Num(n) => n.to_string(),
        Value::Text(t) => format!("{t:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r10_whatif_at_needs_a_file_and_a_time() {
        assert_eq!(split_at_spec("a@b.mcap@90s"), Ok(("a@b.mcap", "90s")));
        assert_eq!(
            split_at_spec("shift.mcap@2026-12-04T10:00:00Z"),
            Ok(("shift.mcap", "2026-12-04T10:00:00Z"))
        );
        for bad in ["shift.mcap", "shift.mcap@", "@90s"] {
            assert!(
                split_at_spec(bad).is_err_and(|e| e.contains("expected REC.mcap@TIME")),
                "{bad}"
            );
        }
    }
}
