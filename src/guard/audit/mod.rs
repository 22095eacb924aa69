//! The guard's audit log: every setpoint decision, appended durably to a
//! hash-chained JSON-lines file before it takes effect (issue 12;
//! docs/audit.md).
//!
//! Data flow: the guard decides (a pure function of the core's state), the
//! driver appends the decision here, and only once [`AuditLog::append`] has
//! returned does anything act on it. This is the guard's one piece of I/O,
//! and it is kept out of the `Sink` fan-out on purpose: a sink may fall
//! behind or drop under load, and an audit record may do neither.
//!
//! # The ordering contract (for the guard and the writer)
//!
//! IEC 62443-3-3 SR 2.8 asks for a record of every security-relevant
//! action, and SR 2.9 for audit storage that does not silently lose them.
//! Here that means: **a decision is not taken before its record is
//! durable.** `append` writes the entry's line with one `write` and calls
//! `File::sync_data` before it returns, so:
//!
//! - `written`: append it *before* the device write is sent. If the append
//!   fails, the write is not sent. A crash between the two leaves an entry
//!   for a write the device never received; the read-back entry (or its
//!   absence) tells them apart. The reverse, a device write with no entry,
//!   cannot happen.
//! - `blocked`, `clamped`, `rejected`, `expired`: append before the outcome
//!   is reported (event stream, live table, the control socket's reply).
//! - `approved`: append before the approved write is queued; the write then
//!   gets its own `written` entry.
//! - `readback_ok` / `readback_mismatch`, `locked`, `reset`: append before
//!   the lock state changes or the alarm goes out.
//! - Any error from `append` (a full disk, an I/O error) means the decision
//!   must not be carried out: the guard then refuses every write (SR 2.9:
//!   when audit storage is exhausted the twin stops writing rather than
//!   writing unaudited).
//!
//! The log never reads a clock: each [`Record`] carries the caller's time,
//! so a replay that re-runs the guard writes the same entries.
//!
//! # Crash recovery
//!
//! [`AuditLog::open`] checks the file's first line and its last two lines
//! (a full check is [`verify`]); a whole-file check at every start would
//! make start-up time grow with the log. Bytes after the last newline are an
//! append a crash cut off (the line and its newline go in one `write`, and
//! the append had not returned, so nothing acted on it): open cuts them off
//! and records that in its `opened` entry. Nothing else is ever rewritten;
//! any other damage is an error that names the line, and the log refuses to
//! append to that file.

mod entry;
mod read;

#[cfg(test)]
mod tests;

pub use entry::{
    Actor, Decision, Entry, FORMAT_VERSION, GENESIS, Input, MAX_LINE, Number, Problem, Record,
    RecordError, parse_rfc3339, rfc3339_ns, sha256_hex,
};
pub use read::{AuditReader, Filter, VerifyReport, csv_header, csv_row, verify};

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What to do with a log that fails its check, in every such error.
const BROKEN_HELP: &str = "keep this file unchanged for investigation (`twin audit verify` checks all of it) and start a new audit log file (docs/audit.md, \"When the chain is broken\")";

/// What can go wrong with an audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: {source}", path = .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A line fails a check: the first such line.
    #[error(
        "{path}:{line}: {seq}{problem}; {BROKEN_HELP}",
        path = .path.display(),
        seq = .seq.map_or(String::new(), |s| format!("seq {s}: "))
    )]
    Broken {
        path: PathBuf,
        /// 1-based.
        line: u64,
        /// The seq the line carries, when it parses.
        seq: Option<u64>,
        problem: Problem,
    },
    #[error(
        "{path}: another process has this audit log open for appending; one log has one writer (give each twin its own file)",
        path = .path.display()
    )]
    Locked { path: PathBuf },
    #[error("{path}: entry {seq} refused: {source}", path = .path.display())]
    Record {
        path: PathBuf,
        seq: u64,
        #[source]
        source: RecordError,
    },
    /// The entry may not be on disk: the decision must not be carried out.
    #[error(
        "{path}: appending entry {seq} failed: {source}; the decision it records must not be carried out",
        path = .path.display()
    )]
    Append {
        path: PathBuf,
        seq: u64,
        #[source]
        source: io::Error,
    },
    /// An append failed in a way that leaves the file's end unknown (a
    /// failed `fsync` may have dropped pages that reads still show).
    #[error(
        "{path}: an earlier append failed and the file's end is uncertain; reopen the log (open checks and repairs its end) before appending again",
        path = .path.display()
    )]
    Poisoned { path: PathBuf },
}

impl AuditError {
    fn io(path: &Path, source: io::Error) -> AuditError {
        AuditError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The problem and line, for a broken chain.
    pub fn broken(&self) -> Option<(u64, &Problem)> {
        match self {
            AuditError::Broken { line, problem, .. } => Some((*line, problem)),
            _ => None,
        }
    }
}

/// An entry that is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub seq: u64,
    /// The entry's `hash`.
    pub hash: String,
}

/// An audit log open for appending. One writer per file (an advisory lock
/// enforces it); any number of readers ([`verify`], [`AuditReader`]).
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    /// The last entry's seq (0 before the first).
    seq: u64,
    /// The SHA-256 of the last entry's line: the next entry's `prev`.
    prev: String,
    /// Bytes of whole entries: where the file ends when all is well.
    len: u64,
    poisoned: bool,
}

/// The end of an existing log, as open found it.
struct Tail {
    seq: u64,
    prev: String,
    /// Bytes of whole entries.
    whole: u64,
    /// Bytes after the last newline: a torn append.
    torn: Vec<u8>,
}

impl AuditLog {
    /// Create the log at `path`, or open it to append, and write its
    /// `opened` entry at `t_ns` (the caller's time). Checks the file's
    /// first and last two entries; cuts off a torn last line (recording
    /// that in the `opened` entry). Refuses a file with any other damage.
    pub fn open(path: &Path, t_ns: i64) -> Result<AuditLog, AuditError> {
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| AuditError::io(path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(AuditError::Locked {
                    path: path.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(AuditError::io(path, e)),
        }
        if !existed {
            sync_parent(path)?;
        }
        let tail = read_tail(&file, path)?;
        let mut log = AuditLog {
            path: path.to_path_buf(),
            file,
            seq: tail.seq,
            prev: tail.prev,
            len: tail.whole,
            poisoned: false,
        };
        let reason = if !tail.torn.is_empty() {
            log.file
                .set_len(tail.whole)
                .map_err(|e| AuditError::io(path, e))?;
            let torn = &tail.torn;
            tracing::warn!(path = %path.display(), bytes = torn.len(), after_seq = log.seq, "The audit log ended in a torn line (a crash during an append); cut it off.");
            format!(
                "reopened after a crash: cut off a torn last line of {} bytes (sha256 {}) after seq {}, an append that never completed and was never acted on",
                torn.len(),
                sha256_hex(torn),
                log.seq
            )
        } else if log.seq == 0 {
            "log created".to_string()
        } else {
            format!("reopened after seq {}", log.seq)
        };
        let record = Record::new(t_ns, Actor::System, "", Decision::Opened, reason);
        log.write_entry(&record, None)?;
        Ok(log)
    }

    /// Append one decision and make it durable (`sync_data`) before
    /// returning. An error means the entry may not be on disk: the decision
    /// must not be carried out (module docs, "The ordering contract").
    pub fn append(&mut self, record: &Record) -> Result<Appended, AuditError> {
        let mut done = self.append_all(std::slice::from_ref(record))?;
        done.pop().ok_or_else(|| AuditError::Append {
            path: self.path.clone(),
            seq: self.seq,
            source: io::Error::other("the append returned no entry"),
        })
    }

    /// Append a tick's decisions as one group commit: every line in one
    /// `write`, then one `sync_data` for all of them, before returning.
    ///
    /// Why: the guard's decisions of a tick are carried out together after
    /// the tick, so making each durable on its own buys nothing, and each
    /// `fsync` is a device flush (about a millisecond on a plant PC's SSD,
    /// more on a busy disk) on the path from a sample to its write. A
    /// database's group commit makes the same trade. The contract is
    /// unchanged: nothing of the batch is acted on until this returns `Ok`,
    /// and on an error none of it may be. A crash during the `write` leaves
    /// whole lines of the batch and at most one torn line, which
    /// [`AuditLog::open`] cuts off; the whole lines record decisions that
    /// were never acted on, as a crash between an append and its write
    /// always could. A record that cannot be encoded refuses the batch
    /// before anything is written.
    pub fn append_all(&mut self, records: &[Record]) -> Result<Vec<Appended>, AuditError> {
        for (i, record) in records.iter().enumerate() {
            let refused = match () {
                () if record.decision == Decision::Opened => Some(RecordError::Opened),
                () if record.tag.is_empty() => Some(RecordError::NoTag),
                () => None,
            };
            if let Some(source) = refused {
                return Err(AuditError::Record {
                    path: self.path.clone(),
                    seq: self.seq + 1 + i as u64,
                    source,
                });
            }
        }
        self.write_entries(records.iter().map(|r| (r, Some(r.tag.as_str()))))
    }

    /// The last entry's seq.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The SHA-256 of the last entry's line: the chain's head, to note down
    /// outside the file (docs/audit.md, "Anchoring").
    pub fn head(&self) -> &str {
        &self.prev
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_entry(&mut self, record: &Record, tag: Option<&str>) -> Result<Appended, AuditError> {
        let mut done = self.write_entries(std::iter::once((record, tag)))?;
        done.pop().ok_or_else(|| AuditError::Append {
            path: self.path.clone(),
            seq: self.seq,
            source: io::Error::other("the append returned no entry"),
        })
    }

    /// Encode, chain, write in one `write` and make durable with one
    /// `sync_data`; the log's head moves only once all of it is on disk.
    fn write_entries<'r>(
        &mut self,
        records: impl Iterator<Item = (&'r Record, Option<&'r str>)>,
    ) -> Result<Vec<Appended>, AuditError> {
        if self.poisoned {
            return Err(AuditError::Poisoned {
                path: self.path.clone(),
            });
        }
        let (mut seq, mut prev) = (self.seq, self.prev.clone());
        let mut buf = Vec::new();
        let mut done = Vec::new();
        for (record, tag) in records {
            seq += 1;
            let line =
                entry::encode(record, tag, seq, &prev).map_err(|source| AuditError::Record {
                    path: self.path.clone(),
                    seq,
                    source,
                })?;
            let text = &line[..line.len() - 1];
            let hash_at = text.len() - 2 - 64;
            let hash = String::from_utf8_lossy(&text[hash_at..hash_at + 64]).into_owned();
            prev = sha256_hex(text);
            done.push(Appended { seq, hash });
            buf.extend_from_slice(&line);
        }
        if done.is_empty() {
            return Ok(done);
        }
        let path = self.path.clone();
        let first = self.seq + 1;
        let failed = |source| AuditError::Append {
            path,
            seq: first,
            source,
        };
        // One `write`, so a crash leaves whole lines and a prefix of one at
        // worst, never lines interleaved. A short write (a full disk) is
        // undone.
        let written = loop {
            match (&self.file).write(&buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        let short = match written {
            Ok(n) if n == buf.len() => None,
            Ok(n) => Some(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("only {n} of the entries' {} bytes were written", buf.len()),
            )),
            Err(e) => Some(e),
        };
        if let Some(e) = short {
            self.roll_back();
            return Err(failed(e));
        }
        // After a failed fsync the kernel may have dropped the dirty pages
        // while reads still show them (the "fsyncgate" lesson), so neither
        // retrying nor trusting the file's length is safe: poison.
        if let Err(e) = self.file.sync_data() {
            self.poisoned = true;
            return Err(failed(e));
        }
        self.seq = seq;
        self.prev = prev;
        self.len += buf.len() as u64;
        Ok(done)
    }

    /// Cut the file back to its last whole entry after a failed write; if
    /// even that fails, refuse further appends until a reopen repairs it.
    fn roll_back(&mut self) {
        let undone = self
            .file
            .set_len(self.len)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = undone {
            tracing::error!(path = %self.path.display(), error = %e, "Cannot cut a failed append off the audit log; refusing further appends until it is reopened.");
            self.poisoned = true;
        }
    }
}

/// Make a new file's directory entry durable, so the file itself survives
/// a power cut (POSIX leaves that to the directory's fsync).
fn sync_parent(path: &Path) -> Result<(), AuditError> {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| AuditError::io(dir, e))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// `len` bytes of `file` from `offset`.
fn read_range(mut file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(len).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The 1-based number of the line starting at byte `offset`: a count of the
/// newlines before it (only for error messages, so a full read is fine).
fn line_at(mut file: &File, path: &Path, offset: u64) -> Result<u64, AuditError> {
    let io_err = |e| AuditError::io(path, e);
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let mut r = file.take(offset);
    let mut chunk = vec![0u8; 1 << 20];
    let mut newlines = 0;
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err(e)),
        };
        newlines += memchr::memchr_iter(b'\n', &chunk[..n]).count() as u64;
    }
    Ok(newlines + 1)
}

/// Read and check the end of an existing log (and its first line).
fn read_tail(file: &File, path: &Path) -> Result<Tail, AuditError> {
    let io_err = |e| AuditError::io(path, e);
    let len = file.metadata().map_err(io_err)?.len();
    let broken = |offset: u64, seq: Option<u64>, problem: Problem| -> AuditError {
        match line_at(file, path, offset) {
            Ok(line) => AuditError::Broken {
                path: path.to_path_buf(),
                line,
                seq,
                problem,
            },
            Err(e) => e,
        }
    };
    // The window from the end holds the torn tail, the last line and the
    // line before it, or reaches the file's start.
    let limit = 3 * (MAX_LINE as u64 + 1);
    let mut window = len.min(64 << 10);
    let (start, buf, nls) = loop {
        let start = len - window;
        let buf = read_range(file, start, window).map_err(io_err)?;
        let nls: Vec<usize> = memchr::memrchr_iter(b'\n', &buf).take(3).collect();
        if start == 0 || nls.len() == 3 {
            break (start, buf, nls);
        }
        if window >= limit {
            let at = nls.last().map_or(start, |p| start + *p as u64 + 1);
            return Err(broken(
                at,
                None,
                Problem::Unparsable(format!("a line longer than {MAX_LINE} bytes")),
            ));
        }
        window = (window * 4).min(len).min(limit);
    };
    let line_start = |i: usize| -> usize { nls.get(i).map_or(0, |p| p + 1) };
    let whole_end = nls.first().map_or(0, |p| p + 1);
    let torn = buf[whole_end..].to_vec();
    if !entry::plausible_torn(&torn) {
        return Err(broken(
            start + whole_end as u64,
            None,
            Problem::Unparsable(format!(
                "the last {} bytes have no newline and are not the start of an entry",
                torn.len()
            )),
        ));
    }
    let whole = start + whole_end as u64;
    if nls.is_empty() {
        return Ok(Tail {
            seq: 0,
            prev: GENESIS.to_string(),
            whole,
            torn,
        });
    }
    // The first line: the file is an audit log from its start.
    let first = if start == 0 {
        let end = memchr::memchr(b'\n', &buf).unwrap_or(whole_end);
        buf[..end].to_vec()
    } else {
        // Most first lines are short: read a little, then up to the limit.
        let mut head = read_range(file, 0, 64 << 10).map_err(io_err)?;
        if memchr::memchr(b'\n', &head).is_none() {
            head = read_range(file, 0, MAX_LINE as u64 + 1).map_err(io_err)?;
        }
        match memchr::memchr(b'\n', &head) {
            Some(p) => head[..p].to_vec(),
            None => {
                return Err(broken(
                    0,
                    None,
                    Problem::Unparsable(format!("a line longer than {MAX_LINE} bytes")),
                ));
            }
        }
    };
    let first_entry =
        entry::check_line(&first, 0, GENESIS).map_err(|p| broken(0, seq_of(&first), p))?;
    if nls.len() == 1 {
        return Ok(Tail {
            seq: first_entry.seq,
            prev: sha256_hex(&first),
            whole,
            torn,
        });
    }
    // The last two lines, and the link between them.
    let last_at = line_start(1);
    let last = &buf[last_at..nls[0]];
    let before_at = line_start(2);
    let before = &buf[before_at..nls[1]];
    let before_entry = entry::check_entry(before)
        .map_err(|p| broken(start + before_at as u64, seq_of(before), p))?;
    let last_entry = entry::check_entry(last)
        .and_then(|e| entry::check_link(&e, before_entry.seq, &sha256_hex(before)).map(|()| e))
        .map_err(|p| broken(start + last_at as u64, seq_of(last), p))?;
    Ok(Tail {
        seq: last_entry.seq,
        prev: sha256_hex(last),
        whole,
        torn,
    })
}

/// The `seq` a line carries, if it parses that far.
fn seq_of(line: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Seq {
        seq: u64,
    }
    serde_json::from_slice::<Seq>(line).ok().map(|s| s.seq)
}
