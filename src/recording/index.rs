//! The index of a rotated recording: which files, in which order.
//!
//! `--record shift.mcap --record-rotate 1h` writes `shift-0001.mcap`,
//! `shift-0002.mcap`, ... and `shift.index.json`, rewritten (atomically,
//! through a temporary file and a rename) every time a file is closed. The
//! files are complete recordings on their own; the index is what lets
//! `twin replay CONFIG shift.index.json` read them as one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RecordingError;

pub const INDEX_FORMAT: &str = "twin-recording-index";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingIndex {
    pub format: String,
    pub version: u32,
    pub parts: Vec<IndexPart>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexPart {
    /// The file's name, relative to the index's folder.
    pub file: String,
    pub first_tick: u64,
    /// The last tick the file holds; `null` while it is being written.
    pub last_tick: Option<u64>,
}

/// Whether `path` names an index rather than an MCAP file.
pub fn is_index(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

/// `shift.mcap` → `shift.index.json`.
pub fn index_path(base: &Path) -> PathBuf {
    base.with_extension("index.json")
}

/// `shift.mcap`, part 3 → `shift-0003.mcap`.
pub fn part_path(base: &Path, part: u32) -> PathBuf {
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "recording".to_string());
    base.with_file_name(format!("{stem}-{part:04}.mcap"))
}

impl RecordingIndex {
    pub fn new() -> Self {
        RecordingIndex {
            format: INDEX_FORMAT.to_string(),
            version: 1,
            parts: Vec::new(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, RecordingError> {
        let text = std::fs::read_to_string(path).map_err(|e| RecordingError::io(path, e))?;
        let index: RecordingIndex = serde_json::from_str(&text).map_err(|e| {
            RecordingError::invalid(
                path,
                format!(
                    "not a recording index: {e} (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        if index.format != INDEX_FORMAT || index.version != 1 {
            return Err(RecordingError::invalid(
                path,
                format!(
                    "not a recording index of version 1 (format {:?}, version {})",
                    index.format, index.version
                ),
            ));
        }
        if let Some(p) = index
            .parts
            .iter()
            .find(|p| p.file.contains('/') || p.file.contains('\\') || p.file.starts_with(".."))
        {
            return Err(RecordingError::invalid(
                path,
                format!("part {:?} is not a file name beside the index", p.file),
            ));
        }
        Ok(index)
    }

    /// The parts' paths, beside the index at `path`.
    pub fn files(&self, path: &Path) -> Vec<PathBuf> {
        let dir = path.parent().unwrap_or(Path::new(""));
        self.parts.iter().map(|p| dir.join(&p.file)).collect()
    }

    /// Write the index atomically: readers see the old one or the new one.
    pub fn save(&self, path: &Path) -> Result<(), RecordingError> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| RecordingError::invalid(path, e.to_string()))?;
        std::fs::write(&tmp, text + "\n").map_err(|e| RecordingError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| RecordingError::io(path, e))
    }
}

impl Default for RecordingIndex {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_and_index_are_named_after_the_recording() {
        let base = Path::new("rec/shift.mcap");
        assert_eq!(part_path(base, 3), Path::new("rec/shift-0003.mcap"));
        assert_eq!(index_path(base), Path::new("rec/shift.index.json"));
        assert!(is_index(&index_path(base)) && !is_index(base));
    }

    #[test]
    fn an_index_round_trips_and_refuses_paths_outside_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.index.json");
        let mut idx = RecordingIndex::new();
        idx.parts.push(IndexPart {
            file: "r-0001.mcap".into(),
            first_tick: 0,
            last_tick: Some(9),
        });
        idx.save(&p).unwrap();
        let back = RecordingIndex::load(&p).unwrap();
        assert_eq!(back, idx);
        assert_eq!(back.files(&p), vec![dir.path().join("r-0001.mcap")]);
        idx.parts[0].file = "../etc/passwd".into();
        idx.save(&p).unwrap();
        let e = RecordingIndex::load(&p).unwrap_err().to_string();
        assert!(e.contains("beside the index"), "{e}");
        std::fs::write(&p, "{").unwrap();
        let e = RecordingIndex::load(&p).unwrap_err().to_string();
        assert!(e.contains("r.index.json") && e.contains("line 1"), "{e}");
    }
}
