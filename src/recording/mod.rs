//! Recordings: what a run pushed into the core, and what the core said, in
//! MCAP files (docs/recordings.md).
//!
//! Data flow: the recorder sink (`sinks::recorder`) writes one through
//! [`RecordingWriter`] while a run goes on, `twin import` writes one from
//! foreign data, and `twin replay` reads one back with [`RecordingReader`]
//! and pushes its samples into a fresh core, tick for tick. This module is
//! the format both ends share: channel names, schemas, metadata, and the
//! rotation index that makes a set of files one recording.

pub mod export;
pub mod format;
pub mod import;
pub mod index;
pub mod proto;
pub mod reader;
pub mod recover;
pub mod writer;

#[cfg(test)]
mod tests;

pub use format::RecordingInfo;
pub use reader::{Item, RecordingReader};
pub use writer::RecordingWriter;

use std::path::PathBuf;

/// What can go wrong with a recording file.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid MCAP file: {detail}")]
    Mcap { path: PathBuf, detail: String },
    #[error(
        "{path}: not a twin recording (no `{}` metadata); bring foreign data in with `twin import`",
        format::METADATA_NAME
    )]
    NotTwin { path: PathBuf },
    #[error("{path}: {detail}")]
    Invalid { path: PathBuf, detail: String },
    #[error(
        "{path}: recording format {found} is newer than this twin reads ({}); use a newer twin",
        format::FORMAT_VERSION
    )]
    TooNew { path: PathBuf, found: u32 },
    #[error("{path}: {detail}; the files do not continue one recording")]
    NotContinuous { path: PathBuf, detail: String },
}

impl RecordingError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        RecordingError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn mcap(path: &std::path::Path, e: mcap::McapError) -> Self {
        match e {
            mcap::McapError::Io(source) => RecordingError::io(path, source),
            e => RecordingError::Mcap {
                path: path.to_path_buf(),
                detail: e.to_string(),
            },
        }
    }

    pub(crate) fn invalid(path: &std::path::Path, detail: impl Into<String>) -> Self {
        RecordingError::Invalid {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}
