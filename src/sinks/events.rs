//! The JSONL event-stream sink (`--events PATH|-`).
//!
//! Lines are flushed after every tick that produced events, so a reader that
//! tails the file (or a pipe) sees each tick as soon as it happens.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

pub struct EventStream {
    out: Box<dyn Write + Send>,
    target: String,
    pub lines: u64,
}

impl EventStream {
    /// `-` is stdout; anything else is a file, created or truncated.
    pub fn open(target: &str) -> io::Result<Self> {
        let out: Box<dyn Write + Send> = if target == "-" {
            Box::new(BufWriter::new(io::stdout()))
        } else {
            let path = Path::new(target);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            Box::new(BufWriter::new(File::create(path)?))
        };
        Ok(EventStream {
            out,
            target: target.to_string(),
            lines: 0,
        })
    }

    /// An in-memory or custom writer (tests, embedding).
    pub fn from_writer(out: Box<dyn Write + Send>, target: &str) -> Self {
        EventStream {
            out,
            target: target.to_string(),
            lines: 0,
        }
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Write a batch of encoded lines and flush.
    pub fn write_batch(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.out.write_all(bytes)?;
        self.lines += bytes.iter().filter(|b| **b == b'\n').count() as u64;
        self.out.flush()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
