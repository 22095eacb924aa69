//! Reading an audit log back: the whole-chain check (`twin audit verify`)
//! and queries (`twin audit FILE --tag …`), one line at a time, so a year's
//! log reads in constant memory.
//!
//! Every read checks the chain as it goes: a query never prints entries
//! past a broken line as if they were sound. Readers take no lock, so they
//! can run while the guard appends; a line the writer is still writing
//! shows as a torn tail and is left out.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use super::entry::{self, Actor, Decision, Entry, GENESIS, MAX_LINE, Number, Problem};
use super::{AuditError, sha256_hex};

/// Reads a log's entries in order, checking each line's hash, seq and link.
pub struct AuditReader<R> {
    inner: R,
    path: PathBuf,
    /// Lines read so far.
    line: u64,
    seq: u64,
    prev: String,
    buf: Vec<u8>,
    torn: u64,
    done: bool,
}

impl AuditReader<BufReader<File>> {
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let file = File::open(path).map_err(|e| AuditError::io(path, e))?;
        Ok(AuditReader::new(
            BufReader::with_capacity(256 << 10, file),
            path,
        ))
    }
}

impl<R: BufRead> AuditReader<R> {
    /// `path` names the log in errors.
    pub fn new(inner: R, path: &Path) -> Self {
        AuditReader {
            inner,
            path: path.to_path_buf(),
            line: 0,
            seq: 0,
            prev: GENESIS.to_string(),
            buf: Vec::new(),
            torn: 0,
            done: false,
        }
    }

    /// The next entry, checked; `None` at the end.
    pub fn next_entry(&mut self) -> Result<Option<Entry>, AuditError> {
        if self.done {
            return Ok(None);
        }
        self.buf.clear();
        let limit = MAX_LINE as u64 + 1;
        let n = (&mut self.inner)
            .take(limit)
            .read_until(b'\n', &mut self.buf)
            .map_err(|e| AuditError::io(&self.path, e))?;
        if n == 0 {
            self.done = true;
            return Ok(None);
        }
        self.line += 1;
        if self.buf.last() != Some(&b'\n') {
            self.done = true;
            if self.buf.len() as u64 == limit {
                return Err(self.broken(
                    None,
                    Problem::Unparsable(format!("a line longer than {MAX_LINE} bytes")),
                ));
            }
            if !entry::plausible_torn(&self.buf) {
                return Err(self.broken(
                    None,
                    Problem::Unparsable(format!(
                        "the last {} bytes have no newline and are not the start of an entry",
                        self.buf.len()
                    )),
                ));
            }
            // An append a crash cut off, or one still being written.
            self.torn = self.buf.len() as u64;
            return Ok(None);
        }
        let text = &self.buf[..self.buf.len() - 1];
        match entry::check_line(text, self.seq, &self.prev) {
            Ok(e) => {
                self.seq = e.seq;
                self.prev = sha256_hex(text);
                Ok(Some(e))
            }
            Err(p) => {
                self.done = true;
                let seq = super::seq_of(text);
                Err(self.broken(seq, p))
            }
        }
    }

    /// The bytes of the last entry read, without the newline: exactly as the
    /// file holds them (so a query's JSONL output still verifies line by
    /// line).
    pub fn line_bytes(&self) -> &[u8] {
        self.buf.strip_suffix(b"\n").unwrap_or(&self.buf)
    }

    /// Bytes after the last newline, once the end is reached: a torn
    /// append (a crash, or an append in progress).
    pub fn torn_bytes(&self) -> u64 {
        self.torn
    }

    /// The SHA-256 of the last entry's line.
    pub fn head(&self) -> &str {
        &self.prev
    }

    fn broken(&self, seq: Option<u64>, problem: Problem) -> AuditError {
        AuditError::Broken {
            path: self.path.clone(),
            line: self.line,
            seq,
            problem,
        }
    }
}

/// What a whole-chain check found.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    pub entries: u64,
    /// The last entry, if there is one.
    pub last: Option<Entry>,
    /// The SHA-256 of the last entry's line (the chain's head).
    pub head: String,
    /// Bytes of a torn last line (not an error: open cuts them off).
    pub torn_bytes: u64,
}

impl VerifyReport {
    /// The one-line summary `twin audit verify` prints.
    pub fn summary(&self) -> String {
        let mut s = format!("{} entries, chain intact", self.entries);
        if let Some(e) = &self.last {
            s.push_str(&format!(
                ", last seq {} at {}, head {}",
                e.seq, e.t, self.head
            ));
        }
        if self.torn_bytes > 0 {
            s.push_str(&format!(
                "; the last line is torn ({} bytes without a newline: an append cut off by a crash, or still being written), and the next open cuts it off",
                self.torn_bytes
            ));
        }
        s
    }
}

/// Check a whole log: every line's hash, seq and link to the line before.
/// The first line that fails is the error.
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    let mut r = AuditReader::open(path)?;
    let mut entries = 0;
    let mut last = None;
    while let Some(e) = r.next_entry()? {
        entries += 1;
        last = Some(e);
    }
    // An empty chain checks trivially; but twin never leaves a log without
    // its `opened` entry, so "0 entries, intact" would vouch for a file
    // that lost everything.
    if entries == 0 && r.torn_bytes() == 0 {
        return Err(AuditError::Broken {
            path: path.to_path_buf(),
            line: 1,
            seq: None,
            problem: Problem::Empty,
        });
    }
    Ok(VerifyReport {
        entries,
        last,
        head: r.head().to_string(),
        torn_bytes: r.torn_bytes(),
    })
}

/// Which entries a query keeps. Empty lists keep everything; within a list
/// any value matches (or), across fields all must (and).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub tags: Vec<String>,
    /// A model id or an operator name; `model:ID` or `operator:NAME` to say
    /// which; `system` for the twin's own entries.
    pub actors: Vec<String>,
    pub decisions: Vec<Decision>,
    /// Entries at or after this time (ns since the epoch).
    pub since_ns: Option<i64>,
    /// Entries before this time: `since`..`until` is half-open, so
    /// consecutive ranges never share an entry.
    pub until_ns: Option<i64>,
}

impl Filter {
    pub fn matches(&self, e: &Entry) -> bool {
        let tag = e.tag.as_deref().unwrap_or("");
        (self.tags.is_empty() || self.tags.iter().any(|t| t == tag))
            && (self.actors.is_empty() || self.actors.iter().any(|a| actor_matches(a, &e.actor)))
            && (self.decisions.is_empty() || self.decisions.contains(&e.decision))
            && self.since_ns.is_none_or(|s| e.t_ns >= s)
            && self.until_ns.is_none_or(|u| e.t_ns < u)
    }
}

fn actor_matches(wanted: &str, actor: &Actor) -> bool {
    match (wanted.split_once(':'), actor) {
        (Some(("model", id)), Actor::Model { id: a, .. }) => id == a,
        (Some(("operator", name)), Actor::Operator { name: a }) => name == a,
        (Some(("model" | "operator", _)), _) => false,
        _ => match actor {
            Actor::System => wanted == "system",
            a => a.name() == wanted,
        },
    }
}

/// The CSV export's columns.
pub fn csv_header() -> [&'static str; 16] {
    [
        "seq",
        "t",
        "actor_kind",
        "actor",
        "model_sha256",
        "tag",
        "decision",
        "rule",
        "reason",
        "old",
        "requested",
        "written",
        "inputs",
        "forecast",
        "prev",
        "hash",
    ]
}

/// One entry as a CSV row (the columns of [`csv_header`]): numbers as the
/// file spells them, inputs and forecast as compact JSON.
pub fn csv_row(e: &Entry) -> [String; 16] {
    let num = |n: &Option<Number>| {
        n.as_ref().map_or(String::new(), |n| {
            serde_json::to_value(n)
                .map(|v| match v {
                    serde_json::Value::String(s) => s,
                    v => v.to_string(),
                })
                .unwrap_or_default()
        })
    };
    let sha = match &e.actor {
        Actor::Model { sha256, .. } => sha256.clone(),
        _ => String::new(),
    };
    let inputs = serde_json::to_string(&e.inputs).unwrap_or_default();
    let forecast = e
        .forecast
        .as_ref()
        .map(|f| serde_json::to_string(f).unwrap_or_default())
        .unwrap_or_default();
    [
        e.seq.to_string(),
        e.t.clone(),
        e.actor.kind().to_string(),
        e.actor.name().to_string(),
        sha,
        e.tag.clone().unwrap_or_default(),
        e.decision.as_str().to_string(),
        e.rule.clone().unwrap_or_default(),
        e.reason.clone(),
        num(&e.old),
        num(&e.requested),
        num(&e.written),
        inputs,
        forecast,
        e.prev.clone(),
        e.hash.clone(),
    ]
}
