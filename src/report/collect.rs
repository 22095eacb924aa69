//! What the report keeps while the input streams past: per tag and per line
//! a few bounded series (series.rs), counts per event type, and the first
//! notable events for the table. Nothing grows with the file's length.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::input::{Event, Val};
use super::series::{Counts, Grid, Level, QualityTrack, Series};
use crate::twin::record::{RecordValue, SampleRecord};

/// Rows kept for the table of residual, jam, eye and gap events.
pub const MAX_ROWS: usize = 200;
/// Tags followed with plots when `--tags` is not given; the rest are only
/// counted. Each costs about 50 KiB (a test pins it).
pub const MAX_TRACKED_TAGS: usize = 2_000;
/// Lines followed with plots.
pub const MAX_LINES: usize = 32;
/// Distinct event types counted by name; further unknown ones are summed.
const MAX_TYPES: usize = 32;
/// Jam and stuck-eye spans kept per line for shading.
const MAX_SPANS: usize = 500;
/// Conveyor ids remembered per line (to find belt-speed tags).
const MAX_CONVEYORS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Num,
    Bool,
    None,
}

/// One tag, as far as the report follows it.
#[derive(Debug)]
pub struct TagTrack {
    pub name: String,
    pub machine: Option<String>,
    pub unit: Option<String>,
    /// The kind of value it carries: a number beats a boolean beats none.
    pub kind: Kind,
    /// `tag` events: changes of value or quality.
    pub events: u64,
    /// `tag` events below good.
    pub not_good: u64,
    pub samples: u64,
    pub last: Level,
    pub last_reason: Option<String>,
    pub values: Series,
    pub quality: QualityTrack,
    /// Order of first appearance (the config's tag order on the first tick).
    pub order: usize,
}

/// A stretch of a jam or a stuck eye, for shading.
#[derive(Debug, Clone, PartialEq)]
pub struct Marked {
    pub from: i64,
    pub to: Option<i64>,
    pub label: String,
}

#[derive(Debug, Default)]
pub struct LineTrack {
    pub id: String,
    pub wip: Series,
    pub throughput: Series,
    pub quality: QualityTrack,
    pub residuals: Counts,
    pub residual_total: u64,
    pub eye_marks: Counts,
    pub jams: Vec<Marked>,
    pub stuck: Vec<Marked>,
    /// Spans not kept (beyond MAX_SPANS).
    pub spans_dropped: u64,
    pub conveyors: Vec<String>,
}

/// One row of the notable-events table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub t: Option<i64>,
    pub kind: &'static str,
    pub line: String,
    pub what: String,
}

/// Everything the report needs from the input.
#[derive(Debug, Default)]
pub struct Collector {
    pub grid: Grid,
    pub first: Option<i64>,
    pub last: Option<i64>,
    pub tags: Vec<TagTrack>,
    tag_index: HashMap<String, usize>,
    /// Tags only counted: beyond MAX_TRACKED_TAGS, or not asked for.
    pub untracked_tags: u64,
    untracked_seen: HashSet<String>,
    /// `--tags`: follow only these.
    only: Option<Vec<String>>,
    pub lines: Vec<LineTrack>,
    line_index: HashMap<String, usize>,
    pub counts: BTreeMap<String, u64>,
    pub events: u64,
    pub samples: u64,
    pub samples_untracked: u64,
    pub rows: Vec<Row>,
    pub rows_more: u64,
    pub gaps: Vec<(i64, i64)>,
}

impl Collector {
    pub fn new(only: Option<Vec<String>>) -> Self {
        Collector {
            only,
            ..Collector::default()
        }
    }

    /// Move the time axis to cover `t`, merging buckets everywhere if it grew.
    fn fit(&mut self, t: i64) {
        self.first = Some(self.first.map_or(t, |f| f.min(t)));
        self.last = Some(self.last.map_or(t, |l| l.max(t)));
        let d = self.grid.fit(t);
        if d == 0 {
            return;
        }
        for tag in &mut self.tags {
            tag.values.halve(d);
            tag.quality.halve(d);
        }
        for l in &mut self.lines {
            l.wip.halve(d);
            l.throughput.halve(d);
            l.quality.halve(d);
            l.residuals.halve(d);
            l.eye_marks.halve(d);
        }
    }

    fn count(&mut self, kind: &str) {
        self.events += 1;
        if let Some(n) = self.counts.get_mut(kind) {
            *n += 1;
        } else if self.counts.len() < MAX_TYPES {
            self.counts.insert(kind.to_string(), 1);
        } else {
            *self.counts.entry("(other types)".to_string()).or_default() += 1;
        }
    }

    fn row(&mut self, row: Row) {
        if self.rows.len() < MAX_ROWS {
            self.rows.push(row);
        } else {
            self.rows_more += 1;
        }
    }

    /// The tag's track, created on first sight if it is to be followed.
    fn tag(&mut self, name: &str) -> Option<&mut TagTrack> {
        if let Some(&i) = self.tag_index.get(name) {
            return Some(&mut self.tags[i]);
        }
        let wanted = match &self.only {
            Some(only) => only.iter().any(|n| n == name),
            None => self.tags.len() < MAX_TRACKED_TAGS,
        };
        if !wanted {
            if self.untracked_seen.len() < MAX_TRACKED_TAGS
                && self.untracked_seen.insert(name.to_string())
            {
                self.untracked_tags += 1;
            }
            return None;
        }
        let i = self.tags.len();
        self.tag_index.insert(name.to_string(), i);
        self.tags.push(TagTrack {
            name: name.to_string(),
            machine: None,
            unit: None,
            kind: Kind::None,
            events: 0,
            not_good: 0,
            samples: 0,
            last: Level::Good,
            last_reason: None,
            values: Series::default(),
            quality: QualityTrack::default(),
            order: i,
        });
        Some(&mut self.tags[i])
    }

    fn line(&mut self, id: &str) -> Option<&mut LineTrack> {
        if let Some(&i) = self.line_index.get(id) {
            return Some(&mut self.lines[i]);
        }
        if self.lines.len() >= MAX_LINES {
            return None;
        }
        let i = self.lines.len();
        self.line_index.insert(id.to_string(), i);
        self.lines.push(LineTrack {
            id: id.to_string(),
            ..LineTrack::default()
        });
        Some(&mut self.lines[i])
    }

    /// Every tag name seen, followed or not (for did-you-mean hints).
    pub fn seen_names(&self) -> impl Iterator<Item = &str> {
        self.tags
            .iter()
            .map(|t| t.name.as_str())
            .chain(self.untracked_seen.iter().map(String::as_str))
    }

    pub fn push_event(&mut self, e: &Event<'_>) {
        self.count(e.kind());
        match e {
            Event::Tag {
                t,
                tag,
                machine,
                unit,
                value,
                quality,
                reason,
            } => {
                self.fit(*t);
                let grid = self.grid;
                let Some(track) = self.tag(tag) else { return };
                if track.machine.is_none() {
                    track.machine = machine.as_deref().map(str::to_string);
                }
                if track.unit.is_none() {
                    track.unit = unit.as_deref().map(str::to_string);
                }
                track.events += 1;
                if *quality != Level::Good {
                    track.not_good += 1;
                }
                track.last = *quality;
                track.last_reason = reason.as_deref().map(str::to_string);
                track.quality.push(&grid, *t, *quality);
                push_value(track, &grid, *t, *value);
            }
            Event::Line {
                t,
                line,
                wip,
                throughput,
                quality,
                conveyors,
            } => {
                self.fit(*t);
                let grid = self.grid;
                let Some(l) = self.line(line) else { return };
                l.wip.push(&grid, *t, *wip);
                l.throughput.push(&grid, *t, *throughput);
                l.quality.push(&grid, *t, *quality);
                for c in conveyors {
                    if l.conveyors.len() < MAX_CONVEYORS && !l.conveyors.iter().any(|k| k == c) {
                        l.conveyors.push(c.to_string());
                    }
                }
            }
            Event::Residual {
                t,
                line,
                eye,
                kind,
                lag_ms,
            } => {
                self.fit(*t);
                let grid = self.grid;
                if let Some(l) = self.line(line) {
                    l.residuals.push(&grid, *t);
                    l.residual_total += 1;
                }
                let what = match lag_ms {
                    Some(ms) => format!("{kind} at {eye} ({ms} ms late)"),
                    None => format!("{kind} at {eye}"),
                };
                self.row(Row {
                    t: Some(*t),
                    kind: "residual",
                    line: line.to_string(),
                    what,
                });
            }
            Event::Eye {
                t,
                line,
                eye,
                state,
            } => {
                self.fit(*t);
                let grid = self.grid;
                if let Some(l) = self.line(line) {
                    l.eye_marks.push(&grid, *t);
                    if state != "ok" {
                        let label = format!("{eye} {state}");
                        push_span(&mut l.stuck, &mut l.spans_dropped, *t, label);
                    } else if let Some(s) =
                        l.stuck.iter_mut().rev().find(|s| {
                            s.to.is_none() && s.label.split(' ').next() == Some(eye.as_ref())
                        })
                    {
                        s.to = Some(*t);
                    }
                }
                self.row(Row {
                    t: Some(*t),
                    kind: "eye",
                    line: line.to_string(),
                    what: format!("{eye} {state}"),
                });
            }
            Event::Jam {
                t,
                line,
                start,
                after_eye,
                before_eye,
            } => {
                self.fit(*t);
                let place = match before_eye {
                    Some(b) => format!("between {after_eye} and {b}"),
                    None => format!("after {after_eye}"),
                };
                if let Some(l) = self.line(line) {
                    if *start {
                        push_span(&mut l.jams, &mut l.spans_dropped, *t, place.clone());
                    } else if let Some(s) = l
                        .jams
                        .iter_mut()
                        .rev()
                        .find(|s| s.to.is_none() && s.label == place)
                    {
                        s.to = Some(*t);
                    }
                }
                let state = if *start { "start" } else { "clear" };
                self.row(Row {
                    t: Some(*t),
                    kind: "jam",
                    line: line.to_string(),
                    what: format!("{state}: {place}"),
                });
            }
            Event::Gap {
                t,
                until,
                ticks,
                events,
            } => {
                if let Some(t) = t {
                    self.fit(*t);
                    if self.gaps.len() < MAX_SPANS {
                        self.gaps.push((*t, until.unwrap_or(*t)));
                    }
                }
                if let Some(u) = until {
                    self.fit(*u);
                }
                self.row(Row {
                    t: *t,
                    kind: "gap",
                    line: String::new(),
                    what: format!("{ticks} ticks ({events} events) left out"),
                });
            }
            Event::Other { t, .. } => {
                if let Some(t) = t {
                    self.fit(*t);
                }
            }
        }
    }

    /// A sample as the core received it: its value joins the tag's plot
    /// (at its source time), so values that changed and changed back
    /// within one tick, which the event stream never shows, are seen too.
    /// Quality comes from the `tag` events only.
    pub fn push_sample(&mut self, s: &SampleRecord) {
        self.samples += 1;
        let t = s.source_time_ns;
        self.fit(t);
        let grid = self.grid;
        let Some(track) = self.tag(&s.tag) else {
            self.samples_untracked += 1;
            return;
        };
        track.samples += 1;
        let v = match &s.value {
            Some(RecordValue::Num(n)) => Val::Num(*n),
            Some(RecordValue::Bool(b)) => Val::Bool(*b),
            _ => Val::None,
        };
        push_value(track, &grid, t, v);
    }
}

fn push_value(track: &mut TagTrack, grid: &Grid, t: i64, v: Val) {
    let y = match v {
        Val::Num(n) => {
            track.kind = Kind::Num;
            n
        }
        Val::Bool(b) => {
            if track.kind == Kind::None {
                track.kind = Kind::Bool;
            }
            f64::from(u8::from(b))
        }
        Val::None => f64::NAN,
    };
    track.values.push(grid, t, y);
}

fn push_span(spans: &mut Vec<Marked>, dropped: &mut u64, t: i64, label: String) {
    if spans.len() < MAX_SPANS {
        spans.push(Marked {
            from: t,
            to: None,
            label,
        });
    } else {
        *dropped += 1;
    }
}

/// Plots drawn when `--tags` is not given.
pub const DEFAULT_PLOTS: usize = 12;

/// The tags to plot by default, best first: the lines' belt speeds (a tag
/// named `CONVEYOR.speed` for a conveyor the `line` events name, in the
/// config's order), then tags
/// with numbers before booleans (photo-eyes toggle with every product and
/// would crowd out everything else), tags bound to a machine before loose
/// ones, and the ones with the most events (value or quality changes); ties
/// in the config's order.
pub fn key_tags(c: &Collector) -> Vec<usize> {
    let belt_speed = |name: &str| {
        name.strip_suffix(".speed").is_some_and(|conv| {
            c.lines
                .iter()
                .any(|l| l.conveyors.iter().any(|k| k == conv))
        })
    };
    let mut idx: Vec<usize> = (0..c.tags.len())
        .filter(|&i| c.tags[i].kind != Kind::None)
        .collect();
    idx.sort_by_key(|&i| {
        let t = &c.tags[i];
        let belt = belt_speed(&t.name);
        (
            !belt,
            // Belts in the config's order, which is the line's order.
            if belt { t.order } else { 0 },
            t.kind != Kind::Num,
            t.machine.is_none(),
            std::cmp::Reverse(t.events + t.samples),
            t.order,
        )
    });
    idx.truncate(DEFAULT_PLOTS);
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::input::parse;

    fn collect(lines: &[&str]) -> Collector {
        let mut c = Collector::new(None);
        for l in lines {
            c.push_event(&parse(l.as_bytes()).expect("a valid line"));
        }
        c
    }

    fn tag(t: &str, name: &str, machine: &str, value: &str) -> String {
        format!(
            r#"{{"v":1,"type":"tag","t":"2027-01-15T08:00:{t}Z","tag":"{name}","machine":{machine},"value":{value},"quality":"good"}}"#
        )
    }

    #[test]
    fn key_tags_put_belt_speeds_first_then_busy_numbers_and_leave_eyes_out() {
        let mut lines = vec![
            r#"{"v":1,"type":"line","t":"2027-01-15T08:00:01.000Z","line":"l1","wip":1,"throughput_per_min":0,"zones":{"infeed":1,"outfeed":0}}"#.to_string(),
        ];
        for i in 0..9 {
            let t = format!("0{i}.000");
            lines.push(tag(
                &t,
                "eye.1",
                "\"infeed\"",
                if i % 2 == 0 { "true" } else { "false" },
            ));
            lines.push(tag(&t, "filler.temp", "\"filler\"", &format!("{i}.5")));
            if i < 3 {
                lines.push(tag(&t, "loose.num", "null", &format!("{i}.0")));
                lines.push(tag(&t, "infeed.speed", "\"infeed\"", "0.5"));
            }
            lines.push(tag(&t, "outfeed.speed", "\"outfeed\"", &format!("0.{i}")));
        }
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        let c = collect(&lines);
        let names: Vec<&str> = key_tags(&c)
            .iter()
            .map(|&i| c.tags[i].name.as_str())
            .collect();
        // The busier outfeed belt still comes after the infeed, in line order.
        assert_eq!(
            names,
            [
                "infeed.speed",
                "outfeed.speed",
                "filler.temp",
                "loose.num",
                "eye.1"
            ]
        );
    }

    #[test]
    fn the_notable_table_is_capped_and_counts_the_rest() {
        let line = r#"{"v":1,"type":"residual","t":"2027-01-15T08:00:25.100Z","line":"line1","eye":"e1","tag":"eye.1","residual":"missing","expected_t":"2027-01-15T08:00:21.980Z","measured_t":null}"#;
        let lines = vec![line; MAX_ROWS + 7];
        let c = collect(&lines);
        assert_eq!(c.rows.len(), MAX_ROWS);
        assert_eq!(c.rows_more, 7);
        assert_eq!(c.counts.get("residual"), Some(&(MAX_ROWS as u64 + 7)));
        assert_eq!(c.lines[0].residual_total, MAX_ROWS as u64 + 7);
    }

    #[test]
    fn a_followed_tag_costs_about_fifty_kib() {
        // docs/report.md gives this figure for MAX_TRACKED_TAGS.
        let handles = std::mem::size_of::<Series>() + std::mem::size_of::<QualityTrack>();
        let heap = crate::report::series::BUCKETS * crate::report::series::series_bucket_bytes();
        let total = handles + heap;
        assert!((40_000..=60_000).contains(&total), "{total} bytes per tag");
    }

    #[test]
    fn a_jam_span_closes_on_its_clear() {
        let c = collect(&[
            r#"{"v":1,"type":"jam","t":"2027-01-15T08:00:26.700Z","line":"l","state":"start","after_eye":"e2","before_eye":"e3"}"#,
            r#"{"v":1,"type":"jam","t":"2027-01-15T08:01:26.700Z","line":"l","state":"clear","after_eye":"e2","before_eye":"e3"}"#,
        ]);
        let j = &c.lines[0].jams;
        assert_eq!(j.len(), 1);
        assert_eq!(
            j[0].to.zip(Some(j[0].from)).map(|(a, b)| a - b),
            Some(60_000_000_000)
        );
    }
}
