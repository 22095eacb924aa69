//! One audit entry: what the guard hands in ([`Record`]), what a line of the
//! file holds ([`Entry`]), and the byte rule that chains them (docs/audit.md,
//! "Hashing").
//!
//! A line is the compact JSON of the entry's members in a fixed order, with
//! `hash` last: `{"v":1,"seq":…,…,"prev":"…","hash":"…"}`. The hash is the
//! SHA-256 of that line with its `,"hash":"…"` member cut out, i.e. the
//! line's bytes up to the comma before `"hash"`, then `}`. It is computed
//! over the bytes as written, never over a re-serialization, so a checker in
//! any language needs no JSON canonicalization (float spelling, key order,
//! escapes): only byte slicing and SHA-256. `prev` is the SHA-256 of the
//! previous line's bytes (without its newline, `hash` included), 64 zeros
//! for the first line.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::twin::sample::Quality;

/// The format version a line's `v` carries. Readers refuse a newer one.
pub const FORMAT_VERSION: u32 = 1;

/// `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Bytes before the hash's 64 hex digits at the end of every line.
const HASH_OPEN: &[u8] = br#","hash":""#;
/// Bytes after them.
const HASH_CLOSE: &[u8] = br#""}"#;
/// The length of the `,"hash":"<64 hex>"}` tail of every line.
pub(super) const HASH_TAIL: usize = HASH_OPEN.len() + 64 + HASH_CLOSE.len();

/// No entry comes near this size (its bulk is a forecast); a longer line is
/// refused on append, and a longer "last line" on open is corruption, not a
/// torn append.
pub const MAX_LINE: usize = 1 << 20;

/// Who decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Actor {
    /// A model's proposal: the model's id and the SHA-256 of its file, so
    /// the entry names the exact version that proposed.
    Model { id: String, sha256: String },
    /// A person, by the name the control path authenticated.
    Operator { name: String },
    /// The twin itself (the guard's own rules, the watchdog, the log).
    System,
}

impl Actor {
    /// The kind as the file spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Model { .. } => "model",
            Actor::Operator { .. } => "operator",
            Actor::System => "system",
        }
    }

    /// The model's id or the operator's name; empty for the system.
    pub fn name(&self) -> &str {
        match self {
            Actor::Model { id, .. } => id,
            Actor::Operator { name } => name,
            Actor::System => "",
        }
    }
}

/// What happened to a setpoint proposal (issue 12), plus `opened`, the
/// log's own entry on every open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Proposed,
    Written,
    Blocked,
    Clamped,
    Approved,
    Rejected,
    Expired,
    ReadbackOk,
    ReadbackMismatch,
    Locked,
    Reset,
    Opened,
    /// An operator engaged the kill switch (one entry per setpoint).
    KillOn,
    /// An operator lifted it.
    KillOff,
}

impl Decision {
    pub const ALL: [Decision; 14] = [
        Decision::Proposed,
        Decision::Written,
        Decision::Blocked,
        Decision::Clamped,
        Decision::Approved,
        Decision::Rejected,
        Decision::Expired,
        Decision::ReadbackOk,
        Decision::ReadbackMismatch,
        Decision::Locked,
        Decision::Reset,
        Decision::Opened,
        Decision::KillOn,
        Decision::KillOff,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Proposed => "proposed",
            Decision::Written => "written",
            Decision::Blocked => "blocked",
            Decision::Clamped => "clamped",
            Decision::Approved => "approved",
            Decision::Rejected => "rejected",
            Decision::Expired => "expired",
            Decision::ReadbackOk => "readback_ok",
            Decision::ReadbackMismatch => "readback_mismatch",
            Decision::Locked => "locked",
            Decision::Reset => "reset",
            Decision::Opened => "opened",
            Decision::KillOn => "kill_on",
            Decision::KillOff => "kill_off",
        }
    }

    /// The decision spelled `s`, as the file spells it.
    pub fn parse(s: &str) -> Option<Decision> {
        Decision::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value as the file writes it: a JSON number, or `"NaN"`, `"inf"`,
/// `"-inf"` for what JSON cannot hold (as recordings spell them). A model's
/// NaN proposal is blocked, and its entry must say it was a NaN, not null.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number(pub f64);

impl Serialize for Number {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let x = self.0;
        if x.is_finite() {
            s.serialize_f64(x)
        } else if x.is_nan() {
            s.serialize_str("NaN")
        } else if x > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }
}

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, or \"NaN\", \"inf\", \"-inf\"")
            }
            fn visit_f64<E>(self, n: f64) -> Result<Number, E> {
                Ok(Number(n))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Number, E> {
                Ok(Number(n as f64))
            }
            fn visit_u64<E>(self, n: u64) -> Result<Number, E> {
                Ok(Number(n as f64))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Number, E> {
                match s {
                    "NaN" => Ok(Number(f64::NAN)),
                    "inf" => Ok(Number(f64::INFINITY)),
                    "-inf" => Ok(Number(f64::NEG_INFINITY)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(s), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// One input a proposal used, as the guard saw it when it decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub tag: String,
    pub age_ms: u64,
    pub quality: Quality,
}

/// What the guard appends: an entry without the parts the log fills in
/// (`v`, `seq`, `prev`, `hash`).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// When the decision was taken, ns since the Unix epoch, from the
    /// caller's clock: the log never reads one (the core's rule, so a replay
    /// writes the same entries).
    pub t_ns: i64,
    pub actor: Actor,
    /// The setpoint's tag.
    pub tag: String,
    pub decision: Decision,
    /// The guard rule that blocked or clamped (e.g. `max_step`).
    pub rule: Option<String>,
    pub reason: String,
    /// The setpoint's value before (as last read).
    pub old: Option<f64>,
    /// What the actor asked for.
    pub requested: Option<f64>,
    /// What went, or goes, to the device.
    pub written: Option<f64>,
    pub inputs: Vec<Input>,
    /// The lookahead's forecast, if one vetted the proposal: a JSON object,
    /// passed through as it is.
    pub forecast: Option<serde_json::Value>,
}

impl Record {
    /// A bare record: no rule, values, inputs or forecast.
    pub fn new(
        t_ns: i64,
        actor: Actor,
        tag: impl Into<String>,
        decision: Decision,
        reason: impl Into<String>,
    ) -> Record {
        Record {
            t_ns,
            actor,
            tag: tag.into(),
            decision,
            rule: None,
            reason: reason.into(),
            old: None,
            requested: None,
            written: None,
            inputs: Vec::new(),
            forecast: None,
        }
    }
}

/// One line of the file, parsed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub v: u32,
    pub seq: u64,
    /// RFC 3339 UTC, ns precision.
    pub t: String,
    pub actor: Actor,
    /// Absent only on the log's own `opened` entries.
    #[serde(default)]
    pub tag: Option<String>,
    pub decision: Decision,
    #[serde(default)]
    pub rule: Option<String>,
    pub reason: String,
    #[serde(default)]
    pub old: Option<Number>,
    #[serde(default)]
    pub requested: Option<Number>,
    #[serde(default)]
    pub written: Option<Number>,
    pub inputs: Vec<Input>,
    #[serde(default)]
    pub forecast: Option<serde_json::Map<String, serde_json::Value>>,
    pub prev: String,
    pub hash: String,
    /// `t` in ns since the Unix epoch (checked when the line is read).
    #[serde(skip)]
    pub t_ns: i64,
}

/// The members of a line before `hash`, in file order.
#[derive(Serialize)]
struct Body<'a> {
    v: u32,
    seq: u64,
    t: &'a str,
    actor: &'a Actor,
    #[serde(skip_serializing_if = "Option::is_none")]
    tag: Option<&'a str>,
    decision: Decision,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    old: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requested: Option<Number>,
    #[serde(skip_serializing_if = "Option::is_none")]
    written: Option<Number>,
    inputs: &'a [Input],
    #[serde(skip_serializing_if = "Option::is_none")]
    forecast: Option<&'a serde_json::Value>,
    prev: &'a str,
}

/// Why a record cannot become an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("its time is before 1970 ({0} ns)")]
    TimeBeforeEpoch(i64),
    #[error("its tag is empty")]
    NoTag,
    #[error("`opened` is the log's own decision, written on open")]
    Opened,
    #[error("its forecast is not a JSON object")]
    ForecastNotObject,
    #[error("its line would be {0} bytes, above the limit of {MAX_LINE}")]
    TooLong(usize),
    #[error("it does not serialize: {0}")]
    Json(String),
}

/// RFC 3339 UTC with ns precision, e.g. `2026-12-05T21:42:51.123456789Z`:
/// the caller's time exactly, for lining entries up with a device's own
/// write log.
pub fn rfc3339_ns(t_ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t_ns.max(0) as u64);
    humantime::format_rfc3339_nanos(t).to_string()
}

/// RFC 3339 to ns since the Unix epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(s).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// The line (with its newline) of entry `seq` after the line whose hash is
/// `prev`. `tag` is `None` only for the log's own entries.
pub(super) fn encode(
    r: &Record,
    tag: Option<&str>,
    seq: u64,
    prev: &str,
) -> Result<Vec<u8>, RecordError> {
    if r.t_ns < 0 {
        return Err(RecordError::TimeBeforeEpoch(r.t_ns));
    }
    if r.forecast.as_ref().is_some_and(|f| !f.is_object()) {
        return Err(RecordError::ForecastNotObject);
    }
    let t = rfc3339_ns(r.t_ns);
    let body = Body {
        v: FORMAT_VERSION,
        seq,
        t: &t,
        actor: &r.actor,
        tag,
        decision: r.decision,
        rule: r.rule.as_deref(),
        reason: &r.reason,
        old: r.old.map(Number),
        requested: r.requested.map(Number),
        written: r.written.map(Number),
        inputs: &r.inputs,
        forecast: r.forecast.as_ref(),
        prev,
    };
    let mut line = serde_json::to_vec(&body).map_err(|e| RecordError::Json(e.to_string()))?;
    // Compact serde_json output is one object on one line (strings escape
    // their newlines), so the last byte is its closing brace.
    if line.pop() != Some(b'}') {
        return Err(RecordError::Json("not a JSON object".into()));
    }
    line.push(b'}');
    let hash = sha256_hex(&line);
    line.pop();
    line.extend_from_slice(HASH_OPEN);
    line.extend_from_slice(hash.as_bytes());
    line.extend_from_slice(HASH_CLOSE);
    line.push(b'\n');
    if line.len() > MAX_LINE {
        return Err(RecordError::TooLong(line.len()));
    }
    Ok(line)
}

/// Which check a line fails (docs/audit.md, "Verify").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Not an entry: not JSON, a member missing or unknown, a bad value,
    /// `hash` not the last member.
    Unparsable(String),
    /// The line's bytes do not hash to its `hash`: the line was changed.
    HashMismatch { computed: String },
    /// The line's `seq` is not one more than the line before's: an entry
    /// was removed, repeated or moved.
    SeqGap { expected: u64, found: u64 },
    /// The line's `prev` is not the hash of the line before: a line before
    /// it was changed (and its own `hash` recomputed), removed or inserted.
    PrevMismatch { expected: String, found: String },
    /// A line from a newer format than this twin reads.
    TooNew(u32),
    /// No entry at all: a log twin writes starts with its `opened` entry.
    Empty,
}

impl Problem {
    /// The check's short name, as `twin audit verify` and the docs call it.
    pub fn check(&self) -> &'static str {
        match self {
            Problem::Unparsable(_) => "unparsable",
            Problem::HashMismatch { .. } => "hash mismatch",
            Problem::SeqGap { .. } => "seq gap",
            Problem::PrevMismatch { .. } => "prev mismatch",
            Problem::TooNew(_) => "newer format",
            Problem::Empty => "empty",
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: ", self.check())?;
        match self {
            Problem::Unparsable(e) => write!(f, "{e}"),
            Problem::HashMismatch { computed } => write!(
                f,
                "the line hashes to {computed}, not to its `hash`; the line was changed after it was written"
            ),
            Problem::SeqGap { expected, found } if found > expected => write!(
                f,
                "expected seq {expected}, found {found}; {} entries before this line are missing",
                found - expected
            ),
            Problem::SeqGap { expected, found } => write!(
                f,
                "expected seq {expected}, found {found}; an entry is repeated or out of order"
            ),
            Problem::PrevMismatch { expected, found } => write!(
                f,
                "`prev` is {found}, but the line before hashes to {expected}; a line before this one was changed, removed or inserted"
            ),
            Problem::TooNew(v) => write!(
                f,
                "format version {v} is newer than this twin reads ({FORMAT_VERSION}); use a newer twin"
            ),
            Problem::Empty => f.write_str(
                "the file holds no entry; a log twin writes starts with its `opened` entry, so this one was emptied or is not an audit log",
            ),
        }
    }
}

/// Check one line (without its newline) as the entry after `prev_seq` and
/// the line hashing to `prev`, and parse it.
pub(super) fn check_line(line: &[u8], prev_seq: u64, prev: &str) -> Result<Entry, Problem> {
    let e = check_entry(line)?;
    check_link(&e, prev_seq, prev)?;
    Ok(e)
}

/// Parse one line and check it on its own: its format and its hash.
pub(super) fn check_entry(line: &[u8]) -> Result<Entry, Problem> {
    let mut e: Entry =
        serde_json::from_slice(line).map_err(|e| Problem::Unparsable(e.to_string()))?;
    if e.v > FORMAT_VERSION {
        return Err(Problem::TooNew(e.v));
    }
    e.t_ns = parse_rfc3339(&e.t)
        .ok_or_else(|| Problem::Unparsable(format!("`t` {:?} is not an RFC 3339 time", e.t)))?;
    let Some(body_end) = hash_member_start(line, &e.hash) else {
        return Err(Problem::Unparsable(
            "`hash` is not the line's last member, or not 64 lower-case hex digits".into(),
        ));
    };
    let mut hasher = Sha256::new();
    hasher.update(&line[..body_end]);
    hasher.update(b"}");
    let computed = hex(&hasher.finalize());
    if computed != e.hash {
        return Err(Problem::HashMismatch { computed });
    }
    Ok(e)
}

/// Check that `e` follows the entry `prev_seq` whose line hashes to `prev`.
pub(super) fn check_link(e: &Entry, prev_seq: u64, prev: &str) -> Result<(), Problem> {
    let expected = prev_seq + 1;
    if e.seq != expected {
        return Err(Problem::SeqGap {
            expected,
            found: e.seq,
        });
    }
    if e.prev != prev {
        return Err(Problem::PrevMismatch {
            expected: prev.to_string(),
            found: e.prev.clone(),
        });
    }
    Ok(())
}

/// Whether bytes after the last newline can be an append a crash cut off:
/// a prefix of an entry line (each starts `{"v":`), or zeros (a file system
/// that grew the file before the data reached the disk). Anything else is
/// not ours to cut off.
pub(super) fn plausible_torn(tail: &[u8]) -> bool {
    const START: &[u8] = br#"{"v":"#;
    let k = tail.len().min(START.len());
    tail.len() <= MAX_LINE && (tail[..k] == START[..k] || tail.iter().all(|b| *b == 0))
}

/// Where the `,"hash":"…"}` tail of `line` starts, if the line ends with
/// exactly that member carrying `hash`.
fn hash_member_start(line: &[u8], hash: &str) -> Option<usize> {
    let start = line.len().checked_sub(HASH_TAIL)?;
    let tail = &line[start..];
    let digits = &tail[HASH_OPEN.len()..HASH_OPEN.len() + 64];
    let ok = tail.starts_with(HASH_OPEN)
        && tail.ends_with(HASH_CLOSE)
        && digits == hash.as_bytes()
        && digits
            .iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b));
    ok.then_some(start)
}
