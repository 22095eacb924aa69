//! `twin import`: foreign data (CSV, JSON lines) into a recording, so that
//! a historian export or a lab's spreadsheet replays through the twin like
//! a recorded run (docs/import.md).
//!
//! The data is read whole ([`rows`]), each cell becomes a sample of a tag
//! (wide: a column per tag; long: a tag column and a value column), and the
//! samples are sorted by time (stable, so equal times keep file order:
//! exports are often sorted by tag, not by time) before they are written.
//! Sorting holds every sample in memory, about 100 bytes each.
//!
//! Each sample is good, with source time = receive time = the row's time,
//! and is pushed after the tick before the one at or after its time, which
//! is the tick a live run would have applied it on.

pub mod rows;
pub mod starter;
pub mod time;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use self::rows::{Cell, Field, Row, Rows};
use self::time::TimeUnit;
use super::RecordingError;
use super::format::{self, FORMAT_VERSION, RecordingInfo};
use super::writer::RecordingWriter;
use crate::config::{LoadedConfig, RecordedType, diagnostics::did_you_mean};
use crate::twin::record::{RecordValue, SampleRecord};
use crate::twin::{Quality, TickClock};

/// How many bad rows a summary keeps to show.
pub const SHOWN_BAD_ROWS: usize = 5;

/// Wide (a column per tag) or long (tag and value columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Wide,
    Long,
}

impl Layout {
    pub fn parse(s: &str) -> Result<Layout, String> {
        match s {
            "wide" => Ok(Layout::Wide),
            "long" => Ok(Layout::Long),
            _ => Err("expected `wide` or `long`".into()),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// None: long if there are `tag` and `value` columns, else wide.
    pub layout: Option<Layout>,
    /// None: the first column named time, timestamp, ts, datetime or date.
    pub time_column: Option<String>,
    /// None: guessed from the first time value's magnitude.
    pub time_unit: Option<TimeUnit>,
    /// Rows at this spacing, from `start_ns`, instead of a time column.
    pub period: Option<Duration>,
    pub start_ns: Option<i64>,
    /// Column (or long tag) → tag; an empty tag drops the column.
    pub maps: Vec<(String, String)>,
    pub skip_bad: bool,
    /// The starter config's tick (the config's own tick otherwise).
    pub tick: Option<Duration>,
    /// The starter config's plant name.
    pub plant: Option<String>,
}

/// A row that cannot be imported, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub path: PathBuf,
    /// 1-based line of the file.
    pub row: u64,
    /// 1-based column (CSV field, or character on a JSON line); 0 for the
    /// row as a whole.
    pub col: usize,
    /// The column's name, if one is at fault.
    pub column: String,
    pub detail: String,
}

impl fmt::Display for BadRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.row)?;
        if self.col > 0 {
            write!(f, ":{}", self.col)?;
        }
        if !self.column.is_empty() {
            write!(f, ": column {:?}", self.column)?;
        }
        write!(f, ": {}", self.detail)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Setup { path: PathBuf, detail: String },
    #[error("{0} (use --skip-bad to skip such rows)")]
    Bad(Box<BadRow>),
    #[error(transparent)]
    Recording(#[from] RecordingError),
    #[error("the starter config does not pass its own check (a bug in twin import):\n{0}")]
    Starter(String),
}

impl ImportError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        ImportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn setup(path: &Path, detail: impl Into<String>) -> Self {
        ImportError::Setup {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    pub layout: Layout,
    /// The epoch unit the time column was read in (None for ISO text or
    /// --period).
    pub time_unit: Option<TimeUnit>,
    pub rows: u64,
    pub samples: u64,
    pub bad_rows: u64,
    /// The first [`SHOWN_BAD_ROWS`] bad rows, in file order.
    pub first_bad: Vec<BadRow>,
    /// Each imported column (or long tag) and the tag it went to.
    pub tags: Vec<(String, String)>,
    /// The config written into the recording (the starter config, without
    /// --config).
    pub config_text: String,
    pub first_ns: i64,
    pub last_ns: i64,
    /// The tick that applies the last sample; the replay runs to it.
    pub last_tick: u64,
}

/// One cell on its way to a sample.
struct Raw {
    t_ns: i64,
    row: u64,
    col: usize,
    /// Index into the names seen (columns or long tags).
    key: u32,
    cell: Cell,
}

const TIME_NAMES: &[&str] = &[
    "time",
    "timestamp",
    "ts",
    "datetime",
    "date_time",
    "date",
    "t",
];

/// Import `input` into the recording `out`. With `config`, columns map onto
/// its tags; without, a starter config is made whose tags are the columns
/// ([`ImportSummary::config_text`]). Nothing is left at `out` on an error.
pub fn import(
    input: &Path,
    out: &Path,
    config: Option<&LoadedConfig>,
    opts: &ImportOptions,
) -> Result<ImportSummary, ImportError> {
    let mut rows = Rows::open(input)?;
    let mut first: Option<Row> = None;
    let mut bad: Vec<BadRow> = Vec::new();
    let mut bad_count = 0u64;
    let mut bad_rows: BTreeSet<u64> = BTreeSet::new();
    let mut note_bad = |b: BadRow, bad: &mut Vec<BadRow>| {
        if bad_rows.insert(b.row) {
            bad_count += 1;
        }
        bad.push(b);
        // Keep the earliest few: rows come in file order per phase.
        bad.sort_by_key(|b| (b.row, b.col));
        bad.dedup_by_key(|b| b.row);
        bad.truncate(SHOWN_BAD_ROWS);
    };
    // The first readable row decides the layout and columns of a JSON
    // lines file (which has no header).
    let mut pending = Vec::new();
    while first.is_none() {
        match rows.next_row() {
            None => break,
            Some(Ok(r)) => first = Some(r),
            Some(Err(Ok(b))) => pending.push(b),
            Some(Err(Err(e))) => return Err(e),
        }
    }
    for b in pending {
        note_bad(b, &mut bad);
    }
    let names: Vec<String> = match (rows.header(), &first) {
        (Some(h), _) => h.to_vec(),
        (None, Some(r)) => r.fields.iter().map(|f| f.name.clone()).collect(),
        (None, None) => Vec::new(),
    };
    let has = |n: &str| names.iter().any(|c| c == n);
    let layout = opts.layout.unwrap_or(if has("tag") && has("value") {
        Layout::Long
    } else {
        Layout::Wide
    });
    if layout == Layout::Long && !(has("tag") && has("value")) {
        return Err(ImportError::setup(
            input,
            format!(
                "the long layout needs a `tag` and a `value` column; the columns are {}",
                names.join(", ")
            ),
        ));
    }
    let time_col: Option<String> = match (&opts.time_column, opts.period) {
        (Some(c), _) => {
            if !has(c) {
                return Err(ImportError::setup(
                    input,
                    format!("there is no time column {c:?}")
                        + &did_you_mean(c, names.iter().map(String::as_str))
                            .map_or_else(String::new, |g| format!("; {g}")),
                ));
            }
            Some(c.clone())
        }
        (None, Some(_)) => None,
        (None, None) => Some(
            names
                .iter()
                .find(|c| TIME_NAMES.contains(&c.to_ascii_lowercase().as_str()))
                .cloned()
                .ok_or_else(|| {
                    ImportError::setup(
                        input,
                        format!(
                            "no time column (looked for {}); name it with --time-column, or give --period for rows at a fixed spacing",
                            TIME_NAMES.join(", ")
                        ),
                    )
                })?,
        ),
    };
    if opts.period.is_some() && layout == Layout::Long {
        return Err(ImportError::setup(
            input,
            "--period spaces rows evenly, which only means something in the wide layout (one row per time)",
        ));
    }

    // Phase 1: every non-empty cell, with its time.
    let mut keys: HashMap<String, u32> = HashMap::new();
    let mut key_names: Vec<String> = Vec::new();
    let mut intern = |name: &str| -> u32 {
        if let Some(&k) = keys.get(name) {
            return k;
        }
        let k = key_names.len() as u32;
        keys.insert(name.to_string(), k);
        key_names.push(name.to_string());
        k
    };
    let mut raws: Vec<Raw> = Vec::new();
    let mut unit = opts.time_unit;
    let mut n_rows = 0u64;
    let period_ns = opts
        .period
        .map(|p| i64::try_from(p.as_nanos()).unwrap_or(i64::MAX));
    let start_ns = opts.start_ns.unwrap_or(0);
    let mut next = first;
    loop {
        let row = match next.take() {
            Some(r) => r,
            None => match rows.next_row() {
                None => break,
                Some(Ok(r)) => r,
                Some(Err(Ok(b))) => {
                    n_rows += 1;
                    note_bad(b, &mut bad);
                    continue;
                }
                Some(Err(Err(e))) => return Err(e),
            },
        };
        let index = n_rows;
        n_rows += 1;
        let bad_cell = |f: &Field, detail: String| BadRow {
            path: input.to_path_buf(),
            row: row.row,
            col: f.col,
            column: f.name.clone(),
            detail,
        };
        let t_ns = match (&time_col, period_ns) {
            (Some(c), _) => match row.get(c) {
                Some(f) => match row_time(&f.cell, &mut unit) {
                    Ok(t) => t,
                    Err(d) => {
                        note_bad(bad_cell(f, d), &mut bad);
                        continue;
                    }
                },
                None => {
                    note_bad(
                        BadRow {
                            path: input.to_path_buf(),
                            row: row.row,
                            col: 0,
                            column: c.clone(),
                            detail: "the row has no time".into(),
                        },
                        &mut bad,
                    );
                    continue;
                }
            },
            (None, Some(p)) => {
                start_ns.saturating_add(p.saturating_mul(i64::try_from(index).unwrap_or(i64::MAX)))
            }
            (None, None) => 0,
        };
        match layout {
            Layout::Wide => {
                for f in row.fields {
                    if Some(&f.name) == time_col.as_ref() || f.cell.is_empty() {
                        continue;
                    }
                    raws.push(Raw {
                        t_ns,
                        row: row.row,
                        col: f.col,
                        key: intern(&f.name),
                        cell: f.cell,
                    });
                }
            }
            Layout::Long => {
                let tag = row.get("tag").filter(|f| !f.cell.is_empty());
                let value = row.get("value").filter(|f| !f.cell.is_empty());
                let (Some(tag), Some(value)) = (tag, value) else {
                    // A long row without a value holds no sample; one without
                    // a tag cannot be placed.
                    if let (None, Some(v)) = (tag, value) {
                        let f = row.get("tag").unwrap_or(v);
                        note_bad(
                            bad_cell(f, "the row has a value but no tag".into()),
                            &mut bad,
                        );
                    }
                    continue;
                };
                let name = match &tag.cell {
                    Cell::Text(t) => t.trim().to_string(),
                    Cell::Json(serde_json::Value::String(s)) => s.clone(),
                    Cell::Json(v) => v.to_string(),
                };
                raws.push(Raw {
                    t_ns,
                    row: row.row,
                    col: value.col,
                    key: intern(&name),
                    cell: value.cell.clone(),
                });
            }
        }
    }

    let targets = resolve_targets(input, config, &opts.maps, &key_names)?;

    // Types: the config's, or what every cell of a column reads as.
    let mut votes = vec![Votes::default(); key_names.len()];
    if config.is_none() {
        for r in &raws {
            votes[r.key as usize].add(&r.cell);
        }
    }
    let types: Vec<RecordedType> = targets
        .iter()
        .zip(&votes)
        .map(|(t, v)| match (config, t) {
            (Some(cfg), Some(t)) => cfg
                .tags
                .id(t)
                .map_or(RecordedType::Number, |id| cfg.value_type(id)),
            _ => v.decide(),
        })
        .collect();

    // Phase 2: cells → samples.
    let mut samples: Vec<(u64, SampleRecord)> = Vec::with_capacity(raws.len());
    for r in raws {
        let Some(tag) = &targets[r.key as usize] else {
            continue;
        };
        let ty = types[r.key as usize];
        match cell_value(&r.cell, ty) {
            Some(value) => samples.push((
                r.row,
                SampleRecord {
                    tag: tag.as_str().into(),
                    value: Some(value),
                    quality: Quality::Good,
                    reason: None,
                    source_time_ns: r.t_ns,
                    recv_time_ns: r.t_ns,
                },
            )),
            None => {
                let column = match layout {
                    Layout::Wide => key_names[r.key as usize].clone(),
                    Layout::Long => "value".into(),
                };
                let for_tag = match layout {
                    Layout::Wide => String::new(),
                    Layout::Long => format!(" (tag {tag:?})"),
                };
                note_bad(
                    BadRow {
                        path: input.to_path_buf(),
                        row: r.row,
                        col: r.col,
                        column,
                        detail: format!(
                            "expected {}{for_tag}, found {}",
                            expected(ty),
                            r.cell.shown()
                        ),
                    },
                    &mut bad,
                );
            }
        }
    }
    if bad_count > 0 && !opts.skip_bad {
        return Err(ImportError::Bad(Box::new(bad.swap_remove(0))));
    }
    if bad_count > 0 {
        samples.retain(|(row, _)| !bad_rows.contains(row));
    }
    if samples.is_empty() {
        return Err(ImportError::setup(
            input,
            "no samples to import: every cell is empty, dropped or bad",
        ));
    }
    samples.sort_by_key(|(_, s)| s.recv_time_ns);

    let first_ns = samples[0].1.recv_time_ns;
    let last_ns = samples[samples.len() - 1].1.recv_time_ns;
    let mapped: Vec<(String, String, RecordedType)> = key_names
        .iter()
        .zip(&targets)
        .zip(&types)
        .filter_map(|((n, t), ty)| t.as_ref().map(|t| (n.clone(), t.clone(), *ty)))
        .collect();
    let (config_text, plant, config_path, tick) = match config {
        Some(cfg) => (
            cfg.file.text.clone(),
            cfg.config.plant.name.clone(),
            cfg.file.path.display().to_string(),
            cfg.config.plant.tick,
        ),
        None => {
            let tick = opts.tick.unwrap_or(Duration::from_millis(100));
            let plant = opts.plant.clone().unwrap_or_else(|| {
                starter::tag_name(
                    &input
                        .file_stem()
                        .map_or_else(|| "imported".into(), |s| s.to_string_lossy().into_owned()),
                )
            });
            let tags: Vec<(&str, RecordedType)> =
                mapped.iter().map(|(_, t, ty)| (t.as_str(), *ty)).collect();
            let stale = starter::stale_after(samples.iter().map(|(_, s)| s));
            let text = starter::config_text(&plant, input, tick, stale, &tags);
            if let Err(report) = crate::config::load_str(Path::new("starter.toml"), &text) {
                return Err(ImportError::Starter(report.to_string()));
            }
            (
                text,
                plant,
                "(starter config from twin import)".to_string(),
                tick,
            )
        }
    };

    let tick_ns = i64::try_from(tick.as_nanos()).unwrap_or(i64::MAX).max(1);
    // Tick 1 is at or just before the first row, so the first sample is
    // pushed after tick 0 and every one is pushed after a tick before its
    // time: the driver's receive-time clamp never moves one.
    let epoch_ns = TickClock::new(first_ns, tick)
        .time_of(0)
        .saturating_sub(tick_ns);
    let tick_at_or_after = |t: i64| -> u64 {
        let d = t.saturating_sub(epoch_ns);
        u64::try_from((d + tick_ns - 1) / tick_ns).unwrap_or(0)
    };
    let info = RecordingInfo {
        format_version: FORMAT_VERSION,
        twin_version: env!("CARGO_PKG_VERSION").to_string(),
        plant,
        config_path,
        config_hash: format::config_hash(&config_text),
        tick_ns,
        epoch_ns,
        started_at: time::format_rfc3339(first_ns),
        part: 1,
        first_tick: 0,
        origin: "import".into(),
        models: Vec::new(),
    };
    let last_tick = tick_at_or_after(last_ns);
    let partial = partial_path(out);
    let written = (|| -> Result<(), RecordingError> {
        let mut w = RecordingWriter::create(&partial, &info, &config_text, &[])?;
        for (_, s) in &samples {
            w.write_sample(tick_at_or_after(s.recv_time_ns).saturating_sub(1), s)?;
        }
        w.write_tick(last_tick, info.time_of(last_tick))?;
        w.finish()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&partial);
        return Err(e.into());
    }
    if let Err(e) = std::fs::rename(&partial, out) {
        let _ = std::fs::remove_file(&partial);
        return Err(ImportError::io(out, e));
    }
    Ok(ImportSummary {
        layout,
        time_unit: unit,
        rows: n_rows,
        samples: samples.len() as u64,
        bad_rows: bad_count,
        first_bad: bad,
        tags: mapped.into_iter().map(|(n, t, _)| (n, t)).collect(),
        config_text,
        first_ns,
        last_ns,
        last_tick,
    })
}

/// The tag each name (column, or long tag value) goes to, None where
/// `--map NAME=` drops it: the map's, else the config's tag of that name
/// (which must exist), else the name made a tag name (starter config).
fn resolve_targets(
    input: &Path,
    config: Option<&LoadedConfig>,
    map: &[(String, String)],
    key_names: &[String],
) -> Result<Vec<Option<String>>, ImportError> {
    let maps: HashMap<&str, &str> = map.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    for (m, _) in map {
        if !key_names.iter().any(|k| k == m) {
            return Err(ImportError::setup(
                input,
                format!("--map names {m:?}, which the data does not have")
                    + &did_you_mean(m, key_names.iter().map(String::as_str))
                        .map_or_else(String::new, |g| format!("; {g}")),
            ));
        }
    }
    // Per key: the tag it goes to (None: dropped).
    let mut targets: Vec<Option<String>> = Vec::with_capacity(key_names.len());
    let mut unknown = Vec::new();
    for name in key_names {
        let tag = match maps.get(name.as_str()) {
            Some(&"") => None,
            Some(t) => Some((*t).to_string()),
            None => Some(match config {
                Some(_) => name.clone(),
                None => starter::tag_name(name),
            }),
        };
        if let (Some(cfg), Some(t)) = (config, &tag)
            && cfg.tags.id(t).is_none()
        {
            let guess = did_you_mean(t, cfg.tags.iter().map(|d| d.name.as_str()));
            unknown.push(format!(
                "{name:?}{}{}",
                if t == name {
                    String::new()
                } else {
                    format!(" (mapped to {t:?})")
                },
                guess.map_or_else(String::new, |g| format!(": {g}"))
            ));
        }
        targets.push(tag);
    }
    if !unknown.is_empty() {
        return Err(ImportError::setup(
            input,
            format!(
                "the config has no tag for {}; map a column onto a tag with --map COLUMN=TAG, or drop it with --map COLUMN=",
                unknown.join(", ")
            ),
        ));
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (name, tag) in key_names.iter().zip(&targets) {
        if let Some(t) = tag
            && let Some(other) = seen.insert(t, name)
        {
            return Err(ImportError::setup(
                input,
                format!(
                    "{other:?} and {name:?} both go to tag {t:?}; map one elsewhere with --map COLUMN=TAG"
                ),
            ));
        }
    }
    Ok(targets)
}

/// Where the recording is written until it is whole, beside `out` so the
/// rename stays on one file system.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

/// A row's time: ISO 8601 text, or an epoch number in `unit` (guessed from
/// the first one when not given, then kept for the file).
fn row_time(cell: &Cell, unit: &mut Option<TimeUnit>) -> Result<i64, String> {
    let expected =
        "expected a time: ISO 8601 (2026-12-04T10:00:00Z) or epoch seconds or milliseconds";
    let mut epoch = |v: f64, int: Option<i64>| -> Result<i64, String> {
        let u = *unit.get_or_insert_with(|| TimeUnit::guess(v));
        int.and_then(|i| time::epoch_ns_int(i, u))
            .or_else(|| time::epoch_ns(v, u))
            .ok_or_else(|| format!("the time {v} {} is out of range", u.name()))
    };
    match cell {
        Cell::Text(t) => {
            let t = t.trim();
            if t.is_empty() {
                return Err("the time is empty".into());
            }
            if let Ok(i) = t.parse::<i64>() {
                return epoch(i as f64, Some(i));
            }
            if let Ok(v) = t.parse::<f64>()
                && v.is_finite()
            {
                return epoch(v, None);
            }
            time::parse_iso(t).ok_or_else(|| format!("{expected}, found {t:?}"))
        }
        Cell::Json(serde_json::Value::Number(n)) => match (n.as_i64(), n.as_f64()) {
            (i, Some(v)) => epoch(v, i),
            _ => Err(format!("{expected}, found {n}")),
        },
        Cell::Json(serde_json::Value::String(s)) => row_time(&Cell::Text(s.clone()), unit),
        Cell::Json(v) => Err(format!("{expected}, found {v}")),
    }
}

fn expected(ty: RecordedType) -> &'static str {
    match ty {
        RecordedType::Number => "a number",
        RecordedType::Bool => "a boolean (true/false, 1/0, on/off, yes/no)",
        RecordedType::Text => "text",
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "on" | "yes" => Some(true),
        "false" | "0" | "off" | "no" => Some(false),
        _ => None,
    }
}

fn parse_num(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok()
}

/// A cell as a value of type `ty`; None if it is not one.
fn cell_value(cell: &Cell, ty: RecordedType) -> Option<RecordValue> {
    use serde_json::Value as J;
    match (ty, cell) {
        (RecordedType::Number, Cell::Text(t)) => parse_num(t).map(RecordValue::Num),
        (RecordedType::Number, Cell::Json(J::Number(n))) => n.as_f64().map(RecordValue::Num),
        (RecordedType::Number, Cell::Json(J::String(s))) => parse_num(s).map(RecordValue::Num),
        (RecordedType::Bool, Cell::Text(t)) => parse_bool(t).map(RecordValue::Bool),
        (RecordedType::Bool, Cell::Json(J::Bool(b))) => Some(RecordValue::Bool(*b)),
        (RecordedType::Bool, Cell::Json(J::Number(n))) => match n.as_u64() {
            Some(0) => Some(RecordValue::Bool(false)),
            Some(1) => Some(RecordValue::Bool(true)),
            _ => None,
        },
        (RecordedType::Bool, Cell::Json(J::String(s))) => parse_bool(s).map(RecordValue::Bool),
        (RecordedType::Text, Cell::Text(t)) => Some(RecordValue::Text(t.clone())),
        (RecordedType::Text, Cell::Json(J::String(s))) => Some(RecordValue::Text(s.clone())),
        (RecordedType::Text, Cell::Json(v @ (J::Number(_) | J::Bool(_)))) => {
            Some(RecordValue::Text(v.to_string()))
        }
        _ => None,
    }
}

/// The type most cells of a column read as: number if more than half are
/// numbers, else bool if more than half are `true`/`false` (words only: a
/// column of 0 and 1 is a number), else text. A majority, not unanimity, so
/// a stray word in a numeric column is a bad row, not a text column.
#[cfg(test)]
fn infer_type<'a>(cells: impl Iterator<Item = &'a Cell>) -> RecordedType {
    let mut v = Votes::default();
    cells.for_each(|c| v.add(c));
    v.decide()
}

/// Counts toward [`infer_type`], one per column, in one pass over the cells.
#[derive(Debug, Clone, Copy, Default)]
struct Votes {
    cells: usize,
    nums: usize,
    bools: usize,
}

impl Votes {
    fn add(&mut self, c: &Cell) {
        use serde_json::Value as J;
        let is_bool_word =
            |t: &str| matches!(t.trim().to_ascii_lowercase().as_str(), "true" | "false");
        self.cells += 1;
        match c {
            Cell::Text(t) | Cell::Json(J::String(t)) => {
                self.nums += usize::from(parse_num(t).is_some());
                self.bools += usize::from(is_bool_word(t));
            }
            Cell::Json(J::Number(_)) => self.nums += 1,
            Cell::Json(J::Bool(_)) => self.bools += 1,
            Cell::Json(_) => {}
        }
    }

    fn decide(self) -> RecordedType {
        if self.nums * 2 > self.cells {
            RecordedType::Number
        } else if self.bools * 2 > self.cells {
            RecordedType::Bool
        } else {
            RecordedType::Text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_read_per_type_and_columns_infer_theirs() {
        let t = |s: &str| Cell::Text(s.into());
        assert_eq!(
            cell_value(&t(" 1.5 "), RecordedType::Number),
            Some(RecordValue::Num(1.5))
        );
        assert_eq!(
            cell_value(&t("on"), RecordedType::Bool),
            Some(RecordValue::Bool(true))
        );
        assert_eq!(cell_value(&t("abc"), RecordedType::Number), None);
        assert_eq!(cell_value(&t("2"), RecordedType::Bool), None);
        let nums = [t("1"), t("2.5")];
        assert_eq!(infer_type(nums.iter()), RecordedType::Number);
        let bools = [t("true"), t("FALSE")];
        assert_eq!(infer_type(bools.iter()), RecordedType::Bool);
        let text = [t("B-17"), t("1"), t("B-18")];
        assert_eq!(infer_type(text.iter()), RecordedType::Text);
        let mostly = [t("1"), t("fast"), t("3")];
        assert_eq!(infer_type(mostly.iter()), RecordedType::Number);
    }

    #[test]
    fn a_bad_row_names_file_row_and_column() {
        let b = BadRow {
            path: "d.csv".into(),
            row: 4,
            col: 3,
            column: "speed".into(),
            detail: "expected a number, found \"x\"".into(),
        };
        assert_eq!(
            b.to_string(),
            "d.csv:4:3: column \"speed\": expected a number, found \"x\""
        );
    }
}
