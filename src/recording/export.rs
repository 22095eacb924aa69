//! `twin export`: a recording's samples as CSV, for analysis and training
//! (docs/import.md). It streams: one pass (two for `--wide` without
//! `--tags`, to learn the columns) over the reader, holding one row.
//!
//! Long (the default): `time,tag,value,quality,reason`, one line per sample
//! in recording order, `time` the sample's source time in RFC 3339 UTC.
//! Wide: `time` and a column per tag; a row per run of samples with the
//! same source time, each tag's cell carrying its last value (empty until
//! it has one, and after a sample without a value).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::import::time::format_rfc3339;
use super::{Item, RecordingError, RecordingReader};
use crate::twin::record::{RecordValue, SampleRecord};

#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Only these tags (and, wide, these columns in this order).
    pub tags: Option<Vec<String>>,
    pub wide: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error("{target}: {source}")]
    Write {
        target: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub samples: u64,
    /// Lines written after the header.
    pub rows: u64,
}

/// A value as a cell: numbers in Rust's shortest round-trip form (so an
/// export reads back to the same f64), NaN and infinities as `NaN`, `inf`,
/// `-inf`.
pub fn value_cell(v: &Option<RecordValue>) -> String {
    match v {
        None => String::new(),
        Some(RecordValue::Num(n)) if n.is_nan() => "NaN".into(),
        Some(RecordValue::Num(n)) if n.is_infinite() => {
            if *n > 0.0 {
                "inf".into()
            } else {
                "-inf".into()
            }
        }
        Some(RecordValue::Num(n)) => n.to_string(),
        Some(RecordValue::Bool(b)) => b.to_string(),
        Some(RecordValue::Text(t)) => t.clone(),
    }
}

fn samples(
    files: &[PathBuf],
) -> Result<impl Iterator<Item = Result<SampleRecord, RecordingError>>, RecordingError> {
    let reader = RecordingReader::open(files)?;
    Ok(reader.filter_map(|item| match item {
        Ok(Item::Sample { record, .. }) => Some(Ok(record)),
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    }))
}

/// Export the recording made of `files` as CSV to `out` (`target` names it
/// in errors).
pub fn export_csv<W: Write>(
    files: &[PathBuf],
    opts: &ExportOptions,
    out: W,
    target: &str,
) -> Result<ExportSummary, ExportError> {
    let werr = |e: csv::Error| ExportError::Write {
        target: target.to_string(),
        source: match e.into_kind() {
            csv::ErrorKind::Io(io) => io,
            other => std::io::Error::other(format!("{other:?}")),
        },
    };
    let mut w = csv::Writer::from_writer(out);
    let mut summary = ExportSummary::default();
    let wanted = |tag: &str| {
        opts.tags
            .as_ref()
            .is_none_or(|t| t.iter().any(|x| x == tag))
    };
    // The recording is opened before the header is written: a file that
    // cannot be read is an error with nothing on the output (a header alone
    // on stdout would read as an empty but valid export).
    if !opts.wide {
        let all = samples(files)?;
        w.write_record(["time", "tag", "value", "quality", "reason"])
            .map_err(werr)?;
        for s in all {
            let s = s?;
            if !wanted(&s.tag) {
                continue;
            }
            summary.samples += 1;
            summary.rows += 1;
            w.write_record([
                format_rfc3339(s.source_time_ns).as_str(),
                &s.tag,
                &value_cell(&s.value),
                s.quality.as_str(),
                s.reason.map_or("", |r| r.as_str()),
            ])
            .map_err(werr)?;
        }
    } else {
        let columns: Vec<String> = match &opts.tags {
            Some(t) => t.clone(),
            None => {
                let mut seen = Vec::new();
                let mut set = std::collections::HashSet::new();
                for s in samples(files)? {
                    let s = s?;
                    if set.insert(s.tag.clone()) {
                        seen.push(s.tag.to_string());
                    }
                }
                seen
            }
        };
        let index: HashMap<&str, usize> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let all = samples(files)?;
        w.write_record(std::iter::once("time").chain(columns.iter().map(String::as_str)))
            .map_err(werr)?;
        let mut cells = vec![String::new(); columns.len()];
        let mut row_time: Option<i64> = None;
        let flush = |w: &mut csv::Writer<W>, t: i64, cells: &[String]| {
            w.write_record(
                std::iter::once(format_rfc3339(t).as_str()).chain(cells.iter().map(String::as_str)),
            )
        };
        for s in all {
            let s = s?;
            let Some(&i) = index.get(&*s.tag) else {
                continue;
            };
            summary.samples += 1;
            if let Some(t) = row_time.filter(|t| *t != s.source_time_ns) {
                flush(&mut w, t, &cells).map_err(werr)?;
                summary.rows += 1;
            }
            row_time = Some(s.source_time_ns);
            cells[i] = value_cell(&s.value);
        }
        if let Some(t) = row_time {
            flush(&mut w, t, &cells).map_err(werr)?;
            summary.rows += 1;
        }
    }
    w.flush().map_err(|e| ExportError::Write {
        target: target.to_string(),
        source: e,
    })?;
    Ok(summary)
}

/// Whether `path` is where an export may go without clobbering its input.
pub fn is_input(out: &Path, files: &[PathBuf]) -> bool {
    files.iter().any(|f| f == out)
}
