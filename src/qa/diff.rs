//! `twin diff`: what changed between two event streams.
//!
//! Both streams are in tick order and every event of a tick carries the
//! tick's `t`, so the streams are walked side by side one tick at a time
//! (merge-join on `t`): memory is bounded by the largest tick, not the file.
//! Within a tick, events are paired by key (type plus what the event is
//! about, [`Event::key`]); an unpaired event is added or removed, a paired
//! one that differs is changed. With a window, an event left unpaired waits
//! that long for a partner of its key in a later tick of the other stream
//! (a jam a changed config finds a second later is one changed event, not a
//! removed and an added one).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::io::BufRead;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{Event, EventReader, StreamError};

#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// Only these event types are compared; `None`: all.
    pub types: Option<BTreeSet<String>>,
    /// Numbers closer than this (absolute) are equal.
    pub tolerance: f64,
    /// Events of one key this far apart in time still pair (as changed,
    /// `t` among the fields); zero: only within a tick.
    pub window: Duration,
}

/// One field that differs between two paired events. `None` when the
/// field is absent from that side.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldChange {
    /// Path into the event: `value`, `zones.infeed`, `belts[1].slip`.
    pub field: String,
    pub a: Option<Value>,
    pub b: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Difference {
    /// In B only.
    Added(Event),
    /// In A only.
    Removed(Event),
    /// In both, with these fields different.
    Changed {
        a: Event,
        b: Event,
        fields: Vec<FieldChange>,
    },
}

impl Difference {
    pub fn kind(&self) -> &'static str {
        match self {
            Difference::Added(_) => "added",
            Difference::Removed(_) => "removed",
            Difference::Changed { .. } => "changed",
        }
    }

    /// The event the difference is about (B's for added, else A's).
    pub fn event(&self) -> &Event {
        match self {
            Difference::Added(e) | Difference::Removed(e) => e,
            Difference::Changed { a, .. } => a,
        }
    }

    /// One line of `twin diff`'s human output (without a newline).
    pub fn render(&self) -> String {
        let e = self.event();
        let mut s = String::new();
        match self {
            Difference::Added(b) => {
                let _ = write!(s, "  + {} {} (B:{}) {}", e.kind, e.key(), b.line, b.text);
            }
            Difference::Removed(a) => {
                let _ = write!(s, "  - {} {} (A:{}) {}", e.kind, e.key(), a.line, a.text);
            }
            Difference::Changed { a, b, fields } => {
                let _ = write!(s, "  ~ {} {} (A:{}, B:{})", e.kind, e.key(), a.line, b.line);
                for (i, f) in fields.iter().enumerate() {
                    let show = |v: &Option<Value>| {
                        v.as_ref().map_or("(absent)".to_string(), Value::to_string)
                    };
                    let _ = write!(
                        s,
                        "{} {}: {} -> {}",
                        if i == 0 { "" } else { "," },
                        f.field,
                        show(&f.a),
                        show(&f.b)
                    );
                }
            }
        }
        s
    }

    /// One line of `twin diff --json` (docs/qa.md), keys in a fixed order
    /// and the events as they were written.
    pub fn to_json(&self) -> String {
        let e = self.event();
        let mut o = vec![
            ("diff", json!(self.kind()).to_string()),
            ("t", json!(super::format_time(e.t_ns)).to_string()),
            ("type", json!(e.kind).to_string()),
            ("key", json!(e.key()).to_string()),
        ];
        match self {
            Difference::Added(b) => {
                o.push(("line_b", b.line.to_string()));
                o.push(("b", b.text.clone()));
            }
            Difference::Removed(a) => {
                o.push(("line_a", a.line.to_string()));
                o.push(("a", a.text.clone()));
            }
            Difference::Changed { a, b, fields } => {
                o.push(("line_a", a.line.to_string()));
                o.push(("line_b", b.line.to_string()));
                let fields: Vec<String> = fields
                    .iter()
                    .map(|f| {
                        let mut m = vec![("field", json!(f.field).to_string())];
                        if let Some(v) = &f.a {
                            m.push(("a", v.to_string()));
                        }
                        if let Some(v) = &f.b {
                            m.push(("b", v.to_string()));
                        }
                        object(&m)
                    })
                    .collect();
                o.push(("fields", format!("[{}]", fields.join(","))));
            }
        }
        object(&o)
    }
}

/// A JSON object from keys and already-encoded values, in this order.
fn object(pairs: &[(&str, String)]) -> String {
    let body: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}:{v}", json!(k)))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// Differences of one event type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
}

impl Counts {
    pub fn total(&self) -> u64 {
        self.added + self.removed + self.changed
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct DiffSummary {
    /// Events compared (after the type filter) on each side.
    pub events_a: u64,
    pub events_b: u64,
    /// Per event type with at least one difference.
    pub per_type: BTreeMap<String, Counts>,
}

impl DiffSummary {
    pub fn identical(&self) -> bool {
        self.per_type.values().all(|c| c.total() == 0)
    }

    pub fn totals(&self) -> Counts {
        self.per_type
            .values()
            .fold(Counts::default(), |t, c| Counts {
                added: t.added + c.added,
                removed: t.removed + c.removed,
                changed: t.changed + c.changed,
            })
    }

    /// The closing table of the human output.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if !self.per_type.is_empty() {
            let _ = writeln!(
                s,
                "{:<12} {:>8} {:>8} {:>8}",
                "type", "added", "removed", "changed"
            );
            for (t, c) in &self.per_type {
                let _ = writeln!(
                    s,
                    "{t:<12} {:>8} {:>8} {:>8}",
                    c.added, c.removed, c.changed
                );
            }
        }
        let t = self.totals();
        if self.identical() {
            let _ = writeln!(
                s,
                "identical: {} events in A, {} in B",
                self.events_a, self.events_b
            );
        } else {
            let _ = writeln!(
                s,
                "{} difference{} ({} added, {} removed, {} changed): {} events in A, {} in B",
                t.total(),
                if t.total() == 1 { "" } else { "s" },
                t.added,
                t.removed,
                t.changed,
                self.events_a,
                self.events_b
            );
        }
        s
    }

    /// The closing line of `twin diff --json`.
    pub fn to_json(&self) -> String {
        let t = self.totals();
        let counts = |c: &Counts| {
            object(&[
                ("added", c.added.to_string()),
                ("removed", c.removed.to_string()),
                ("changed", c.changed.to_string()),
            ])
        };
        let types: Vec<(&str, String)> = self
            .per_type
            .iter()
            .map(|(k, c)| (k.as_str(), counts(c)))
            .collect();
        object(&[
            ("diff", "\"summary\"".to_string()),
            ("identical", self.identical().to_string()),
            ("events_a", self.events_a.to_string()),
            ("events_b", self.events_b.to_string()),
            ("added", t.added.to_string()),
            ("removed", t.removed.to_string()),
            ("changed", t.changed.to_string()),
            ("types", object(&types)),
        ])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error(transparent)]
    Input(#[from] StreamError),
    /// Whoever took the differences failed (e.g. stdout closed).
    #[error("cannot write the differences: {0}")]
    Output(#[source] std::io::Error),
}

/// One side of the walk, with the event read ahead.
struct Side<R> {
    reader: EventReader<R>,
    peeked: Option<Event>,
    count: u64,
}

impl<R: BufRead> Side<R> {
    fn new(reader: EventReader<R>) -> Self {
        Side {
            reader,
            peeked: None,
            count: 0,
        }
    }

    /// Fill `peeked` with the next event of a wanted type.
    fn peek(&mut self, opts: &DiffOptions) -> Result<Option<i64>, StreamError> {
        while self.peeked.is_none() {
            match self.reader.next_event()? {
                None => return Ok(None),
                Some(e) if opts.types.as_ref().is_none_or(|t| t.contains(&e.kind)) => {
                    self.peeked = Some(e);
                }
                Some(_) => {}
            }
        }
        Ok(self.peeked.as_ref().map(|e| e.t_ns))
    }

    /// Every wanted event at tick `t`.
    fn take_tick(&mut self, t: i64, opts: &DiffOptions) -> Result<Vec<Event>, StreamError> {
        let mut out = Vec::new();
        while self.peek(opts)? == Some(t) {
            if let Some(e) = self.peeked.take() {
                self.count += 1;
                out.push(e);
            }
        }
        Ok(out)
    }
}

/// Walk two streams side by side and hand each difference, in time order,
/// to `on_diff`. Reads each stream once, holding one tick of each, plus the
/// unpaired events and differences of the last `window`.
pub fn diff<A: BufRead, B: BufRead>(
    a: EventReader<A>,
    b: EventReader<B>,
    opts: &DiffOptions,
    mut on_diff: impl FnMut(&Difference) -> std::io::Result<()>,
) -> Result<DiffSummary, DiffError> {
    let mut a = Side::new(a);
    let mut b = Side::new(b);
    let mut summary = DiffSummary::default();
    let w = i64::try_from(opts.window.as_nanos()).unwrap_or(i64::MAX);
    // Events of one side not yet paired, oldest first, with their keys.
    let mut pend_a: VecDeque<(Event, String)> = VecDeque::new();
    let mut pend_b: VecDeque<(Event, String)> = VecDeque::new();
    // Differences wait here until nothing earlier can come, so they leave
    // in time order even when a pairing across ticks is decided late.
    let mut ready = Ready::default();
    let mut emit = |ready: &mut Ready, before: i64, summary: &mut DiffSummary| {
        while let Some(entry) = ready.map.first_entry() {
            if entry.key().0 >= before {
                break;
            }
            let d = entry.remove();
            let c = summary.per_type.entry(d.event().kind.clone()).or_default();
            match &d {
                Difference::Added(_) => c.added += 1,
                Difference::Removed(_) => c.removed += 1,
                Difference::Changed { .. } => c.changed += 1,
            }
            on_diff(&d).map_err(DiffError::Output)?;
        }
        Ok::<(), DiffError>(())
    };
    loop {
        let next = match (a.peek(opts)?, b.peek(opts)?) {
            (None, None) => None,
            (Some(x), None) | (None, Some(x)) => Some(x),
            (Some(x), Some(y)) => Some(x.min(y)),
        };
        // Nothing at or after `next` pairs with an event before `horizon`.
        let horizon = next.map_or(i64::MAX, |t| t.saturating_sub(w));
        while pend_a.front().is_some_and(|(e, _)| e.t_ns < horizon) {
            if let Some((e, _)) = pend_a.pop_front() {
                ready.push(Difference::Removed(e));
            }
        }
        while pend_b.front().is_some_and(|(e, _)| e.t_ns < horizon) {
            if let Some((e, _)) = pend_b.pop_front() {
                ready.push(Difference::Added(e));
            }
        }
        emit(&mut ready, horizon, &mut summary)?;
        let Some(t) = next else { break };
        let ta = a.take_tick(t, opts)?;
        let tb = b.take_tick(t, opts)?;
        let (changed, only_a, only_b) = align_tick(ta, tb, opts.tolerance);
        changed.into_iter().for_each(|d| ready.push(d));
        for ea in only_a {
            let key = ea.key();
            match take_partner(&mut pend_b, &ea, &key) {
                Some(eb) => ready.push(changed_across(ea, eb, opts.tolerance)),
                None => pend_a.push_back((ea, key)),
            }
        }
        for eb in only_b {
            let key = eb.key();
            match take_partner(&mut pend_a, &eb, &key) {
                Some(ea) => ready.push(changed_across(ea, eb, opts.tolerance)),
                None => pend_b.push_back((eb, key)),
            }
        }
    }
    summary.events_a = a.count;
    summary.events_b = b.count;
    Ok(summary)
}

/// Differences by event time (then by when they were decided).
#[derive(Default)]
struct Ready {
    map: BTreeMap<(i64, u64), Difference>,
    seq: u64,
}

impl Ready {
    fn push(&mut self, d: Difference) {
        self.seq += 1;
        self.map.insert((d.event().t_ns, self.seq), d);
    }
}

/// The oldest pending event of the other side with the same type and key.
fn take_partner(pending: &mut VecDeque<(Event, String)>, e: &Event, key: &str) -> Option<Event> {
    let i = pending
        .iter()
        .position(|(p, k)| p.kind == e.kind && k == key)?;
    pending.remove(i).map(|(p, _)| p)
}

/// A pair from two ticks: its time moved, and whatever else differs.
fn changed_across(a: Event, b: Event, tol: f64) -> Difference {
    let mut fields = vec![FieldChange {
        field: "t".into(),
        a: a.fields.get("t").cloned(),
        b: b.fields.get("t").cloned(),
    }];
    fields.extend(changes(&a, &b, tol));
    Difference::Changed { a, b, fields }
}

/// Pair the events of one tick: the pairs that differ, and the events of
/// each side left without a partner. Equal events pair first, so that of
/// two residuals of one eye the one that is gone is left over rather than
/// both changed; the rest pair in stream order within their key.
pub fn align_tick(
    a: Vec<Event>,
    b: Vec<Event>,
    tol: f64,
) -> (Vec<Difference>, Vec<Event>, Vec<Event>) {
    let keys_a: Vec<(String, String)> = a.iter().map(|e| (e.kind.clone(), e.key())).collect();
    let mut by_key: HashMap<(String, String), Vec<usize>> = HashMap::new();
    for (j, e) in b.iter().enumerate() {
        by_key.entry((e.kind.clone(), e.key())).or_default().push(j);
    }
    let mut pair_of_a: Vec<Option<usize>> = vec![None; a.len()];
    let mut b_used = vec![false; b.len()];
    for (i, ea) in a.iter().enumerate() {
        if let Some(js) = by_key.get(&keys_a[i])
            && let Some(&j) = js
                .iter()
                .find(|&&j| !b_used[j] && changes(ea, &b[j], tol).is_empty())
        {
            pair_of_a[i] = Some(j);
            b_used[j] = true;
        }
    }
    for (i, k) in keys_a.iter().enumerate() {
        if pair_of_a[i].is_none()
            && let Some(js) = by_key.get(k)
            && let Some(&j) = js.iter().find(|&&j| !b_used[j])
        {
            pair_of_a[i] = Some(j);
            b_used[j] = true;
        }
    }
    let mut changed = Vec::new();
    let mut only_a = Vec::new();
    let mut b_slots: Vec<Option<Event>> = b.into_iter().map(Some).collect();
    for (ea, pair) in a.into_iter().zip(pair_of_a) {
        match pair.and_then(|j| b_slots[j].take()) {
            None => only_a.push(ea),
            Some(eb) => {
                let fields = changes(&ea, &eb, tol);
                if !fields.is_empty() {
                    changed.push(Difference::Changed {
                        a: ea,
                        b: eb,
                        fields,
                    });
                }
            }
        }
    }
    (changed, only_a, b_slots.into_iter().flatten().collect())
}

/// Every field that differs between two events (`t` aside: they share it).
pub fn changes(a: &Event, b: &Event, tol: f64) -> Vec<FieldChange> {
    let mut out = Vec::new();
    compare_maps(&a.fields, &b.fields, "", tol, &mut out, true);
    out
}

fn compare_maps(
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    path: &str,
    tol: f64,
    out: &mut Vec<FieldChange>,
    top: bool,
) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    for (k, va) in a {
        if top && k == "t" {
            continue;
        }
        match b.get(k) {
            Some(vb) => compare(va, vb, &join(k), tol, out),
            None => out.push(FieldChange {
                field: join(k),
                a: Some(va.clone()),
                b: None,
            }),
        }
    }
    for (k, vb) in b {
        if !(a.contains_key(k) || (top && k == "t")) {
            out.push(FieldChange {
                field: join(k),
                a: None,
                b: Some(vb.clone()),
            });
        }
    }
}

fn compare(a: &Value, b: &Value, path: &str, tol: f64, out: &mut Vec<FieldChange>) {
    let same = match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            compare_maps(x, y, path, tol, out, false);
            true
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                compare(p, q, &format!("{path}[{i}]"), tol, out);
            }
            true
        }
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(p), Some(q)) => p == q || (p - q).abs() <= tol,
            _ => x == y,
        },
        _ => a == b,
    };
    if !same {
        out.push(FieldChange {
            field: path.to_string(),
            a: Some(a.clone()),
            b: Some(b.clone()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &str, b: &str, opts: &DiffOptions) -> (Vec<Difference>, DiffSummary) {
        let mut out = Vec::new();
        let s = diff(
            EventReader::new(a.as_bytes(), "a"),
            EventReader::new(b.as_bytes(), "b"),
            opts,
            |d| {
                out.push(d.clone());
                Ok(())
            },
        )
        .expect("diffs");
        (out, s)
    }

    const T1: &str = "2027-01-15T08:00:01.000Z";
    const T2: &str = "2027-01-15T08:00:02.000Z";

    fn tag(t: &str, name: &str, v: f64) -> String {
        format!(
            r#"{{"v":1,"type":"tag","t":"{t}","tag":"{name}","machine":null,"value":{v:?},"quality":"good"}}"#
        )
    }

    fn res(t: &str, eye: &str, kind: &str) -> String {
        format!(
            r#"{{"v":1,"type":"residual","t":"{t}","line":"l","eye":"{eye}","tag":"x","residual":"{kind}"}}"#
        )
    }

    #[test]
    fn numbers_within_the_tolerance_are_equal_and_paths_name_nested_fields() {
        let a = format!(
            "{}\n{}\n",
            tag(T1, "a", 1.0),
            r#"{"v":1,"type":"line","t":"2027-01-15T08:00:01.000Z","line":"l","zones":{"in":3},"belts":[{"slip":0.1}]}"#
        );
        let b = format!(
            "{}\n{}\n",
            tag(T1, "a", 1.0005),
            r#"{"v":1,"type":"line","t":"2027-01-15T08:00:01.000Z","line":"l","zones":{"in":4},"belts":[{"slip":0.1}],"x":1}"#
        );
        let loose = DiffOptions {
            tolerance: 0.001,
            ..Default::default()
        };
        let (d, s) = run(&a, &b, &loose);
        assert_eq!(d.len(), 1, "{d:?}");
        let Difference::Changed { fields, .. } = &d[0] else {
            panic!("{d:?}")
        };
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["zones.in", "x"]);
        assert_eq!(fields[1].a, None);
        assert_eq!(s.per_type["line"].changed, 1);
        let (d, _) = run(&a, &b, &DiffOptions::default());
        assert_eq!(d.len(), 2, "without tolerance the tag differs too: {d:?}");
    }

    #[test]
    fn of_two_residuals_of_one_eye_the_gone_one_is_removed_not_both_changed() {
        let a = format!("{}\n{}\n", res(T1, "e1", "late"), res(T1, "e1", "missing"));
        let b = format!("{}\n", res(T1, "e1", "missing"));
        let (d, s) = run(&a, &b, &DiffOptions::default());
        assert_eq!(d.len(), 1);
        assert!(
            matches!(&d[0], Difference::Removed(e) if e.line == 1),
            "{d:?}"
        );
        assert_eq!(s.totals().removed, 1);
    }

    #[test]
    fn ticks_present_on_one_side_only_are_added_or_removed_and_the_filter_applies() {
        let a = format!("{}\n{}\n", tag(T1, "a", 1.0), res(T2, "e1", "late"));
        let b = format!("{}\n{}\n", tag(T1, "a", 1.0), tag(T2, "a", 2.0));
        let (d, s) = run(&a, &b, &DiffOptions::default());
        let kinds: Vec<&str> = d.iter().map(Difference::kind).collect();
        assert_eq!(kinds, ["removed", "added"]);
        assert_eq!((s.events_a, s.events_b), (2, 2));
        let only = DiffOptions {
            types: Some(["residual".to_string()].into()),
            ..Default::default()
        };
        let (d, s) = run(&a, &b, &only);
        assert_eq!(d.len(), 1);
        assert_eq!((s.events_a, s.events_b), (1, 0));
        let json: Value = serde_json::from_str(&d[0].to_json()).expect("valid JSON");
        assert_eq!(json["diff"], "removed");
        assert_eq!(json["a"]["residual"], "late");
        assert_eq!(json["key"], "l/e1");
        assert_eq!(json["line_a"], 2);
    }

    #[test]
    fn within_the_window_a_moved_event_is_changed_and_beyond_it_removed_and_added() {
        let t3 = "2027-01-15T08:00:03.000Z";
        let t9 = "2027-01-15T08:00:09.000Z";
        let a = format!(
            "{}\n{}\n{}\n",
            tag(T1, "a", 1.0),
            res(T1, "e1", "late"),
            tag(t9, "a", 1.0)
        );
        let b = format!(
            "{}\n{}\n{}\n",
            tag(T1, "a", 1.0),
            res(t3, "e1", "late"),
            tag(t9, "a", 1.0)
        );
        let (d, _) = run(&a, &b, &DiffOptions::default());
        let kinds: Vec<&str> = d.iter().map(Difference::kind).collect();
        assert_eq!(kinds, ["removed", "added"]);
        let wide = DiffOptions {
            window: Duration::from_secs(2),
            ..Default::default()
        };
        let (d, s) = run(&a, &b, &wide);
        assert_eq!(d.len(), 1, "{d:?}");
        let Difference::Changed { fields, .. } = &d[0] else {
            panic!("{d:?}")
        };
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].field, "t");
        assert_eq!(fields[0].b, Some(Value::String(t3.into())));
        assert_eq!(s.totals().changed, 1);
        // B's event earlier than A's pairs the same way.
        let (d, _) = run(&b, &a, &wide);
        assert!(matches!(&d[..], [Difference::Changed { .. }]), "{d:?}");
        // Just under the distance: apart again, and still in time order.
        let narrow = DiffOptions {
            window: Duration::from_millis(1999),
            ..Default::default()
        };
        let (d, _) = run(&a, &b, &narrow);
        let times: Vec<i64> = d.iter().map(|d| d.event().t_ns).collect();
        assert_eq!(d.len(), 2);
        assert!(times[0] < times[1], "{d:?}");
    }

    /// A stream made up on the fly, counting the bytes handed out: what the
    /// diff has read, never the whole file at once.
    struct Generated {
        tick: u64,
        ticks: u64,
        /// Tick whose value differs (on one side only).
        odd_tick: Option<u64>,
        line: Vec<u8>,
        pos: usize,
        read: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl std::io::Read for Generated {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            if self.pos == self.line.len() {
                if self.tick == self.ticks {
                    return Ok(0);
                }
                let t = super::super::format_time(
                    1_800_000_000_000_000_000 + self.tick as i64 * 100_000_000,
                );
                let v = if self.odd_tick == Some(self.tick) {
                    2.0
                } else {
                    1.0
                };
                self.line = format!("{}\n{}\n", tag(&t, "a", v), tag(&t, "b", 1.0)).into_bytes();
                self.pos = 0;
                self.tick += 1;
            }
            let n = out.len().min(self.line.len() - self.pos);
            out[..n].copy_from_slice(&self.line[self.pos..self.pos + n]);
            self.pos += n;
            self.read.set(self.read.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn diff_reads_a_tick_at_a_time_not_the_whole_file() {
        let ticks = 20_000;
        let side = |odd| {
            let read = std::rc::Rc::new(std::cell::Cell::new(0));
            let g = Generated {
                tick: 0,
                ticks,
                odd_tick: odd,
                line: Vec::new(),
                pos: 0,
                read: read.clone(),
            };
            (EventReader::new(std::io::BufReader::new(g), "gen"), read)
        };
        let (a, read_a) = side(None);
        let (b, read_b) = side(Some(10));
        let mut read_at_first = None;
        let s = diff(a, b, &DiffOptions::default(), |_| {
            read_at_first.get_or_insert((read_a.get(), read_b.get()));
            Ok(())
        })
        .expect("diffs");
        assert_eq!(s.totals().changed, 1);
        assert_eq!(s.events_a, 2 * ticks);
        let (ra, rb) = read_at_first.expect("one difference");
        let total = read_a.get();
        assert!(total > 4_000_000, "the streams are {total} bytes");
        // The difference at tick 10 is reported with only a buffer's worth read.
        assert!(
            ra < 64 << 10 && rb < 64 << 10,
            "{ra} and {rb} of {total} bytes read"
        );
    }
}
