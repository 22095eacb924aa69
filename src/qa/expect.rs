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
//! `[[line]]`) decoded by one function and checked by one [`Assertion`]
//! impl. Alarms and setpoint decisions (later stages) add theirs the same
//! way: a decoder in [`decode_file`] and an impl; `[[event]]` already
//! matches their events by type and subject.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde_json::Value;
use toml::de::DeTable;

use super::{Event, format_time, parse_event};
use crate::config::decode::{Sink, Table};
use crate::config::{ConfigReport, Diagnostic, Loc, Severity, SourceFile};

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
    "setpoint",
];

/// Fields an `[[event]]` assertion can match on, by equality.
const EVENT_FILTERS: &[&str] = &[
    "tag",
    "machine",
    "line",
    "eye",
    "station",
    "after_eye",
    "state",
    "residual",
    "quality",
    "reason",
];

/// A time written in an expectations file.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TimeSpec {
    /// Nanoseconds after the stream's first event.
    Rel(i64),
    /// Nanoseconds since the epoch.
    Abs(i64),
}

impl TimeSpec {
    fn resolve(self, start: i64) -> i64 {
        match self {
            TimeSpec::Rel(d) => start.saturating_add(d),
            TimeSpec::Abs(t) => t,
        }
    }
}

/// `from <= t < to`; either end may be open.
#[derive(Debug, Clone, Default, PartialEq)]
struct Window {
    from: Option<(TimeSpec, String)>,
    to: Option<(TimeSpec, String)>,
}

impl Window {
    fn start_ns(&self, start: i64) -> i64 {
        self.from.as_ref().map_or(i64::MIN, |f| f.0.resolve(start))
    }

    fn end_ns(&self, start: i64) -> i64 {
        self.to.as_ref().map_or(i64::MAX, |f| f.0.resolve(start))
    }

    fn contains(&self, start: i64, t: i64) -> bool {
        self.start_ns(start) <= t && t < self.end_ns(start)
    }

    fn describe(&self) -> String {
        match (&self.from, &self.to) {
            (None, None) => String::new(),
            (Some(f), None) => format!(" from {}", f.1),
            (None, Some(t)) => format!(" until {}", t.1),
            (Some(f), Some(t)) => format!(" from {} to {}", f.1, t.1),
        }
    }
}

/// The event an assertion failed on.
#[derive(Debug, Clone, PartialEq)]
pub struct Offending {
    /// 1-based line number in the stream.
    pub line: u64,
    /// The line itself.
    pub text: String,
}

impl Offending {
    fn of(ev: &Event) -> Self {
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
    fn new(message: impl Into<String>, event: Option<Offending>) -> Self {
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

/// One kind of assertion, checked over a stream in one pass.
///
/// `start` is the time of the stream's first event (relative windows count
/// from it). `finish` is called once, after the last event, with the times
/// of the first and last events; it is not called when the stream never
/// reached the assertion's window (the checker fails it for that).
trait Assertion: Send {
    fn window(&self) -> &Window;
    fn observe(&mut self, ev: &Event, start: i64);
    fn finish(&mut self, start: i64, last: i64) -> Option<Failure>;
}

/// `[[event]]`: events of a type (and subject, place, state) happen, or do
/// not, within a window, between `at_least` and `at_most` times.
#[derive(Debug, Clone)]
struct EventSpec {
    kind: String,
    filters: Vec<(&'static str, String)>,
    between: Option<(String, String)>,
    window: Window,
    at_least: u64,
    at_most: Option<u64>,
}

impl EventSpec {
    fn matches(&self, ev: &Event) -> bool {
        ev.kind == self.kind
            && self
                .filters
                .iter()
                .all(|(k, v)| ev.str_field(k) == Some(v.as_str()))
            && self.between.as_ref().is_none_or(|(a, b)| {
                ev.str_field("after_eye") == Some(a.as_str())
                    && ev.str_field("before_eye") == Some(b.as_str())
            })
    }

    fn describe(&self) -> String {
        let mut s = format!("{} events", self.kind);
        for (k, v) in &self.filters {
            s.push_str(&format!(" {k}={v}"));
        }
        if let Some((a, b)) = &self.between {
            s.push_str(&format!(" between {a} and {b}"));
        }
        s.push_str(&self.window.describe());
        s.push_str(&match (self.at_least, self.at_most) {
            (_, Some(0)) => ": none".to_string(),
            (n, None) => format!(": at least {n}"),
            (0, Some(m)) => format!(": at most {m}"),
            (n, Some(m)) if n == m => format!(": exactly {n}"),
            (n, Some(m)) => format!(": {n} to {m}"),
        });
        s
    }
}

struct EventCheck {
    spec: EventSpec,
    count: u64,
    first_over: Option<Offending>,
}

impl Assertion for EventCheck {
    fn window(&self) -> &Window {
        &self.spec.window
    }

    fn observe(&mut self, ev: &Event, start: i64) {
        if self.spec.window.contains(start, ev.t_ns) && self.spec.matches(ev) {
            self.count += 1;
            if self.spec.at_most.is_some_and(|m| self.count > m) && self.first_over.is_none() {
                self.first_over = Some(Offending::of(ev));
            }
        }
    }

    fn finish(&mut self, _start: i64, _last: i64) -> Option<Failure> {
        let found = format!("found {}", self.count);
        if let Some(over) = self.first_over.take() {
            let m = self.spec.at_most.unwrap_or(0);
            let msg = if m == 0 {
                format!("expected no {} events, {found}", self.spec.kind)
            } else {
                format!("expected at most {m} {} events, {found}", self.spec.kind)
            };
            return Some(Failure::new(msg, Some(over)));
        }
        (self.count < self.spec.at_least).then(|| {
            Failure::new(
                format!(
                    "expected at least {} matching {} events{}, {found}",
                    self.spec.at_least,
                    self.spec.kind,
                    self.spec.window.describe()
                ),
                None,
            )
        })
    }
}

/// What a range assertion does with a tag that is not good.
#[derive(Debug, Clone, Copy, PartialEq)]
enum NotGood {
    /// Skip it: no value to judge (`bad`), or a kept value already judged
    /// when it was good (`stale`).
    Ignore,
    Fail,
}

/// `[[tag]]`: a tag's value stays within `min..=max` over a window.
#[derive(Debug, Clone)]
struct TagSpec {
    tag: String,
    min: Option<f64>,
    max: Option<f64>,
    bad: NotGood,
    stale: NotGood,
    window: Window,
}

impl TagSpec {
    /// What is wrong with this state of the tag, if anything.
    fn violation(&self, ev: &Event) -> Option<String> {
        let quality = ev.str_field("quality").unwrap_or("good");
        let reason = ev
            .str_field("reason")
            .map_or(String::new(), |r| format!(" ({r})"));
        match quality {
            "bad" if self.bad == NotGood::Fail => return Some(format!("went bad{reason}")),
            "bad" => return None,
            "stale" if self.stale == NotGood::Fail => {
                return Some(format!("went stale{reason}"));
            }
            _ => {}
        }
        match ev.fields.get("value") {
            Some(Value::Number(n)) => {
                // JSON numbers are finite, so a plain comparison decides.
                let v = n.as_f64().unwrap_or_default();
                if let Some(min) = self.min
                    && v < min
                {
                    return Some(format!("value {v} is below min {min}"));
                }
                if let Some(max) = self.max
                    && v > max
                {
                    return Some(format!("value {v} is above max {max}"));
                }
                None
            }
            // No value without being bad: nothing to judge.
            None | Some(Value::Null) => None,
            Some(other) => Some(format!("value {other} is not a number")),
        }
    }

    fn describe(&self) -> String {
        let range = match (self.min, self.max) {
            (Some(a), Some(b)) => format!("within {a}..={b}"),
            (Some(a), None) => format!(">= {a}"),
            (None, Some(b)) => format!("<= {b}"),
            (None, None) => String::new(),
        };
        format!("tag {} {range}{}", self.tag, self.window.describe())
    }
}

struct TagCheck {
    spec: TagSpec,
    /// The tag's last event before the window: its state when the window
    /// opens, since events only report changes.
    carried: Option<Event>,
    entered: bool,
    seen: bool,
    failure: Option<Failure>,
}

impl TagCheck {
    fn judge(&mut self, ev: &Event, carried: bool) {
        if self.failure.is_some() {
            return;
        }
        if let Some(v) = self.spec.violation(ev) {
            let msg = if carried {
                format!(
                    "{} {v}, carried into the window from before it",
                    self.spec.tag
                )
            } else {
                format!("{} {v}", self.spec.tag)
            };
            self.failure = Some(Failure::new(msg, Some(Offending::of(ev))));
        }
    }
}

impl Assertion for TagCheck {
    fn window(&self) -> &Window {
        &self.spec.window
    }

    fn observe(&mut self, ev: &Event, start: i64) {
        if ev.kind != "tag" || ev.str_field("tag") != Some(self.spec.tag.as_str()) {
            return;
        }
        self.seen = true;
        let from = self.spec.window.start_ns(start);
        if ev.t_ns < from {
            self.carried = Some(ev.clone());
            return;
        }
        if ev.t_ns >= self.spec.window.end_ns(start) {
            return;
        }
        if !self.entered {
            self.entered = true;
            // A state replaced exactly when the window opens never held in it.
            if ev.t_ns > from
                && let Some(c) = self.carried.take()
            {
                self.judge(&c, true);
            }
        }
        self.judge(ev, false);
    }

    fn finish(&mut self, _start: i64, _last: i64) -> Option<Failure> {
        if !self.seen {
            return Some(Failure::new(
                format!(
                    "no `tag` event for {} in the stream; check the tag's name",
                    self.spec.tag
                ),
                None,
            ));
        }
        if !self.entered
            && let Some(c) = self.carried.take()
        {
            self.judge(&c, true);
        }
        self.failure.take()
    }
}

/// `[[line]]`: a line's throughput and WIP stay within bounds over a window.
#[derive(Debug, Clone)]
struct LineSpec {
    line: String,
    throughput: (Option<f64>, Option<f64>),
    wip: (Option<f64>, Option<f64>),
    window: Window,
}

impl LineSpec {
    fn violation(&self, ev: &Event) -> Option<String> {
        let check = |field: &str, (min, max): (Option<f64>, Option<f64>)| {
            if min.is_none() && max.is_none() {
                return None;
            }
            let Some(v) = ev.fields.get(field).and_then(Value::as_f64) else {
                return Some(format!("{field} is missing or not a number"));
            };
            if let Some(m) = min
                && v < m
            {
                return Some(format!("{field} {v} is below {m}"));
            }
            if let Some(m) = max
                && v > m
            {
                return Some(format!("{field} {v} is above {m}"));
            }
            None
        };
        check("throughput_per_min", self.throughput).or_else(|| check("wip", self.wip))
    }

    fn describe(&self) -> String {
        let b = |name: &str, (min, max): (Option<f64>, Option<f64>)| match (min, max) {
            (Some(a), Some(b)) => format!(" {name} {a}..={b}"),
            (Some(a), None) => format!(" {name} >= {a}"),
            (None, Some(b)) => format!(" {name} <= {b}"),
            (None, None) => String::new(),
        };
        format!(
            "line {}{}{}{}",
            self.line,
            b("throughput_per_min", self.throughput),
            b("wip", self.wip),
            self.window.describe()
        )
    }
}

struct LineCheck {
    spec: LineSpec,
    seen: u64,
    failure: Option<Failure>,
}

impl Assertion for LineCheck {
    fn window(&self) -> &Window {
        &self.spec.window
    }

    fn observe(&mut self, ev: &Event, start: i64) {
        if ev.kind != "line"
            || ev.str_field("line") != Some(self.spec.line.as_str())
            || !self.spec.window.contains(start, ev.t_ns)
        {
            return;
        }
        self.seen += 1;
        if self.failure.is_none()
            && let Some(v) = self.spec.violation(ev)
        {
            self.failure = Some(Failure::new(
                format!("line {}: {v}", self.spec.line),
                Some(Offending::of(ev)),
            ));
        }
    }

    fn finish(&mut self, _start: i64, _last: i64) -> Option<Failure> {
        if self.seen == 0 {
            return Some(Failure::new(
                format!(
                    "no `line` event for line {} in the window; is the line modelled (conveyor geometry) and its id right?",
                    self.spec.line
                ),
                None,
            ));
        }
        self.failure.take()
    }
}

#[derive(Debug, Clone)]
enum Spec {
    Event(EventSpec),
    Tag(TagSpec),
    Line(LineSpec),
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
                let (kind, check): (&'static str, Box<dyn Assertion>) = match &a.spec {
                    Spec::Event(s) => (
                        "event",
                        Box::new(EventCheck {
                            spec: s.clone(),
                            count: 0,
                            first_over: None,
                        }),
                    ),
                    Spec::Tag(s) => (
                        "tag",
                        Box::new(TagCheck {
                            spec: s.clone(),
                            carried: None,
                            entered: false,
                            seen: false,
                            failure: None,
                        }),
                    ),
                    Spec::Line(s) => (
                        "line",
                        Box::new(LineCheck {
                            spec: s.clone(),
                            seen: 0,
                            failure: None,
                        }),
                    ),
                };
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
    for (i, mut t) in top.opt_table_array(sink, "event").into_iter().enumerate() {
        let spec = decode_event(sink, &mut t).map(Spec::Event);
        push(sink, &mut out, t, spec, format!("event[{i}]"));
    }
    for (i, mut t) in top.opt_table_array(sink, "tag").into_iter().enumerate() {
        let spec = decode_tag(sink, &mut t).map(Spec::Tag);
        push(sink, &mut out, t, spec, format!("tag[{i}]"));
    }
    for (i, mut t) in top.opt_table_array(sink, "line").into_iter().enumerate() {
        let spec = decode_line(sink, &mut t).map(Spec::Line);
        push(sink, &mut out, t, spec, format!("line[{i}]"));
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
        let describe = match &spec {
            Spec::Event(s) => s.describe(),
            Spec::Tag(s) => s.describe(),
            Spec::Line(s) => s.describe(),
        };
        out.push(Named {
            name: name.unwrap_or_else(|| format!("{path}: {describe}")),
            spec,
        });
    }
}

fn decode_window(sink: &mut Sink, t: &mut Table<'_, '_>) -> Option<Window> {
    let mut ok = true;
    let mut spec = |sink: &mut Sink, t: &mut Table<'_, '_>, key: &'static str| {
        let s = t.opt_str(sink, key)?;
        let parsed = time_spec(&s.value);
        if parsed.is_none() {
            ok = false;
            sink.push(
                Diagnostic::error(s.span.clone(), t.key_path(key), format!("cannot read \"{}\" as a time", s.value))
                    .expected("a duration after the stream's first event, such as \"10s\" or \"1h30m\", or an RFC 3339 time such as \"2027-01-15T08:00:20Z\""),
            );
        }
        parsed.map(|p| (p, s))
    };
    let from = spec(sink, t, "from");
    let to = spec(sink, t, "to");
    if let (Some((f, _)), Some((to_spec, to_loc))) = (&from, &to) {
        let inverted = match (f, to_spec) {
            (TimeSpec::Rel(a), TimeSpec::Rel(b)) | (TimeSpec::Abs(a), TimeSpec::Abs(b)) => a >= b,
            _ => false,
        };
        if inverted {
            ok = false;
            sink.push(
                Diagnostic::error(
                    to_loc.span.clone(),
                    t.key_path("to"),
                    "`to` is not after `from`",
                )
                .expected("a window end later than its start"),
            );
        }
    }
    let text = |x: Option<(TimeSpec, Loc<String>)>| x.map(|(p, s)| (p, s.value));
    ok.then(|| Window {
        from: text(from),
        to: text(to),
    })
}

fn time_spec(s: &str) -> Option<TimeSpec> {
    let s = s.trim();
    if let Ok(d) = humantime::parse_duration(s) {
        return i64::try_from(d.as_nanos()).ok().map(TimeSpec::Rel);
    }
    super::parse_time(s).map(TimeSpec::Abs)
}

const COUNT_MAX: i64 = 1 << 40;

fn decode_event(sink: &mut Sink, t: &mut Table<'_, '_>) -> Option<EventSpec> {
    let kind = t.req_enum(
        sink,
        "type",
        EVENT_TYPES,
        &[("jams", "jam"), ("residuals", "residual")],
    );
    let mut filters = Vec::new();
    for key in EVENT_FILTERS {
        if let Some(v) = t.opt_str(sink, key) {
            filters.push((*key, v.value));
        }
    }
    let mut ok = true;
    let between = match t.opt_str_array(sink, "between") {
        None => None,
        Some(v) if v.len() == 2 => Some((v[0].value.clone(), v[1].value.clone())),
        Some(_) => {
            ok = false;
            sink.push(
                Diagnostic::error(
                    t.key_span("between").unwrap_or(t.span()),
                    t.key_path("between"),
                    "`between` names two eyes",
                )
                .expected("[\"EYE_BEFORE\", \"EYE_AFTER\"]: the jam's `after_eye` and `before_eye`")
                .help("for a jam after the line's last eye, use `after_eye = \"…\"` instead"),
            );
            None
        }
    };
    if between.is_some()
        && let Some(k) = &kind
        && k.value != "jam"
    {
        ok = false;
        sink.push(
            Diagnostic::error(
                t.key_span("between").unwrap_or(t.span()),
                t.key_path("between"),
                format!(
                    "`between` places jams; `{}` events have no place between two eyes",
                    k.value
                ),
            )
            .expected("`type = \"jam\"` with `between`")
            .help("match an eye with `eye = \"…\"`"),
        );
    }
    let window = decode_window(sink, t);
    let happens = t.opt_bool(sink, "happens");
    let at_least = t.opt_int(sink, "at_least", 0, COUNT_MAX);
    let at_most = t.opt_int(sink, "at_most", 0, COUNT_MAX);
    if happens.as_ref().is_some_and(|h| !h.value) {
        for (key, c) in [("at_least", &at_least), ("at_most", &at_most)] {
            if let Some(c) = c
                && c.value != 0
            {
                ok = false;
                sink.push(
                    Diagnostic::error(
                        c.span.clone(),
                        t.key_path(key),
                        "a count contradicts `happens = false`",
                    )
                    .help("drop `happens = false`, or the count"),
                );
            }
        }
    }
    let at_most = match &happens {
        Some(h) if !h.value => Some(0),
        _ => at_most.as_ref().map(|m| m.value as u64),
    };
    // `at_most` alone bounds from above only; otherwise the event must happen.
    let at_least = match (&at_least, at_most) {
        (Some(n), _) => n.value as u64,
        (None, Some(_)) => 0,
        (None, None) => 1,
    };
    if let Some(m) = at_most
        && at_least > m
    {
        ok = false;
        sink.push(
            Diagnostic::error(
                t.key_span("at_least").unwrap_or(t.span()),
                t.key_path("at_least"),
                format!("at_least {at_least} is more than at_most {m}"),
            )
            .expected("at_least <= at_most"),
        );
    }
    let spec = EventSpec {
        kind: kind?.value.to_string(),
        filters,
        between,
        window: window?,
        at_least,
        at_most,
    };
    ok.then_some(spec)
}

/// `min`/`max`-style bounds; `None` when they contradict each other.
fn bounds(
    sink: &mut Sink,
    t: &mut Table<'_, '_>,
    min_key: &'static str,
    max_key: &'static str,
) -> Option<(Option<f64>, Option<f64>)> {
    let min = t.opt_f64(sink, min_key);
    let max = t.opt_f64(sink, max_key);
    if let (Some(a), Some(b)) = (&min, &max)
        && a.value > b.value
    {
        sink.push(
            Diagnostic::error(
                b.span.clone(),
                t.key_path(max_key),
                format!("{max_key} {} is below {min_key} {}", b.value, a.value),
            )
            .expected(format!("{min_key} <= {max_key}")),
        );
        return None;
    }
    Some((min.map(|m| m.value), max.map(|m| m.value)))
}

fn not_good(sink: &mut Sink, t: &mut Table<'_, '_>, key: &'static str) -> NotGood {
    match t.opt_enum(sink, key, &["ignore", "fail"]) {
        Some(v) if v.value == "fail" => NotGood::Fail,
        _ => NotGood::Ignore,
    }
}

fn decode_tag(sink: &mut Sink, t: &mut Table<'_, '_>) -> Option<TagSpec> {
    let tag = t.req_str(sink, "tag");
    let range = bounds(sink, t, "min", "max");
    let bad = not_good(sink, t, "bad");
    let stale = not_good(sink, t, "stale");
    let window = decode_window(sink, t);
    let (min, max) = range?;
    if min.is_none() && max.is_none() {
        sink.push(
            Diagnostic::error(
                t.span(),
                t.key_path("min"),
                "a tag range needs `min`, `max` or both",
            )
            .expected("e.g. `min = 0.5`, `max = 0.7`"),
        );
        return None;
    }
    Some(TagSpec {
        tag: tag?.value,
        min,
        max,
        bad,
        stale,
        window: window?,
    })
}

fn decode_line(sink: &mut Sink, t: &mut Table<'_, '_>) -> Option<LineSpec> {
    let line = t.req_str(sink, "line");
    let throughput = bounds(sink, t, "throughput_min", "throughput_max");
    let wip = bounds(sink, t, "wip_min", "wip_max");
    let window = decode_window(sink, t);
    let (throughput, wip) = (throughput?, wip?);
    if [throughput.0, throughput.1, wip.0, wip.1]
        .iter()
        .all(Option::is_none)
    {
        sink.push(
            Diagnostic::error(
                t.span(),
                t.key_path("throughput_min"),
                "a line assertion needs a bound",
            )
            .expected("one or more of throughput_min, throughput_max, wip_min, wip_max"),
        );
        return None;
    }
    Some(LineSpec {
        line: line?.value,
        throughput,
        wip,
        window: window?,
    })
}

#[cfg(test)]
#[path = "expect_tests.rs"]
mod tests;
