//! Expectations: assertions over one event stream, written in a TOML file
//! (`EXPECT.toml`, docs/qa.md) and checked while the stream goes by.
//!
//! [`Expectations::load`] reads and validates the file with the plant
//! config's located diagnostics (same `file:line:col`, key paths,
//! did-you-mean, exit code 78). [`Checker`] is fed one JSONL line at a time,
//! from a file or live from a replay, and keeps only per-assertion state, so
//! a day of events is checked in constant memory. [`Checker::finish`] gives
//! the [`Report`]: one [`Outcome`] per assertion, a failure naming the first
//! offending event.
//!
//! Each kind of assertion is one table array (`[[event]]`, `[[tag]]`,
//! `[[line]]`), decoded and checked in [`super::rules`], the place where
//! alarms and setpoint decisions (later stages) add theirs; `[[event]]`
//! already matches their events by type and subject.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::rules::{Assertion, KINDS, Spec};
use super::{Event, format_time, parse_event};
use crate::config::decode::{Sink, Table};
use crate::config::{ConfigReport, Diagnostic, Severity, SourceFile};

/// Largest expectations file read: far above any hand-written one.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// Event types an `[[event]]` assertion may name: version 1's and the
/// reserved ones (docs/events.md), so a suite can be written ahead of them.
pub const EVENT_TYPES: &[&str] = &[
    "tag",
    "line",
    "residual",
    "eye",
    "jam",
    "gap",
    "prediction",
    "alarm",
    "proposal",
    "optimiser",
    "metering",
    "error",
    "setpoint",
];

/// The event an assertion failed on.
#[derive(Debug, Clone, PartialEq)]
pub struct Offending {
    /// 1-based line number in the stream.
    pub line: u64,
    /// The line itself.
    pub text: String,
}

impl Offending {
    pub(super) fn of(ev: &Event) -> Self {
        Offending {
            line: ev.line,
            text: ev.text.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub message: String,
    /// The first offending event; `None` when the failure is an absence.
    pub event: Option<Offending>,
}

impl Failure {
    pub(super) fn new(message: impl Into<String>, event: Option<Offending>) -> Self {
        Failure {
            message: message.into(),
            event,
        }
    }
}

/// The verdict on one assertion.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub name: String,
    /// `event`, `tag` or `line`: the table the assertion came from.
    pub kind: &'static str,
    pub failure: Option<Failure>,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// Every assertion's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub suite: String,
    /// Events checked.
    pub events: u64,
    pub outcomes: Vec<Outcome>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.outcomes.iter().all(Outcome::passed)
    }

    pub fn failures(&self) -> usize {
        self.outcomes.iter().filter(|o| !o.passed()).count()
    }

    /// One line per assertion, the offending event under a failure, and a
    /// closing count.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        for o in &self.outcomes {
            match &o.failure {
                None => {
                    let _ = writeln!(s, "PASS  {}", o.name);
                }
                Some(f) => {
                    let _ = writeln!(s, "FAIL  {}: {}", o.name, f.message);
                    if let Some(e) = &f.event {
                        let _ = writeln!(
                            s,
                            "      first offending event, line {}: {}",
                            e.line, e.text
                        );
                    }
                }
            }
        }
        let n = self.outcomes.len();
        let _ = writeln!(
            s,
            "{}: {} assertion{}, {} passed, {} failed ({} events)",
            self.suite,
            n,
            if n == 1 { "" } else { "s" },
            n - self.failures(),
            self.failures(),
            self.events
        );
        s
    }
}

#[derive(Debug, Clone)]
struct Named {
    name: String,
    spec: Spec,
}

/// A validated expectations file.
#[derive(Debug, Clone)]
pub struct Expectations {
    pub path: PathBuf,
    /// The JUnit testsuite name: `[suite] name`, else the file's stem.
    pub suite: String,
    assertions: Vec<Named>,
}

impl Expectations {
    /// Read and validate an expectations file; every problem, located.
    pub fn load(path: &Path) -> Result<Expectations, Box<ConfigReport>> {
        let fail = |msg: String, help: &str| {
            Box::new(ConfigReport {
                file: SourceFile::new(path, ""),
                diagnostics: vec![Diagnostic::error(0..0, "", msg).help(help.to_string())],
            })
        };
        let meta = std::fs::metadata(path).map_err(|e| {
            fail(
                format!("cannot read expectations file: {e}"),
                "check the path; a relative path starts from the current directory",
            )
        })?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(fail(
                format!(
                    "expectations file is {} bytes, over the limit of {MAX_FILE_BYTES}",
                    meta.len()
                ),
                "check that this is the expectations file",
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            fail(
                format!("cannot read expectations file: {e}"),
                "check the file's permissions and that it is UTF-8 text",
            )
        })?;
        Expectations::parse(path, &text)
    }

    /// Validate expectations text; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Expectations, Box<ConfigReport>> {
        let file = SourceFile::new(path, text);
        let mut sink = Sink::default();
        let (root, syntax) = DeTable::parse_recoverable(text);
        for e in &syntax {
            sink.push(
                Diagnostic::error(
                    e.span().unwrap_or(0..0),
                    "",
                    format!("TOML syntax error: {}", e.message().trim()),
                )
                .help("fix the syntax first; the assertions are checked once the file parses"),
            );
        }
        let mut decoded = None;
        if syntax.is_empty() {
            decoded = Some(decode_file(&mut sink, root.get_ref(), root.span()));
        }
        let mut diags = sink.diags;
        diags.sort_by_key(|d| (d.span.start, d.severity));
        match decoded {
            Some((suite, assertions)) if !diags.iter().any(|d| d.severity == Severity::Error) => {
                let suite = suite.unwrap_or_else(|| {
                    path.file_stem()
                        .map_or("expectations".into(), |s| s.to_string_lossy().into_owned())
                });
                Ok(Expectations {
                    path: path.to_path_buf(),
                    suite,
                    assertions,
                })
            }
            _ => Err(Box::new(ConfigReport {
                file,
                diagnostics: diags,
            })),
        }
    }

    /// Assertion names, in file order (each kind's table array in turn).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.assertions.iter().map(|a| a.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.assertions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.assertions.is_empty()
    }

    /// A fresh checker for one stream.
    pub fn checker(&self) -> Checker {
        let checks = self
            .assertions
            .iter()
            .map(|a| {
                let (kind, check) = a.spec.check();
                (a.name.clone(), kind, check)
            })
            .collect();
        Checker {
            suite: self.suite.clone(),
            checks,
            line: 0,
            events: 0,
            start: None,
            last: None,
        }
    }
}

/// A line the checker could not use.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("event line {line}: {message}")]
pub struct FeedError {
    pub line: u64,
    pub message: String,
}

/// Checks a stream against [`Expectations`] one line at a time.
pub struct Checker {
    suite: String,
    checks: Vec<(String, &'static str, Box<dyn Assertion>)>,
    line: u64,
    events: u64,
    start: Option<i64>,
    last: Option<i64>,
}

impl Checker {
    /// Feed the next line of the stream (with or without its newline). A
    /// line that is no event (not JSON, no `t`, out of time order) is an
    /// error and is not counted; the caller decides whether to go on.
    pub fn feed(&mut self, line: &[u8]) -> Result<(), FeedError> {
        self.line += 1;
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let ev = parse_event(body, self.line, self.last).map_err(|message| FeedError {
            line: self.line,
            message,
        })?;
        self.observe(&ev)
    }

    /// Feed every line of `bytes` (one or more complete lines, as a tick's
    /// encoded events come). Every line is fed; the first error is returned.
    pub fn feed_lines(&mut self, bytes: &[u8]) -> Result<(), FeedError> {
        let mut first = None;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            if let Err(e) = self.feed(line) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Feed an event already parsed (e.g. by [`super::EventReader`]); its
    /// own line number is what failures cite.
    pub fn observe(&mut self, ev: &Event) -> Result<(), FeedError> {
        self.line = self.line.max(ev.line);
        if let Some(prev) = self.last
            && ev.t_ns < prev
        {
            return Err(FeedError {
                line: ev.line,
                message: format!(
                    "out of time order: `t` {} is before the previous event's {}",
                    format_time(ev.t_ns),
                    format_time(prev)
                ),
            });
        }
        let start = *self.start.get_or_insert(ev.t_ns);
        self.last = Some(ev.t_ns);
        self.events += 1;
        for (_, _, c) in &mut self.checks {
            c.observe(ev, start);
        }
        Ok(())
    }

    /// Every assertion's verdict.
    pub fn finish(self) -> Report {
        let span = self.start.zip(self.last);
        let outcomes = self
            .checks
            .into_iter()
            .map(|(name, kind, mut c)| {
                let failure = match span {
                    None => Some(Failure::new(
                        "the event stream is empty: nothing to check",
                        None,
                    )),
                    Some((start, last)) if c.window().start_ns(start) > last => Some(Failure::new(
                        format!(
                            "the stream ends at {}, before the window opens at {}",
                            format_time(last),
                            format_time(c.window().start_ns(start))
                        ),
                        None,
                    )),
                    Some((start, last)) => c.finish(start, last),
                };
                Outcome {
                    name,
                    kind,
                    failure,
                }
            })
            .collect();
        Report {
            suite: self.suite,
            events: self.events,
            outcomes,
        }
    }
}

/// The whole file: `[suite]` and one table array per kind of assertion.
fn decode_file(
    sink: &mut Sink,
    root: &DeTable<'_>,
    span: Range<usize>,
) -> (Option<String>, Vec<Named>) {
    let mut top = Table::new(root, span.clone(), "");
    let mut suite = None;
    if let Some(mut s) = top.opt_table(sink, "suite") {
        suite = s.req_str(sink, "name").map(|n| n.value);
        s.finish(sink);
    }
    let mut out = Vec::new();
    for (kind, decode) in KINDS {
        for (i, mut t) in top.opt_table_array(sink, kind).into_iter().enumerate() {
            let spec = decode(sink, &mut t);
            push(sink, &mut out, t, spec, format!("{kind}[{i}]"));
        }
    }
    top.finish(sink);
    if out.is_empty() && sink.diags.is_empty() {
        sink.push(
            Diagnostic::error(0..0, "", "no assertions")
                .expected("at least one `[[event]]`, `[[tag]]` or `[[line]]` table")
                .help("see docs/qa.md and plant-configs/expectations/ for examples"),
        );
    }
    (suite, out)
}

/// Name a decoded assertion and keep it.
fn push(
    sink: &mut Sink,
    out: &mut Vec<Named>,
    mut t: Table<'_, '_>,
    spec: Option<Spec>,
    path: String,
) {
    let name = t.opt_str(sink, "name").map(|n| n.value);
    t.finish(sink);
    if let Some(spec) = spec {
        let describe = spec.describe();
        out.push(Named {
            name: name.unwrap_or_else(|| format!("{path}: {describe}")),
            spec,
        });
    }
}

#[cfg(test)]
#[path = "expect_tests.rs"]
mod tests;
