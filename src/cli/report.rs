//! `twin report EVENTS.jsonl -o report.html`: one self-contained HTML page
//! with plots of a run's or a replay's event stream, for QA (docs/report.md).
//! The work is the library's (src/report/); this reads the file as a stream
//! and writes the page.

use std::fs::File;
use std::io::{self, BufReader};
use std::path::PathBuf;

use clap::Args;

use super::EXIT_FAILURE;
use super::output;
use crate::report::{ReportError, ReportOptions, jsonl_lines, render};

/// Exit code for `--tags` naming a tag the input does not have, as for
/// clap's usage errors.
const EXIT_USAGE: i32 = 2;

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The event stream (JSON lines, as `twin run --events` writes it), `-`
    /// for stdin, or a recording (`.mcap`, or a rotated one's
    /// `.index.json`): its events and every sample it holds.
    pub input: PathBuf,
    /// Write the HTML page to FILE.
    #[arg(short = 'o', long = "output", value_name = "FILE", required = true)]
    pub output: PathBuf,
    /// Plot these tags, in this order, instead of the automatic choice
    /// (at most 12: the lines' belt speeds, then the busiest numeric tags).
    #[arg(long, value_name = "TAG,TAG", value_delimiter = ',')]
    pub tags: Option<Vec<String>>,
    /// The page's title (default: "twin report: INPUT").
    #[arg(long)]
    pub title: Option<String>,
}

/// The report of a recording: its `/twin/events` lines and its samples, in
/// one pass over the file.
fn from_recording(
    path: &std::path::Path,
    opts: ReportOptions,
) -> Result<Result<String, ReportError>, crate::recording::RecordingError> {
    use crate::recording::{Item, RecordingReader};
    let mut reader = RecordingReader::open(&[path.to_path_buf()])?;
    let mut report = crate::report::Report::new(opts);
    let mut n = 0;
    while let Some(item) = reader.next_item() {
        match item? {
            Item::Event { line, .. } => {
                n += 1;
                if let Err(e) = report.push_line(n, &line) {
                    return Ok(Err(e));
                }
            }
            Item::Sample { record, .. } => report.push_sample(&record),
            Item::Tick(_) | Item::Guard { .. } => {}
        }
    }
    for c in reader.cut_off() {
        tracing::warn!(file = %c.path.display(), detail = %c.detail,
            "The recording ends before its end (cut off by a crash?); reporting what it holds.");
    }
    Ok(report.finish())
}

pub fn run(args: &ReportArgs) -> i32 {
    let source = args.input.display().to_string();
    let opts = ReportOptions {
        source: source.clone(),
        title: args.title.clone(),
        tags: args.tags.as_ref().map(|t| {
            t.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        }),
    };
    let recording = args.input.extension().is_some_and(|e| e == "mcap")
        || crate::recording::index::is_index(&args.input);
    let result = if recording {
        match from_recording(&args.input, opts) {
            Ok(r) => r,
            Err(e) => {
                output::error(e);
                return EXIT_FAILURE;
            }
        }
    } else if source == "-" {
        render(opts, jsonl_lines(io::stdin().lock()), std::iter::empty())
    } else {
        match File::open(&args.input) {
            Ok(f) => render(opts, jsonl_lines(BufReader::new(f)), std::iter::empty()),
            Err(e) => {
                output::error(format_args!("cannot open {source}: {e}"));
                return EXIT_FAILURE;
            }
        }
    };
    let page = match result {
        Ok(p) => p,
        Err(e @ ReportError::UnknownTags(_)) => {
            output::error(e);
            return EXIT_USAGE;
        }
        Err(e) => {
            output::error(e);
            return EXIT_FAILURE;
        }
    };
    if let Err(e) = std::fs::write(&args.output, page) {
        output::error(format_args!(
            "cannot write the report to {}: {e}",
            args.output.display()
        ));
        return EXIT_FAILURE;
    }
    0
}
