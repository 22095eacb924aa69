//! The kinds of assertion an expectations file can hold, each with its
//! decoder (from its TOML table, with located diagnostics) and its check
//! (an [`Assertion`] that sees every event once).
//!
//! This is the extension point: a new kind (alarms that must clear in time,
//! setpoint decisions within the guard's bounds, in later stages) is a row
//! in [`KINDS`], a [`Spec`] variant, a decoder and an [`Assertion`] impl.
//! The checker, the report and the JUnit writer need nothing else.

use std::collections::BTreeSet;

use serde_json::Value;

use super::expect::{EVENT_TYPES, Failure, Offending};
use super::{Event, TimeSpec, time_spec};
use crate::config::Diagnostic;
use crate::config::Loc;
use crate::config::decode::{Sink, Table};
use crate::config::diagnostics::did_you_mean;

/// The table arrays of an expectations file, in the order they are checked
/// and reported, each with its decoder.
pub(super) const KINDS: &[(&str, Decoder)] = &[
    ("event", decode_event),
    ("tag", decode_tag),
    ("line", decode_line),
];

type Decoder = fn(&mut Sink, &mut Table<'_, '_>) -> Option<Spec>;

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

/// `from <= t < to`; either end may be open.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Window {
    from: Option<(TimeSpec, String)>,
    to: Option<(TimeSpec, String)>,
}

impl Window {
    pub(super) fn start_ns(&self, start: i64) -> i64 {
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

/// One kind of assertion, checked over a stream in one pass.
///
/// `start` is the time of the stream's first event (relative windows count
/// from it). `finish` is called once, after the last event, with the times
/// of the first and last events; it is not called when the stream never
/// reached the assertion's window (the checker fails it for that).
pub(super) trait Assertion: Send {
    fn window(&self) -> &Window;
    fn observe(&mut self, ev: &Event, start: i64);
    fn finish(&mut self, start: i64, last: i64) -> Option<Failure>;
}

/// `[[event]]`: events of a type (and subject, place, state) happen, or do
/// not, within a window, between `at_least` and `at_most` times.
#[derive(Debug, Clone)]
pub(super) struct EventSpec {
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
pub(super) struct TagSpec {
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
    /// Tag names in the stream while this one has not shown up, for a
    /// did-you-mean (bounded by the plant's tag count).
    others: BTreeSet<String>,
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
        if ev.kind != "tag" {
            return;
        }
        if ev.str_field("tag") != Some(self.spec.tag.as_str()) {
            if !self.seen
                && let Some(name) = ev.str_field("tag")
                && !self.others.contains(name)
            {
                self.others.insert(name.to_string());
            }
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
                    "no `tag` event for {} in the stream; {}",
                    self.spec.tag,
                    did_you_mean(&self.spec.tag, self.others.iter().map(String::as_str))
                        .unwrap_or_else(|| "check the tag's name".into())
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
pub(super) struct LineSpec {
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

/// A decoded assertion of any kind.
#[derive(Debug, Clone)]
pub(super) enum Spec {
    Event(EventSpec),
    Tag(TagSpec),
    Line(LineSpec),
}

impl Spec {
    /// What it checks, for a default name.
    pub(super) fn describe(&self) -> String {
        match self {
            Spec::Event(s) => s.describe(),
            Spec::Tag(s) => s.describe(),
            Spec::Line(s) => s.describe(),
        }
    }

    /// A fresh check of it, with the table it came from.
    pub(super) fn check(&self) -> (&'static str, Box<dyn Assertion>) {
        match self {
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
                    others: BTreeSet::new(),
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
        }
    }
}

pub(super) fn decode_window(sink: &mut Sink, t: &mut Table<'_, '_>) -> Option<Window> {
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

const COUNT_MAX: i64 = 1 << 40;

fn decode_event(sink: &mut Sink, t: &mut Table<'_, '_>) -> Option<Spec> {
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
    ok.then_some(Spec::Event(spec))
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

fn decode_tag(sink: &mut Sink, t: &mut Table<'_, '_>) -> Option<Spec> {
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
    Some(Spec::Tag(TagSpec {
        tag: tag?.value,
        min,
        max,
        bad,
        stale,
        window: window?,
    }))
}

fn decode_line(sink: &mut Sink, t: &mut Table<'_, '_>) -> Option<Spec> {
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
    Some(Spec::Line(LineSpec {
        line: line?.value,
        throughput,
        wip,
        window: window?,
    }))
}
