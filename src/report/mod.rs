//! `twin report`: an event stream (and, optionally, the samples behind it)
//! turned into one self-contained HTML page with plots, for QA.
//!
//! Where it sits in the data flow: after everything else. It reads what a
//! run or a replay wrote (JSONL lines from a file today; the `/twin/events`
//! channel and the samples of an MCAP recording later) and never touches a
//! config, a source or the core.
//!
//! The input streams through [`Report`]: each line is parsed (input.rs),
//! folded into bounded per-tag and per-line series (collect.rs,
//! series.rs), and dropped. Memory does not grow with the file's length, so
//! a 24-hour file reports like a 1-minute one. [`Report::finish`] picks the
//! tags to plot, draws the plots (plot.rs) and writes the page (html.rs).

mod collect;
mod html;
mod input;
mod plot;
mod series;

use std::io::{self, BufRead, Read};

pub use collect::{DEFAULT_PLOTS, MAX_ROWS};
pub use input::LineError;
pub use plot::PlotError;

use crate::twin::record::SampleRecord;

/// Longest event line read: far beyond any event the twin writes (a
/// `line` event with a hundred belts is a few KiB), and a bound on what a
/// file without newlines can make the report hold.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// What to report and how.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// The input's name, for the page and for errors (a path).
    pub source: String,
    /// The page's title; default "twin report: SOURCE".
    pub title: Option<String>,
    /// Plot exactly these tags, in this order, instead of the default
    /// choice (see [`DEFAULT_PLOTS`] and docs/report.md).
    pub tags: Option<Vec<String>>,
}

/// Why no report could be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{source_name}:{line}: {error}")]
    Line {
        source_name: String,
        line: u64,
        error: LineError,
    },
    #[error("{source_name}:{line}: cannot read: {error}")]
    Read {
        source_name: String,
        line: u64,
        error: io::Error,
    },
    #[error("{source_name}: no events in the input")]
    Empty { source_name: String },
    #[error("--tags: {}", unknown_tags(.0))]
    UnknownTags(Vec<(String, Option<String>)>),
    #[error(transparent)]
    Plot(#[from] PlotError),
}

fn unknown_tags(names: &[(String, Option<String>)]) -> String {
    let each: Vec<String> = names
        .iter()
        .map(|(n, hint)| match hint {
            Some(h) => format!("no tag {n:?} in the input (did you mean {h:?}?)"),
            None => format!("no tag {n:?} in the input"),
        })
        .collect();
    each.join("; ")
}

/// A report being built from streamed input.
#[derive(Debug)]
pub struct Report {
    opts: ReportOptions,
    c: collect::Collector,
}

impl Report {
    pub fn new(opts: ReportOptions) -> Self {
        let c = collect::Collector::new(opts.tags.clone());
        Report { opts, c }
    }

    /// Take one event line (its number, from 1, names it in errors). A
    /// trailing newline or CR is ignored; blank lines are skipped.
    pub fn push_line(&mut self, line_no: u64, line: &[u8]) -> Result<(), ReportError> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let e = input::parse(line).map_err(|error| ReportError::Line {
            source_name: self.opts.source.clone(),
            line: line_no,
            error,
        })?;
        self.c.push_event(&e);
        Ok(())
    }

    /// Take one sample the core received (from a recording).
    pub fn push_sample(&mut self, s: &SampleRecord) {
        self.c.push_sample(s);
    }

    /// Draw the plots and write the page.
    pub fn finish(self) -> Result<String, ReportError> {
        let c = &self.c;
        let (Some(first), Some(last)) = (c.first, c.last) else {
            return Err(ReportError::Empty {
                source_name: self.opts.source.clone(),
            });
        };
        let (chosen, tags_note) = match &self.opts.tags {
            Some(names) => (
                self.named_tags(names)?,
                "The tags named with --tags.".to_string(),
            ),
            None => (
                collect::key_tags(c),
                format!(
                    "Chosen automatically (at most {DEFAULT_PLOTS}; --tags names others): the lines' belt speeds, \
                     then tags with numbers before booleans, tags of a machine first, the busiest first."
                ),
            ),
        };
        let axis = plot::Axis::new(first, last);
        let mut lines = Vec::new();
        for l in &c.lines {
            lines.push((l, plot::line_plot(l, &c.grid, &axis, &c.gaps)?));
        }
        let mut tags = Vec::new();
        for i in chosen {
            let t = &c.tags[i];
            tags.push((t, plot::tag_plot(t, &c.grid, &axis)?));
        }
        let default_title = format!("twin report: {}", self.opts.source);
        Ok(html::page(&html::Page {
            title: self.opts.title.as_deref().unwrap_or(&default_title),
            source: &self.opts.source,
            c,
            lines,
            tags,
            tags_note,
        }))
    }

    /// The indices of `names`' tracks; all the names that are not in the
    /// input at once, each with its nearest known name.
    fn named_tags(&self, names: &[String]) -> Result<Vec<usize>, ReportError> {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for n in names {
            match self.c.tags.iter().position(|t| t.name == *n) {
                Some(i) => found.push(i),
                None => {
                    let hint = self
                        .c
                        .seen_names()
                        .map(|k| (strsim::jaro_winkler(n, k), k))
                        .filter(|(s, _)| *s > 0.8)
                        // Ties go to the first name in order, so the hint
                        // does not depend on a hash set's order.
                        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
                        .map(|(_, k)| k.to_string());
                    missing.push((n.clone(), hint));
                }
            }
        }
        if missing.is_empty() {
            Ok(found)
        } else {
            Err(ReportError::UnknownTags(missing))
        }
    }
}

/// The lines of a JSONL reader, each without its newline; a line longer
/// than [`MAX_LINE_BYTES`] is an error (of kind `InvalidData`) instead of
/// being held whole.
pub fn jsonl_lines<R: BufRead>(mut r: R) -> impl Iterator<Item = io::Result<Vec<u8>>> {
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut buf = Vec::new();
        let res = (&mut r)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut buf);
        match res {
            Ok(0) => None,
            Ok(_) if buf.len() > MAX_LINE_BYTES && buf.last() != Some(&b'\n') => {
                done = true;
                Some(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the line is longer than {MAX_LINE_BYTES} bytes"),
                )))
            }
            Ok(_) => Some(Ok(buf)),
            Err(e) => {
                done = true;
                Some(Err(e))
            }
        }
    })
}

/// The whole report of `lines` (event lines, numbered from 1 in errors)
/// and `samples` (pass `std::iter::empty()` when there are none): the seam
/// an MCAP reader feeds with its `/twin/events` messages and its samples.
pub fn render<L, B, S>(opts: ReportOptions, lines: L, samples: S) -> Result<String, ReportError>
where
    L: IntoIterator<Item = io::Result<B>>,
    B: AsRef<[u8]>,
    S: IntoIterator<Item = SampleRecord>,
{
    let mut report = Report::new(opts);
    for (i, line) in lines.into_iter().enumerate() {
        let n = i as u64 + 1;
        let line = line.map_err(|error| ReportError::Read {
            source_name: report.opts.source.clone(),
            line: n,
            error,
        })?;
        report.push_line(n, line.as_ref())?;
    }
    for s in samples {
        report.push_sample(&s);
    }
    report.finish()
}
