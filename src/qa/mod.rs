//! QA over event streams: the last stage of the data flow, reading what the
//! twin wrote (docs/events.md) rather than the plant.
//!
//! - [`diff`]: what changed between two event streams (`twin diff`), the
//!   counterfactual half of replay: "what would the new settings have done".
//! - [`expect`]: assertions over one stream (`EXPECT.toml`), checked by a
//!   streaming [`Checker`] that a replay can feed line by line.
//! - [`junit`]: the checker's report as JUnit XML for CI.
//! - [`sink`]: the checker as an output of a run (`twin replay --expect`).
//!
//! Streams are read line by line and never held whole: a day of events is
//! hundreds of megabytes, and both tools only need the current tick.

pub mod diff;
pub mod expect;
pub mod junit;
mod rules;
pub mod sink;

use std::io::{BufRead, Read};

use serde_json::{Map, Value};

pub use diff::{DiffOptions, DiffSummary, Difference, diff};
pub use expect::{Checker, Expectations, FeedError, Outcome, Report};
pub use sink::{ExpectSink, ReportSlot};

/// Longest event line read, in bytes. The longest real lines (a `line`
/// event of a plant with many belts and zones) are a few kilobytes; the cap
/// keeps a file without newlines (a binary, a wrong path) from being read
/// into memory whole.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// A problem with an event stream, located by file and line.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: u64,
        message: String,
    },
}

/// One parsed line of an event stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// 1-based line number in its stream.
    pub line: u64,
    /// Tick time `t`, nanoseconds since the Unix epoch (ms resolution).
    pub t_ns: i64,
    /// `type`.
    pub kind: String,
    /// The whole object, `t` and `type` included.
    pub fields: Map<String, Value>,
    /// The line as read, without its newline (for messages and reports).
    pub text: String,
}

impl Event {
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).and_then(Value::as_str)
    }

    /// The fields that identify what the event is about, as its type defines
    /// them (docs/events.md): a tag, a line, an eye of a line, a jam's
    /// place. Types this version does not know are keyed by whichever of the
    /// usual subject fields they carry, so later types (alarms, setpoints)
    /// align too.
    pub fn key(&self) -> String {
        let fields: &[&str] = match self.kind.as_str() {
            "tag" => &["tag"],
            "line" => &["line"],
            "residual" | "eye" => &["line", "eye"],
            "jam" => &["line", "after_eye"],
            "gap" => &[],
            _ => &["line", "machine", "tag", "eye", "station"],
        };
        let mut key = String::new();
        for f in fields {
            if let Some(v) = self.fields.get(*f).filter(|v| !v.is_null()) {
                if !key.is_empty() {
                    key.push('/');
                }
                match v {
                    Value::String(s) => key.push_str(s),
                    other => key.push_str(&other.to_string()),
                }
            }
        }
        key
    }
}

/// Parse one line (without its newline). `prev_t` is the previous line's
/// time: a `gap` line may come without `t` (docs/events.md), and then stands
/// where the tick before it did.
pub fn parse_event(bytes: &[u8], line: u64, prev_t: Option<i64>) -> Result<Event, String> {
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err("empty line; expected a JSON object".into());
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err("expected a JSON object, one event per line".into());
    };
    let kind = match fields.get("type") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("`type` is not a string".into()),
        None => return Err("missing `type`".into()),
    };
    let t_ns = match fields.get("t") {
        Some(Value::String(s)) => {
            parse_time(s).ok_or_else(|| format!("`t` is not an RFC 3339 UTC time: {s:?}"))?
        }
        Some(_) => return Err("`t` is not a string".into()),
        None => match prev_t {
            Some(t) if kind == "gap" => t,
            _ => return Err("missing `t`".into()),
        },
    };
    Ok(Event {
        line,
        t_ns,
        kind,
        fields,
        text: String::from_utf8_lossy(bytes).into_owned(),
    })
}

/// A time as users write it: an offset from a start (`90s`, `1h30m`) or an
/// RFC 3339 time. Expectation windows and `twin replay --from/--to` (and
/// `twin whatif --at`) read times this one way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TimeSpec {
    /// Nanoseconds after the start (the stream's first event, the
    /// recording's start).
    Rel(i64),
    /// Nanoseconds since the epoch.
    Abs(i64),
}

impl TimeSpec {
    pub fn resolve(self, start: i64) -> i64 {
        match self {
            TimeSpec::Rel(d) => start.saturating_add(d),
            TimeSpec::Abs(t) => t,
        }
    }
}

/// Reads a [`TimeSpec`]; `None` if it is neither form.
pub fn time_spec(s: &str) -> Option<TimeSpec> {
    let s = s.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        return i64::try_from(d.as_nanos()).ok().map(TimeSpec::Rel);
    }
    parse_time(s).map(TimeSpec::Abs)
}

/// RFC 3339 to nanoseconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339(s.trim()).ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_nanos()).ok()
}

/// Nanoseconds since the epoch as the stream writes times.
pub fn format_time(t_ns: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(t_ns.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Reads an event stream one line at a time, checking what a consumer that
/// aligns by time relies on: every line an event with a time, times never
/// going backwards, and the last line complete.
pub struct EventReader<R> {
    inner: R,
    path: String,
    line: u64,
    last_t: Option<i64>,
    buf: Vec<u8>,
}

impl<R: BufRead> EventReader<R> {
    /// `path` names the stream in errors.
    pub fn new(inner: R, path: impl Into<String>) -> Self {
        EventReader {
            inner,
            path: path.into(),
            line: 0,
            last_t: None,
            buf: Vec::new(),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    fn err(&self, message: impl Into<String>) -> StreamError {
        StreamError::Line {
            path: self.path.clone(),
            line: self.line,
            message: message.into(),
        }
    }

    /// The next event, `None` at the end of the stream.
    pub fn next_event(&mut self) -> Result<Option<Event>, StreamError> {
        self.buf.clear();
        let n = (&mut self.inner)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut self.buf)
            .map_err(|source| StreamError::Io {
                path: self.path.clone(),
                source,
            })?;
        if n == 0 {
            return Ok(None);
        }
        self.line += 1;
        let Some(body) = self.buf.strip_suffix(b"\n") else {
            if self.buf.len() > MAX_LINE_BYTES {
                return Err(self.err(format!(
                    "line longer than {MAX_LINE_BYTES} bytes; is this an event stream?"
                )));
            }
            return Err(self.err(
                "the last line is cut off (no newline at its end): the file was truncated or is still being written",
            ));
        };
        let ev = parse_event(body, self.line, self.last_t).map_err(|m| self.err(m))?;
        if let Some(prev) = self.last_t
            && ev.t_ns < prev
        {
            return Err(self.err(format!(
                "out of time order: `t` {} is before the previous line's {}; event streams are written in tick order",
                format_time(ev.t_ns),
                format_time(prev)
            )));
        }
        self.last_t = Some(ev.t_ns);
        Ok(Some(ev))
    }
}

/// How every MCAP file starts (a recording).
const MCAP_MAGIC: &[u8] = b"\x89MCAP";

/// Open a file (or `-` for stdin) as an event stream.
pub fn open(path: &str) -> Result<EventReader<Box<dyn BufRead>>, StreamError> {
    let inner: Box<dyn BufRead> = if path == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f = std::fs::File::open(path).map_err(|source| StreamError::Io {
            path: path.to_string(),
            source,
        })?;
        let mut f = std::io::BufReader::with_capacity(1 << 16, f);
        // A recording given where its events are meant is a likely slip
        // (both come out of a run); "line 1: not valid JSON" would not say
        // what to do.
        let head = f.fill_buf().map_err(|source| StreamError::Io {
            path: path.to_string(),
            source,
        })?;
        if head.starts_with(MCAP_MAGIC) {
            return Err(StreamError::Line {
                path: path.to_string(),
                line: 1,
                message: "this is an MCAP recording, not an event stream (JSON lines); check a recording with `twin replay REC.mcap --expect EXPECT.toml`, or write its events with `twin replay REC.mcap --events EVENTS.jsonl`".into(),
            });
        }
        Box::new(f)
    };
    Ok(EventReader::new(inner, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str) -> Result<Vec<Event>, StreamError> {
        let mut r = EventReader::new(text.as_bytes(), "x.jsonl");
        let mut out = Vec::new();
        while let Some(e) = r.next_event()? {
            out.push(e);
        }
        Ok(out)
    }

    #[test]
    fn events_are_keyed_by_what_their_type_is_about() {
        let e = |s: &str| parse_event(s.as_bytes(), 1, None).expect("parses");
        let jam = e(
            r#"{"v":1,"type":"jam","t":"2027-01-15T08:00:26.700Z","line":"line1","state":"start","after_eye":"e2","before_eye":"e3"}"#,
        );
        assert_eq!(jam.key(), "line1/e2");
        let res = e(
            r#"{"v":1,"type":"residual","t":"2027-01-15T08:00:26.700Z","line":"l","eye":"e1","tag":"eye.1"}"#,
        );
        assert_eq!(res.key(), "l/e1");
        let tag =
            e(r#"{"v":1,"type":"tag","t":"2027-01-15T08:00:26.700Z","tag":"a.b","machine":"a"}"#);
        assert_eq!(tag.key(), "a.b");
        let alarm =
            e(r#"{"v":1,"type":"alarm","t":"2027-01-15T08:00:26.700Z","machine":"filler"}"#);
        assert_eq!(alarm.key(), "filler");
        assert_eq!(jam.t_ns % 1_000_000, 0);
        assert_eq!(format_time(jam.t_ns), "2027-01-15T08:00:26.700Z");
    }

    #[test]
    fn reader_names_the_line_of_each_kind_of_bad_input() {
        let ok = r#"{"v":1,"type":"tag","t":"2027-01-15T08:00:26.700Z","tag":"a"}"#;
        let err = |text: String| read_all(&text).expect_err("must fail").to_string();
        assert!(err(format!("{ok}\nnot json\n")).starts_with("x.jsonl:2: not valid JSON"));
        assert!(err(format!("{ok}\n{{\"type\":\"tag\"}}\n")).contains("x.jsonl:2: missing `t`"));
        assert!(err(format!("{ok}\n[1]\n")).contains("x.jsonl:2: expected a JSON object"));
        assert!(err(format!("{ok}\n{ok}")).contains("x.jsonl:2: the last line is cut off"));
        let early = ok.replace("26.700", "25.000");
        assert!(err(format!("{ok}\n{early}\n")).contains("x.jsonl:2: out of time order"));
        assert!(err(format!("{ok}\n\n")).contains("x.jsonl:2: empty line"));
        let bad_t = ok.replace("2027-01-15T08:00:26.700Z", "yesterday");
        assert!(err(format!("{bad_t}\n")).contains("x.jsonl:1: `t` is not an RFC 3339"));
        assert_eq!(
            read_all(&format!("{ok}\n{ok}\n")).map(|v| v.len()).ok(),
            Some(2)
        );
    }

    #[test]
    fn a_gap_without_t_stands_where_the_tick_before_it_did() {
        let ok = r#"{"v":1,"type":"tag","t":"2027-01-15T08:00:26.700Z","tag":"a"}"#;
        let events = read_all(&format!(
            "{ok}\n{{\"v\":1,\"type\":\"gap\",\"ticks\":3,\"events\":9}}\n"
        ))
        .expect("reads");
        assert_eq!(events[1].t_ns, events[0].t_ns);
        assert!(read_all("{\"v\":1,\"type\":\"gap\",\"ticks\":3,\"events\":9}\n").is_err());
    }

    #[test]
    fn a_file_without_newlines_is_refused_without_reading_it_whole() {
        let long = "x".repeat(MAX_LINE_BYTES + 10);
        let e = read_all(&long).expect_err("must fail").to_string();
        assert!(e.contains("x.jsonl:1: line longer than"), "{e}");
    }
}
