//! The `--record` flags of `twin run` and `twin demo`.

use std::time::Duration;

use super::{parse_duration, parse_size};

/// Where and how a live run records (`twin run` and `twin demo`).
#[derive(Debug, Clone, clap::Args)]
pub struct RecordArgs {
    /// Record every sample the twin receives and every event it writes to
    /// FILE.mcap (MCAP, opens in Foxglove; replay with `twin replay`).
    #[arg(long, value_name = "FILE.mcap")]
    pub record: Option<std::path::PathBuf>,
    /// How often the recording is made durable on disk: what a crash
    /// (kill -9, power cut) can lose at most.
    #[arg(long = "record-flush", value_name = "DURATION", default_value = "1s", value_parser = parse_flush, requires = "record")]
    pub flush: Duration,
    /// Start a new file after this much data (e.g. `512MiB`) or time (e.g.
    /// `1h`): FILE-0001.mcap, FILE-0002.mcap, ... and FILE.index.json,
    /// which `twin replay` reads as one recording.
    // Without --record these did nothing, silently: a usage error now.
    #[arg(long = "record-rotate", value_name = "SIZE|DURATION", value_parser = parse_rotate, requires = "record")]
    pub rotate: Option<Rotate>,
}

/// When a recording starts a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotate {
    Bytes(u64),
    Every(Duration),
}

fn parse_flush(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
        return Err("expected a flush interval from 100ms to 1h".to_string());
    }
    Ok(d)
}

fn parse_rotate(s: &str) -> Result<Rotate, String> {
    if s.ends_with('B') {
        let n = parse_size(s)?;
        if n < 1 << 20 {
            return Err("rotate after at least 1MiB".to_string());
        }
        return Ok(Rotate::Bytes(n as u64));
    }
    match parse_duration(s) {
        Ok(d) if d >= Duration::from_secs(1) => Ok(Rotate::Every(d)),
        Ok(_) => Err("rotate after at least 1s".to_string()),
        Err(_) => Err("expected a size such as 512MiB or a duration such as 1h".to_string()),
    }
}

impl RecordArgs {
    /// The recorder these flags ask for, if any.
    pub fn recorder(
        &self,
        cfg: &crate::config::LoadedConfig,
        origin: &'static str,
    ) -> Option<crate::sinks::recorder::Recorder> {
        let path = self.record.as_ref()?;
        let mut o = crate::sinks::recorder::RecorderOptions::new(path.clone());
        o.flush_every = self.flush;
        o.origin = origin;
        match self.rotate {
            Some(Rotate::Bytes(b)) => o.rotate_bytes = Some(b),
            Some(Rotate::Every(d)) => o.rotate_every = Some(d),
            None => {}
        }
        Some(crate::sinks::recorder::Recorder::new(cfg, o))
    }
}
