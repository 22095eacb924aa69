//! `twin import DATA.csv|DATA.jsonl -o REC.mcap`: foreign data into a
//! recording that `twin replay` runs (see `recording::import`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tracing::{error, info, warn};

use super::EXIT_FAILURE;
use super::load::load;
use super::output::Stderr;
use crate::recording::import::time::{TimeUnit, format_rfc3339, parse_iso};
use crate::recording::import::{ImportError, ImportOptions, Layout, import};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The data: CSV (`.csv`, anything not JSON) or JSON lines (`.jsonl`,
    /// `.ndjson`, `.json`: one object per line).
    pub input: PathBuf,
    /// The recording to write.
    #[arg(short, long, value_name = "REC.mcap")]
    pub output: PathBuf,
    /// Map the columns onto this config's tags (by name; see --map).
    /// Without it, a starter config whose tags are the columns is made.
    #[arg(long, value_name = "PLANT.toml", conflicts_with_all = ["config_out", "tick"])]
    pub config: Option<PathBuf>,
    /// Also write the starter config here (it is in the recording anyway).
    #[arg(long, value_name = "PLANT.toml")]
    pub config_out: Option<PathBuf>,
    /// Column (or, long, tag value) COLUMN goes to tag TAG; `COLUMN=` drops
    /// it. Repeatable.
    #[arg(long = "map", value_name = "COLUMN=TAG", value_parser = parse_map)]
    pub maps: Vec<(String, String)>,
    /// `wide` (a column per tag) or `long` (tag and value columns); by
    /// default long if there are `tag` and `value` columns.
    #[arg(long, value_name = "wide|long", value_parser = Layout::parse)]
    pub layout: Option<Layout>,
    /// The time column (default: the first named time, timestamp, ts,
    /// datetime, date_time, date or t).
    #[arg(long, value_name = "NAME", conflicts_with = "period")]
    pub time_column: Option<String>,
    /// Unit of an epoch time column (default: by magnitude, see
    /// docs/import.md).
    #[arg(long, value_name = "s|ms|us|ns", value_parser = TimeUnit::parse)]
    pub time_unit: Option<TimeUnit>,
    /// No time column: rows are this far apart (e.g. 3m), from --start.
    #[arg(long, value_name = "DURATION", value_parser = super::parse_period)]
    pub period: Option<Duration>,
    /// Time of the first row with --period (ISO 8601; default
    /// 2000-01-01T00:00:00Z).
    #[arg(long, value_name = "TIME", requires = "period", value_parser = parse_start)]
    pub start: Option<i64>,
    /// Skip rows that cannot be read, count them and report the first few.
    #[arg(long)]
    pub skip_bad: bool,
    /// The starter config's tick (default 100ms).
    #[arg(long, value_name = "DURATION", value_parser = parse_tick)]
    pub tick: Option<Duration>,
}

/// The starter config's tick, in the range a config's `[plant] tick` takes
/// (1ms..=1m): outside it the written config would fail its own check.
fn parse_tick(s: &str) -> Result<Duration, String> {
    let d = super::parse_duration(s)?;
    if (Duration::from_millis(1)..=Duration::from_secs(60)).contains(&d) {
        Ok(d)
    } else {
        Err("a tick must be from 1ms to 1m, e.g. 100ms".to_string())
    }
}

fn parse_map(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((c, t)) if !c.is_empty() => Ok((c.to_string(), t.to_string())),
        _ => Err("expected COLUMN=TAG (or COLUMN= to drop the column)".into()),
    }
}

fn parse_start(s: &str) -> Result<i64, String> {
    parse_iso(s).ok_or_else(|| "expected an ISO 8601 time, e.g. 2026-12-04T06:00:00Z".into())
}

/// 2000-01-01T00:00:00Z: a --period import without --start begins here, a
/// date no plant data is mistaken for and that every tool shows.
const DEFAULT_START_NS: i64 = 946_684_800_000_000_000;

pub fn run(args: &ImportArgs) -> i32 {
    let cfg = match &args.config {
        Some(p) => match load(p, Stderr::Wait) {
            Ok(c) => Some(c),
            Err(code) => return code,
        },
        None => None,
    };
    let opts = ImportOptions {
        layout: args.layout,
        time_column: args.time_column.clone(),
        time_unit: args.time_unit,
        period: args.period,
        start_ns: Some(args.start.unwrap_or(DEFAULT_START_NS)),
        maps: args.maps.clone(),
        skip_bad: args.skip_bad,
        tick: args.tick,
        plant: None,
    };
    let s = match import(&args.input, &args.output, cfg.as_ref(), &opts) {
        Ok(s) => s,
        Err(e @ ImportError::Bad(_)) => {
            error!("{e}");
            return EXIT_FAILURE;
        }
        Err(e) => {
            error!("{e}");
            return EXIT_FAILURE;
        }
    };
    if let Some(p) = &args.config_out
        && let Err(e) = std::fs::write(p, &s.config_text)
    {
        error!(path = %p.display(), error = %e, "Cannot write the starter config.");
        return EXIT_FAILURE;
    }
    if s.bad_rows > 0 {
        warn!(
            bad_rows = s.bad_rows,
            "Skipped rows that could not be read (--skip-bad); the first ones follow."
        );
        for b in &s.first_bad {
            warn!("Skipped {b}");
        }
    }
    let tags: Vec<String> = s
        .tags
        .iter()
        .map(|(c, t)| {
            if c == t {
                t.clone()
            } else {
                format!("{c}->{t}")
            }
        })
        .collect();
    info!(
        input = %args.input.display(),
        output = %args.output.display(),
        layout = ?s.layout,
        time_unit = s.time_unit.map_or("", |u| u.name()),
        rows = s.rows,
        samples = s.samples,
        bad_rows = s.bad_rows,
        from = %format_rfc3339(s.first_ns),
        to = %format_rfc3339(s.last_ns),
        tags = %tags.join(","),
        config_out = %args.config_out.as_ref().map_or_else(String::new, |p| p.display().to_string()),
        "Imported."
    );
    0
}
