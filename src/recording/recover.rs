//! `twin recover`: a clean copy of a recording file that a crash cut off.
//!
//! A file the recorder did not close has no summary (indexes, statistics)
//! and may end in half a chunk. Every whole chunk before that still reads
//! (the recorder flushes whole chunks, see `writer`), so the copy holds
//! everything up to the last flush, closed and indexed like any other file.

use std::path::{Path, PathBuf};

use super::RecordingError;
use super::reader::{CutOff, Item, RecordingReader};
use super::writer::RecordingWriter;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub samples: u64,
    pub events: u64,
    /// The last tick the copy reaches.
    pub last_tick: u64,
    /// Where the input ended early; `None` if it was whole.
    pub cut_off: Option<CutOff>,
}

/// `shift.mcap` → `shift.recovered.mcap`.
pub fn default_output(input: &Path) -> PathBuf {
    input.with_extension("recovered.mcap")
}

pub fn recover(input: &Path, output: &Path) -> Result<Recovered, RecordingError> {
    let same = input == output
        || matches!(
            (std::fs::canonicalize(input), std::fs::canonicalize(output)),
            (Ok(a), Ok(b)) if a == b
        );
    if same {
        return Err(RecordingError::invalid(
            output,
            "the copy must go to another file than the one it recovers",
        ));
    }
    let mut reader = RecordingReader::open(&[input.to_path_buf()])?;
    let info = reader.info().clone();
    let mut out =
        RecordingWriter::create(output, &info, reader.config_text(), reader.model_files())?;
    let mut r = Recovered {
        samples: 0,
        events: 0,
        last_tick: info.first_tick,
        cut_off: None,
    };
    // The tick of the last message read: a file cut off between flushes has
    // samples and events past its last tick mark, and a replay of the copy
    // should run as far as they go.
    let mut seen_tick = info.first_tick;
    let mut last_event_t = None;
    while let Some(item) = reader.next_item() {
        match item? {
            Item::Sample { tick, record } => {
                seen_tick = seen_tick.max(tick);
                r.samples += 1;
                out.write_sample(tick, &record)?;
            }
            Item::Event { t_ns, line } => {
                r.events += 1;
                last_event_t = Some(t_ns);
                let mut l = line;
                l.push(b'\n');
                out.write_events(t_ns, &l)?;
            }
            Item::Tick(t) => {
                seen_tick = seen_tick.max(t.tick);
                out.write_tick(t.tick, t.t_ns)?;
            }
            Item::Guard { t_ns, record } => {
                seen_tick = seen_tick.max(record.tick);
                let data = serde_json::to_vec(&record)
                    .map_err(|e| RecordingError::invalid(input, format!("a guard input: {e}")))?;
                out.write_guard_input(t_ns, &data)?;
            }
        }
    }
    if let Some(t) = last_event_t {
        let d = t.saturating_sub(info.epoch_ns);
        if d > 0 {
            seen_tick = seen_tick.max(u64::try_from(d / info.tick_ns).unwrap_or(0));
        }
    }
    out.write_tick(seen_tick, info.time_of(seen_tick))?;
    r.last_tick = seen_tick;
    r.cut_off = reader.cut_off().first().cloned();
    out.finish()?;
    Ok(r)
}
