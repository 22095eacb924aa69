//! The virtual plant's device write log: every write request a device
//! received and what it answered, kept in memory and, with
//! `twin sim --write-log FILE`, appended to a JSONL file one line per
//! request as it is answered (docs/sim.md, "Write log"). It is the device's
//! own record, which the guard's audit log is checked against.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde_json::{Value as Json, json};
use tracing::warn;

use crate::twin::events::rfc3339;

/// One write request as the device saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteRecord {
    /// Wall time it was answered, ns since the Unix epoch.
    pub t_ns: i64,
    /// Sim time then, s (set by [`WriteLog::push`]).
    pub sim_t: f64,
    pub device: String,
    pub unit: u8,
    /// Modbus function code: 5, 6, 15 or 16.
    pub function: u8,
    pub address: u16,
    /// Raw values as sent: register words, or coils as 0/1.
    pub values: Vec<u16>,
    /// Tags of the setpoints written, with their engineering values
    /// (empty when refused before decoding).
    pub tags: Vec<(String, f64)>,
    /// Acknowledged (true) or answered with an exception.
    pub accepted: bool,
    /// Acknowledged and applied (false when an `ignore_writes` fault held).
    pub applied: bool,
    /// The exception code answered, if any.
    pub exception: Option<u8>,
}

impl WriteRecord {
    /// The record's JSONL line (keys in alphabetical order).
    pub fn to_json(&self) -> Json {
        json!({
            "t": rfc3339(self.t_ns),
            "sim_t": self.sim_t,
            "device": self.device,
            "unit": self.unit,
            "function": self.function,
            "address": self.address,
            "values": self.values,
            "tags": self.tags.iter().map(|(t, v)| json!({"tag": t, "value": v})).collect::<Vec<_>>(),
            "accepted": self.accepted,
            "applied": self.applied,
            "exception": self.exception,
        })
    }
}

#[derive(Default)]
struct Inner {
    records: Vec<WriteRecord>,
    file: Option<std::fs::File>,
    sim_ns: u64,
    failed: bool,
}

/// Shared by every device server of a run and the signal loop.
#[derive(Default)]
pub struct WriteLog {
    inner: Mutex<Inner>,
}

impl WriteLog {
    /// A log that also appends to `path` (created or truncated).
    pub fn to_file(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::create(path)?;
        Ok(WriteLog {
            inner: Mutex::new(Inner {
                file: Some(file),
                ..Inner::default()
            }),
        })
    }

    /// The sim time records are stamped with from now on.
    pub fn set_sim(&self, sim_ns: u64) {
        let mut i = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        i.sim_ns = sim_ns;
    }

    /// The sim time now, s.
    pub fn sim_t(&self) -> f64 {
        let i = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        i.sim_ns as f64 / 1e9
    }

    /// Appends a record. The file gets the whole line in one write, before
    /// the device's answer leaves, so a crash of the writer cannot find a
    /// write acknowledged and not logged.
    pub fn push(&self, mut r: WriteRecord) {
        let mut i = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        r.sim_t = i.sim_ns as f64 / 1e9;
        if let Some(f) = i.file.as_mut() {
            let line = format!("{}\n", r.to_json());
            if let Err(e) = f.write_all(line.as_bytes()) {
                if !i.failed {
                    warn!(error = %e, "Cannot write the device write log; writes are still served.");
                }
                i.failed = true;
            }
        }
        i.records.push(r);
    }

    /// Every record so far, in order.
    pub fn records(&self) -> Vec<WriteRecord> {
        let i = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        i.records.clone()
    }
}
