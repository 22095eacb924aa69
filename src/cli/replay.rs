//! `twin replay [CONFIG] REC.mcap [more.mcap…]`: a recording through the
//! twin, with the events written as a live run would have.
//!
//! Without CONFIG the recording's own config is used (it is in the file).
//! With another config than the recorded one, it is a counterfactual
//! replay: "what would these settings have done with that day's data".

use std::path::{Path, PathBuf};

use clap::Args;
use tracing::{error, info, warn};

use super::EXIT_FAILURE;
use super::load::{load, load_text_with};
use super::output::Stderr;
use crate::recording::RecordingReader;
use crate::runtime::{ReplayOptions, Speed, run_replay};
use crate::sinks::events::{EventOptions, EventStream, Overflow};

/// Exit code when `--verify` finds a difference.
pub const EXIT_DIVERGED: i32 = 1;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The plant config to replay under (optional: the recording holds its
    /// own), then the recording: one .mcap file, the files of a rotated
    /// recording in order, or its .index.json.
    #[arg(required = true, value_name = "[CONFIG.toml] REC.mcap")]
    pub inputs: Vec<PathBuf>,
    /// Write the event stream (JSON lines) to PATH, or `-` for stdout.
    #[arg(long, value_name = "PATH|-")]
    pub events: Option<String>,
    /// `max` (as fast as the CPU goes), or a multiple of real time such as
    /// `1x` or `10x`. The output is the same at every speed.
    #[arg(long, value_name = "max|Nx", default_value = "max", value_parser = Speed::parse)]
    pub speed: Speed,
    /// Write events from this time on: an offset into the recording (`90s`,
    /// `1h30m`) or a time (`2026-12-04T10:00:00Z`). The ticks before it run
    /// too, without output, so the state at that time is the live one.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Stop after this time (an offset or a time, as for --from).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    /// Compare every tick's events with those the recording holds; exit 1
    /// at the first difference, naming it.
    #[arg(long)]
    pub verify: bool,
    /// Check the replayed events against these expectations (docs/qa.md);
    /// exit 1 if one fails.
    #[arg(long, value_name = "EXPECT.toml")]
    pub expect: Option<PathBuf>,
    /// With --expect: write the verdicts as JUnit XML for CI.
    #[arg(long, value_name = "OUT.xml", requires = "expect")]
    pub junit: Option<PathBuf>,
    /// Serve the read-only HTTP API and /metrics while replaying (no
    /// control: a replay has no plant to act on).
    #[command(flatten)]
    pub http: super::HttpArgs,
}

/// `90s` from the recording's start, or an RFC 3339 time (`--from`,
/// `--to`, and `twin whatif --at`).
pub(super) fn parse_time(s: &str, start_ns: i64) -> Result<i64, String> {
    crate::qa::time_spec(s)
        .map(|t| t.resolve(start_ns))
        .ok_or_else(|| {
            format!(
                "{s:?} is neither an offset into the recording (e.g. 90s, 1h30m) nor a time (e.g. 2026-12-04T10:00:00Z)"
            )
        })
}

fn is_config(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "toml")
}

pub fn run(args: ReplayArgs, log: Option<&str>) -> i32 {
    super::init_logging(log, false);
    let (config, files): (Option<&PathBuf>, &[PathBuf]) = match args.inputs.split_first() {
        Some((first, rest)) if is_config(first) => (Some(first), rest),
        _ => (None, &args.inputs),
    };
    if files.is_empty() {
        error!("No recording given: `twin replay [CONFIG.toml] REC.mcap [more.mcap...]`.");
        return 2;
    }
    let mut reader = match RecordingReader::open(files) {
        Ok(r) => r,
        Err(e) => {
            error!("{e}");
            return EXIT_FAILURE;
        }
    };
    let cfg = match config {
        Some(p) => load(p, Stderr::Queue),
        None => {
            let name = format!("{}:plant.toml", files[0].display());
            // The recording's own config runs the model files the run ran,
            // which the recording carries.
            let files = reader.model_files();
            load_text_with(
                Path::new(&name),
                reader.config_text(),
                |_| {
                    files
                        .iter()
                        .map(|(id, b)| (id.clone(), b.clone()))
                        .collect()
                },
                Stderr::Queue,
            )
        }
    };
    let cfg = match cfg {
        Ok(c) => c,
        Err(code) => return code,
    };
    let start = reader.info().epoch_ns;
    let times = (
        args.from
            .as_deref()
            .map(|s| parse_time(s, start))
            .transpose(),
        args.to.as_deref().map(|s| parse_time(s, start)).transpose(),
    );
    let (from_ns, to_ns) = match times {
        (Ok(Some(f)), Ok(Some(t))) if f > t => {
            // The replay used to run and write nothing, exiting 0: a
            // swapped pair looked like a recording with nothing in it.
            error!(
                "--from {} is after --to {}: nothing would be written. Give --from a time before --to.",
                args.from.as_deref().unwrap_or(""),
                args.to.as_deref().unwrap_or("")
            );
            return 2;
        }
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => {
            error!("{e}");
            return 2;
        }
    };
    let http = match args.http.prepare() {
        Ok(h) => h,
        Err(code) => return code,
    };
    let mut opts = ReplayOptions::new();
    opts.speed = args.speed;
    opts.from_ns = from_ns;
    opts.to_ns = to_ns;
    opts.verify = args.verify;
    if let Some(target) = &args.events {
        // A replay has no plant to keep up with: its output is whole, and
        // a slow reader slows the replay down instead.
        let options = EventOptions {
            overflow: Overflow::Wait,
            ..EventOptions::default()
        };
        match EventStream::open_with(target, options) {
            Ok(s) => opts.sinks.push(Box::new(s)),
            Err(e) => {
                error!(path = %target, error = %e, "Cannot open the event stream for writing.");
                return EXIT_FAILURE;
            }
        }
    }
    let expectations = match &args.expect {
        Some(p) => match super::expect::load(p) {
            Ok(e) => Some(e),
            Err(code) => return code,
        },
        None => None,
    };
    let report_slot = expectations.map(|e| {
        let (sink, slot) = crate::qa::ExpectSink::new(e.checker());
        opts.sinks.push(Box::new(sink));
        slot
    });
    let junit = args.junit.clone();
    let (from_arg, to_arg) = (args.from.clone(), args.to.clone());
    let events_on_stdout = args.events.as_deref() == Some("-");
    super::block_on(move |shutdown| async move {
        match super::start_http(http, &cfg, Default::default(), None, &shutdown).await {
            Ok(Some((sink, _))) => opts.sinks.push(Box::new(sink)),
            Ok(None) => {}
            Err(code) => return code,
        }
        opts.cancel = shutdown;
        let wall = crate::wallclock::monotonic();
        let done = tokio::task::spawn_blocking(move || run_replay(&cfg, &mut reader, opts)).await;
        let result = match done {
            Ok(x) => x,
            Err(e) => {
                error!(error = %e, "The replay stopped unexpectedly.");
                return EXIT_FAILURE;
            }
        };
        let s = match result {
            Ok(s) => s,
            Err(e) => {
                error!("{e}");
                return EXIT_FAILURE;
            }
        };
        let wall = crate::wallclock::since(wall);
        for c in &s.cut_off {
            warn!(file = %c.path.display(), read_bytes = c.read_bytes, detail = %c.detail,
                "The recording file ends before its end (cut off by a crash?); replayed what it holds. `twin recover` writes a clean copy.");
        }
        if s.unknown_tag_samples > 0 {
            warn!(
                samples = s.unknown_tag_samples,
                first_tag = s.first_unknown_tag.as_deref().unwrap_or(""),
                "Samples of tags the config does not have were skipped."
            );
        }
        let speed = s.simulated.as_secs_f64() / wall.as_secs_f64().max(1e-9);
        info!(
            ticks = s.ticks,
            samples = s.samples,
            events = s.events,
            simulated_s = s.simulated.as_secs_f64(),
            wall_s = wall.as_secs_f64(),
            times_real_time = speed.round(),
            exact = s.exact,
            same_config = s.same_config,
            guard_inputs = s.guard_inputs,
            "Replay done."
        );
        // A window outside the recording is not an error the replay can
        // see before it has read the file, but an empty output must not
        // pass for a quiet stretch.
        let end_ns =
            start.saturating_add(i64::try_from(s.simulated.as_nanos()).unwrap_or(i64::MAX));
        if let Some(f) = from_ns
            && f > end_ns
            && !s.cancelled
        {
            warn!(
                from = from_arg.as_deref().unwrap_or(""),
                recording_s = s.simulated.as_secs_f64(),
                "--from is after the recording's end: no tick was written. Give a time within the recording."
            );
        }
        if let Some(t) = to_ns
            && t < start
        {
            warn!(
                to = to_arg.as_deref().unwrap_or(""),
                "--to is before the recording's start: nothing was replayed. Give a time within the recording."
            );
        }
        if s.guard_inputs_refused > 0 {
            warn!(
                refused = s.guard_inputs_refused,
                of = s.guard_inputs,
                "Recorded guard inputs (operator commands, write outcomes) did not apply to the replayed state; its setpoint decisions differ from the recorded run's."
            );
        }
        if let Some(d) = &s.divergence {
            error!(
                tick = d.tick,
                recorded = d.recorded.as_deref().unwrap_or("(no event)"),
                replayed = d.replayed.as_deref().unwrap_or("(no event)"),
                "The replay differs from the recording."
            );
            return EXIT_DIVERGED;
        }
        if s.cancelled {
            return 130;
        }
        match report_slot.and_then(|slot| slot.take()) {
            Some(report) if events_on_stdout => {
                super::expect::conclude(&report, junit.as_deref(), None)
            }
            Some(report) => super::expect::conclude(
                &report,
                junit.as_deref(),
                Some(&mut super::output::Stdout::new()),
            ),
            None => 0,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_times_are_offsets_or_rfc3339() {
        let start = 1_000_000_000_000;
        assert_eq!(parse_time("90s", start), Ok(start + 90_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:02Z", start), Ok(2_000_000_000));
        assert!(parse_time("yesterday", start).is_err_and(|e| e.contains("90s")));
        assert_eq!(Speed::parse("max"), Ok(Speed::Max));
        assert_eq!(Speed::parse("10x"), Ok(Speed::Times(10.0)));
        assert!(Speed::parse("0x").is_err() && Speed::parse("fast").is_err());
    }
}
