//! The live terminal table shown by `twin run` and `twin demo` when stdout
//! is a terminal: one block per machine, one row per tag.
//!
//! As a [`Sink`] it follows the tags through their events (a tag event
//! carries everything a row shows) and redraws at most every
//! [`REFRESH`]. Drawing happens on its own thread, handed the newest frame
//! through a one-frame slot: a terminal that stops reading (a paused
//! `tmux` pane, a scrolled-back console) costs the tick loop nothing, and
//! frames it could not take are skipped, since only the newest matters.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use super::{Sink, SinkError, TickOutput};
use crate::config::LoadedConfig;
use crate::ml::events::MlEvent;
use crate::ml::optimise_events::OptimiserEvent;
use crate::sources::health::{HealthBoard, SourceHealth};
use crate::twin::events::rfc3339;
use crate::twin::{Quality, TagState, TwinEvent, Value};
use crate::wallclock;

/// A model's row in the table.
#[derive(Debug, Default)]
struct ModelRow {
    class: Option<String>,
    score: f64,
    uncertain: bool,
    /// Classes (or `score`) with an alarm raised.
    alarms: BTreeSet<String>,
    /// A setpoint model: its latest values (not vetted), as `tag value`.
    values: Option<String>,
    /// A setpoint model with an optimiser: its latest vetted proposal.
    proposal: Option<String>,
}

fn model_key(model: &str, machine: Option<&str>) -> (String, Option<String>) {
    (model.to_string(), machine.map(str::to_string))
}

/// The last line of a frame while the twin runs.
const FOOTER: &str = "Ctrl-C to stop";

/// How long the end waits for the final frame to be drawn: a terminal
/// that stopped reading must not hold up the exit.
const FINAL_FRAME_WAIT: Duration = Duration::from_millis(500);

/// How often the table is redrawn at most.
pub const REFRESH: Duration = Duration::from_millis(500);

pub struct LiveTable {
    plant: String,
    /// Rows in display order: (machine or "-", role or "-", tag index).
    rows: Vec<(String, String, usize)>,
    names: Vec<String>,
    units: Vec<String>,
    /// Every tag as its last event left it, in tag order.
    states: Vec<TagState>,
    events: u64,
    health: HealthBoard,
    last_draw: Option<Instant>,
    /// The drawing thread's slot; `None` before the first frame, and again
    /// once the terminal failed (the table then stays off).
    frames: Option<SyncSender<String>>,
    off: bool,
    /// Per (model, machine): its latest prediction and raised alarms.
    models: BTreeMap<(String, Option<String>), ModelRow>,
    /// Per setpoint tag: the guard's last decision, as a line.
    setpoints: BTreeMap<String, String>,
    /// Advisory proposals waiting for an operator, by proposal id: the line
    /// to show (`twin approve ID` / `twin reject ID` act on them).
    pending: BTreeMap<u64, String>,
    /// A line under the header (where the HTTP API listens).
    note: Option<String>,
    /// The latest tick's time, number and line summaries, for the frame
    /// drawn when the run stops.
    last_tick: Option<(i64, u64, Vec<String>)>,
    /// The drawing thread, waited for (briefly) at the end so the final
    /// frame reaches the terminal before the process exits.
    drawer: Option<std::thread::JoinHandle<()>>,
}

impl LiveTable {
    /// A table of `cfg`'s machines and tags, showing `health`'s sources.
    pub fn new(cfg: &LoadedConfig, health: HealthBoard) -> Self {
        let mut rows = Vec::new();
        for m in &cfg.config.machines {
            for (role, tag) in &m.tags {
                if let Some(id) = cfg.tags.id(&tag.value) {
                    rows.push((m.id.value.clone(), role.value.clone(), id.index()));
                }
            }
        }
        for t in cfg.tags.iter().filter(|t| t.machine.is_none()) {
            rows.push(("-".into(), "-".into(), t.id.index()));
        }
        LiveTable {
            plant: cfg.config.plant.name.clone(),
            rows,
            names: cfg.tags.iter().map(|t| t.name.clone()).collect(),
            units: cfg
                .tags
                .iter()
                .map(|t| t.unit.clone().unwrap_or_default())
                .collect(),
            states: cfg
                .tags
                .iter()
                .map(|t| TagState {
                    tag: t.id,
                    value: None,
                    quality: Quality::Bad,
                    reason: None,
                    source_time_ns: None,
                })
                .collect(),
            events: 0,
            health,
            last_draw: None,
            frames: None,
            off: false,
            models: BTreeMap::new(),
            setpoints: BTreeMap::new(),
            pending: BTreeMap::new(),
            note: None,
            last_tick: None,
            drawer: None,
        }
    }

    /// Show `note` under the header: the table clears the screen, so a
    /// line printed before it would be gone.
    pub fn with_note(mut self, note: String) -> Self {
        self.note = Some(note);
        self
    }

    /// Take in one tick's events.
    fn follow(&mut self, events: &[TwinEvent]) {
        self.events += events.len() as u64;
        for e in events {
            match e {
                TwinEvent::Tag(t) => {
                    if let Some(s) = self.states.get_mut(t.tag.index()) {
                        s.value.clone_from(&t.value);
                        s.quality = t.quality;
                        s.reason = t.reason;
                        s.source_time_ns = t.source_time_ns;
                    }
                }
                TwinEvent::Ml(MlEvent::Prediction(p)) => {
                    let row = self
                        .models
                        .entry(model_key(p.model(), p.machine_name()))
                        .or_default();
                    row.class = p.class().map(|c| c.to_string());
                    row.score = p.score;
                    row.uncertain = p.uncertain.is_some();
                    let values = p.values();
                    row.values = (!values.is_empty()).then(|| {
                        let v: Vec<String> =
                            values.iter().map(|(t, v)| format!("{t} {v:.3}")).collect();
                        v.join(", ")
                    });
                }
                TwinEvent::Ml(MlEvent::Optimiser(OptimiserEvent::Proposal(p))) => {
                    let row = self
                        .models
                        .entry(model_key(&p.model, p.machine.as_deref()))
                        .or_default();
                    let moves: Vec<String> = p
                        .tags
                        .iter()
                        .zip(p.current.iter().zip(&p.best.values))
                        .map(|(t, (from, to))| format!("{t} {from:.3} → {to:.3}"))
                        .collect();
                    let gain = p.best.forecast.throughput_per_min
                        - p.round.baseline.forecast.throughput_per_min;
                    row.proposal = Some(format!(
                        "{} ({gain:+.1}/min forecast, at {})",
                        moves.join(", "),
                        rfc3339(p.t_ns)
                    ));
                }
                TwinEvent::Setpoint(sp) => self.follow_setpoint(sp),
                TwinEvent::Ml(MlEvent::Alarm(a)) => {
                    let row = self
                        .models
                        .entry(model_key(&a.model, a.machine.as_deref()))
                        .or_default();
                    let what = a.class.as_deref().unwrap_or("score").to_string();
                    if a.state == "raised" {
                        row.alarms.insert(what);
                    } else {
                        row.alarms.remove(&what);
                    }
                }
                _ => {}
            }
        }
    }

    /// A guard decision: the setpoint's last word, and the advisory queue
    /// (a `pending` proposal waits until it is approved, rejected or
    /// expires, or its setpoint is otherwise decided).
    fn follow_setpoint(&mut self, sp: &crate::guard::events::SetpointEvent) {
        use crate::guard::events::SetpointDecision as D;
        let num = |v: Option<f64>| v.map_or("—".to_string(), |v| format!("{v:.3}"));
        let rule = sp
            .rule
            .map(|r| format!(" ({})", r.as_str()))
            .unwrap_or_default();
        let line = format!(
            "{} {}{rule}, {} → {} at {}",
            sp.mode.as_str(),
            sp.decision.as_str(),
            num(sp.old),
            num(sp.value.or(sp.requested)),
            rfc3339(sp.t_ns)
        );
        self.setpoints.insert(sp.tag.to_string(), line);
        let Some(id) = sp.proposal else { return };
        match sp.decision {
            D::Pending => {
                let until = sp
                    .expires_ns
                    .map(|t| format!(", expires {}", rfc3339(t)))
                    .unwrap_or_default();
                self.pending.insert(
                    id,
                    format!(
                        "#{id} {} {} → {} by {}{until}",
                        sp.tag,
                        num(sp.old),
                        num(sp.value),
                        sp.actor.name()
                    ),
                );
            }
            // Clamped goes on to a decision of its own.
            D::Clamped => {}
            _ => {
                self.pending.remove(&id);
            }
        }
    }

    /// Hand a frame to the drawing thread, starting it on the first one.
    fn show(&mut self, text: String) {
        let tx = match &self.frames {
            Some(tx) => tx.clone(),
            None => {
                let (tx, rx) = sync_channel(1);
                let mut drawer = Drawer { first: true };
                match std::thread::Builder::new()
                    .name("twin-table".into())
                    .spawn(move || drawer.run(rx))
                {
                    Ok(handle) => self.drawer = Some(handle),
                    Err(_) => {
                        self.off = true;
                        return;
                    }
                }
                self.frames = Some(tx.clone());
                tx
            }
        };
        match tx.try_send(text) {
            // Full: the drawer is still busy with an older frame; this one is
            // skipped and the next refresh brings the news.
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => {
                self.frames = None;
                self.off = true;
            }
        }
    }

    /// The frame drawn when the run stops: the latest state, its footer
    /// saying so.
    fn final_frame(&self) -> Option<String> {
        let text = self.frame()?;
        let tick = self.last_tick.as_ref().map_or(0, |l| l.1);
        Some(text.replace(
            FOOTER,
            &format!("stopped after {tick} ticks, {} events", self.events),
        ))
    }

    /// The frame for the latest tick taken in, if there was one.
    fn frame(&self) -> Option<String> {
        let (t_ns, tick, lines) = self.last_tick.as_ref()?;
        Some(self.render(
            *t_ns,
            *tick,
            &self.states,
            self.events,
            &self.health.snapshot(),
            lines,
        ))
    }

    pub fn render(
        &self,
        t_ns: i64,
        tick: u64,
        states: &[TagState],
        events: u64,
        health: &[(String, SourceHealth)],
        lines: &[String],
    ) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\x1b[1mtwin\x1b[0m — {}   tick {}   {}   events {}",
            self.plant,
            tick,
            rfc3339(t_ns),
            events
        );
        if let Some(note) = &self.note {
            let _ = writeln!(s, "{note}");
        }
        let (wm, wr, wt, wu) = self.widths();
        let _ = writeln!(
            s,
            "\x1b[2m{:<wm$} {:<wr$} {:<wt$} {:>12} {:<wu$} QUALITY\x1b[0m",
            "MACHINE", "ROLE", "TAG", "VALUE", "UNIT"
        );
        let mut last_machine = "";
        for (machine, role, idx) in &self.rows {
            let Some(st) = states.get(*idx) else { continue };
            let value = match &st.value {
                None => "—".to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Text(t)) => format!("{t:?}"),
                Some(Value::Num(n)) if n.fract() == 0.0 && n.abs() < 1e15 => {
                    format!("{n:.0}")
                }
                Some(Value::Num(n)) => format!("{n:.3}"),
            };
            let (color, q) = match st.quality {
                Quality::Good => ("\x1b[32m", "good"),
                Quality::Uncertain => ("\x1b[33m", "uncertain"),
                Quality::Stale => ("\x1b[33m", "stale"),
                Quality::Bad => ("\x1b[31m", "bad"),
            };
            let reason = st.reason.map(|r| format!(" ({r})")).unwrap_or_default();
            let shown = if machine == last_machine {
                ""
            } else {
                machine.as_str()
            };
            last_machine = machine;
            let _ = writeln!(
                s,
                "{:<wm$} {:<wr$} {:<wt$} {:>12} {:<wu$} {}{}{}\x1b[0m",
                shown,
                role,
                self.names.get(*idx).map(String::as_str).unwrap_or("?"),
                value,
                self.units.get(*idx).map(String::as_str).unwrap_or(""),
                color,
                q,
                reason
            );
        }
        // The physics twin's view of each modelled line.
        for l in lines {
            let _ = writeln!(s, "{l}");
        }
        // The models' latest word per machine, and their raised alarms.
        for ((model, machine), row) in &self.models {
            let on = machine
                .as_deref()
                .map(|m| format!(" on {m}"))
                .unwrap_or_default();
            let class = row
                .class
                .as_deref()
                .map(|c| format!("{c}, "))
                .unwrap_or_default();
            let quality = if row.uncertain {
                " \x1b[33m(uncertain)\x1b[0m"
            } else {
                ""
            };
            let alarms = if row.alarms.is_empty() {
                String::new()
            } else {
                let list: Vec<&str> = row.alarms.iter().map(String::as_str).collect();
                format!("   \x1b[31mALARM {}\x1b[0m", list.join(", "))
            };
            let what = match &row.values {
                Some(v) => v.clone(),
                None => format!("{class}score {:.3}", row.score),
            };
            let _ = writeln!(s, "model {model}{on}: {what}{quality}{alarms}");
            if let Some(p) = &row.proposal {
                let _ = writeln!(s, "  proposed: {p}");
            }
        }
        // The guard: each setpoint's last decision, then what waits for an
        // operator.
        for (tag, line) in &self.setpoints {
            let _ = writeln!(s, "setpoint {tag}: {line}");
        }
        if !self.pending.is_empty() {
            let _ = writeln!(
                s,
                "\x1b[1mpending approval\x1b[0m (twin approve ID / twin reject ID):"
            );
            for line in self.pending.values() {
                let _ = writeln!(s, "  {line}");
            }
        }
        // One line of source health: what is delivering, what is not and why.
        let sources: Vec<String> = health
            .iter()
            .map(|(name, h)| match (h.up, h.reason) {
                (true, None) => format!("{name} \x1b[32mup\x1b[0m"),
                (true, Some(r)) => format!("{name} \x1b[33mup\x1b[0m ({r})"),
                (false, r) => format!(
                    "{name} \x1b[31mDOWN\x1b[0m ({})",
                    r.map_or("?", |r| r.as_str())
                ),
            })
            .collect();
        if !sources.is_empty() {
            let _ = writeln!(s, "sources: {}", sources.join(" · "));
        }
        let _ = writeln!(s, "\x1b[2m{FOOTER}\x1b[0m");
        s
    }

    /// Column widths that fit the longest machine, role, tag and unit.
    fn widths(&self) -> (usize, usize, usize, usize) {
        let w = |it: &mut dyn Iterator<Item = usize>, min: usize| it.max().unwrap_or(0).max(min);
        (
            w(&mut self.rows.iter().map(|r| r.0.len()), 7),
            w(&mut self.rows.iter().map(|r| r.1.len()), 4),
            w(&mut self.names.iter().map(String::len), 3),
            w(&mut self.units.iter().map(String::len), 4),
        )
    }
}

impl Sink for LiveTable {
    fn write_tick(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        self.follow(out.events);
        if self.off {
            return Ok(());
        }
        let lines: Vec<String> = out.core.lines().iter().map(|l| l.summary()).collect();
        self.last_tick = Some((out.t_ns, out.tick, lines));
        if self
            .last_draw
            .is_some_and(|t| wallclock::since(t) < REFRESH)
        {
            return Ok(());
        }
        self.last_draw = Some(wallclock::monotonic());
        if let Some(text) = self.frame() {
            self.show(text);
        }
        // A table that cannot draw turns itself off; the run goes on.
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        // The last frame drawn could be up to REFRESH old and still said
        // "Ctrl-C to stop" after the run had ended: draw the final state,
        // saying that the twin stopped (the log's summary is hidden while
        // the table owns the terminal).
        if !self.off
            && let Some(mut text) = self.final_frame()
            && let Some(tx) = &self.frames
        {
            let until = wallclock::monotonic() + FINAL_FRAME_WAIT;
            // The slot may still hold the previous frame for a moment.
            loop {
                match tx.try_send(text) {
                    Err(TrySendError::Full(t)) if wallclock::monotonic() < until => {
                        text = t;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    _ => break,
                }
            }
        }
        // Closing the slot ends the drawing thread after its frame. It is
        // waited for only briefly: a terminal that stopped reading must not
        // hold up the exit.
        self.frames = None;
        if let Some(handle) = self.drawer.take() {
            let until = wallclock::monotonic() + FINAL_FRAME_WAIT;
            while !handle.is_finished() && wallclock::monotonic() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }
}

/// The drawing thread's side.
struct Drawer {
    first: bool,
}

impl Drawer {
    fn run(&mut self, frames: Receiver<String>) {
        while let Ok(text) = frames.recv() {
            if self.draw(&text).is_err() {
                return;
            }
        }
    }

    /// Redraw in place on the terminal.
    fn draw(&mut self, text: &str) -> io::Result<()> {
        let mut out = io::stdout().lock();
        if self.first {
            out.write_all(b"\x1b[2J")?;
            self.first = false;
        }
        out.write_all(b"\x1b[H")?;
        for line in text.lines() {
            out.write_all(line.as_bytes())?;
            out.write_all(b"\x1b[K\n")?;
        }
        out.write_all(b"\x1b[J")?;
        out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TagId;
    use crate::runtime::Driver;
    use crate::twin::Sample;

    const CFG: &str = r#"
[plant]
name = "table-test"

[[sources.modbus]]
name = "plc"
address = "127.0.0.1:502"
registers = [{ tag = "belt.speed", table = "holding", address = 0, unit = "m/s" }]

[[machines]]
id = "belt"
kind = "conveyor"
tags = { speed = "belt.speed" }
"#;

    /// The table shows tags as their events left them: it needs no access
    /// to the core's state beyond what every sink is given.
    #[test]
    fn r9_the_table_follows_the_tags_through_their_events() {
        let cfg = crate::config::load_str(std::path::Path::new("table-test.toml"), CFG)
            .expect("test config is valid");
        let mut table = LiveTable::new(&cfg, HealthBoard::default());
        let t0 = 1_800_000_000_000_000_000;
        let mut d = Driver::new(&cfg, t0);
        let render = |d: &mut Driver, table: &mut LiveTable| {
            let step = d.step();
            table.follow(step.events);
            table.render(step.t_ns, step.tick, &table.states, table.events, &[], &[])
        };
        assert!(render(&mut d, &mut table).contains("no_data"));
        d.push(Sample::good(TagId(0), Value::Num(0.625), t0, t0));
        let text = render(&mut d, &mut table);
        assert!(text.contains("0.625"), "{text}");
        assert!(text.contains("good"), "{text}");
        assert!(text.contains("events 2"), "{text}");
    }

    /// After the run the table's last frame said "Ctrl-C to stop" and
    /// could be half a second old; the final frame is the latest state and
    /// says the twin stopped.
    #[test]
    fn r_user_the_final_frame_says_the_twin_stopped() {
        let cfg = crate::config::load_str(std::path::Path::new("table-test.toml"), CFG)
            .expect("test config is valid");
        let mut table = LiveTable::new(&cfg, HealthBoard::default());
        assert_eq!(table.final_frame(), None, "no tick, nothing to draw");
        let t0 = 1_800_000_000_000_000_000;
        let mut d = Driver::new(&cfg, t0);
        for _ in 0..3 {
            let step = d.step();
            table.follow(step.events);
            table.last_tick = Some((step.t_ns, step.tick, Vec::new()));
        }
        d.push(Sample::good(TagId(0), Value::Num(0.625), t0, t0));
        let step = d.step();
        table.follow(step.events);
        table.last_tick = Some((step.t_ns, step.tick, Vec::new()));
        let text = table.final_frame().expect("a frame");
        assert!(text.contains("0.625"), "{text}");
        assert!(!text.contains(FOOTER), "{text}");
        assert!(
            text.contains(&format!(
                "stopped after {} ticks, {} events",
                step.tick, table.events
            )),
            "{text}"
        );
    }

    /// The table shows each model's latest prediction per machine and the
    /// alarms it has raised, until they clear.
    #[test]
    fn r11_the_table_shows_predictions_and_raised_alarms() {
        use crate::ml::events::{AlarmEvent, Prediction};
        let cfg = crate::config::load_str(std::path::Path::new("table-test.toml"), CFG)
            .expect("test config is valid");
        let mut table = LiveTable::new(&cfg, HealthBoard::default());
        let prediction = Prediction::by_hand(
            0,
            "faults",
            Some("belt"),
            crate::config::ml::Task::Fault,
            &[("jam", 0.875)],
            Some("jam"),
            0.875,
        );
        let alarm = |state| {
            TwinEvent::Ml(MlEvent::Alarm(Box::new(AlarmEvent {
                t_ns: 0,
                model: "faults".into(),
                machine: Some("belt".into()),
                class: Some("jam".into()),
                state,
                priority: crate::config::ml::Priority::High,
                value: 0.875,
                threshold: 0.6,
                reason: String::new(),
            })))
        };
        table.follow(&[
            TwinEvent::Ml(MlEvent::Prediction(prediction.clone())),
            alarm("raised"),
        ]);
        let text = table.render(0, 1, &table.states, table.events, &[], &[]);
        assert!(
            text.contains("model faults on belt: jam, score 0.875"),
            "{text}"
        );
        assert!(text.contains("ALARM jam"), "{text}");
        table.follow(&[alarm("cleared")]);
        let text = table.render(0, 2, &table.states, table.events, &[], &[]);
        assert!(!text.contains("ALARM"), "{text}");
        // A setpoint model shows its values, not a score it does not have.
        table.follow(&[TwinEvent::Ml(MlEvent::Prediction(Prediction::by_hand(
            0,
            "speeds",
            None,
            crate::config::ml::Task::Setpoint,
            &[("belt.speed", 0.5)],
            None,
            f64::NAN,
        )))]);
        let text = table.render(0, 3, &table.states, table.events, &[], &[]);
        assert!(text.contains("model speeds: belt.speed 0.500"), "{text}");
        assert!(!text.contains("NaN"), "{text}");
    }

    /// The guard's decisions show per setpoint, and an advisory proposal
    /// stays in the "pending approval" list until it is decided.
    #[test]
    fn r12_the_table_shows_setpoint_decisions_and_pending_proposals() {
        use crate::config::guard::Mode;
        use crate::guard::audit::Actor;
        use crate::guard::events::{SetpointDecision as D, SetpointEvent};
        let cfg = crate::config::load_str(std::path::Path::new("table-test.toml"), CFG)
            .expect("test config is valid");
        let mut table = LiveTable::new(&cfg, HealthBoard::default());
        let event = |decision, actor| {
            TwinEvent::Setpoint(Box::new(SetpointEvent {
                t_ns: 0,
                tag: "belt.speed".into(),
                decision,
                rule: None,
                reason: String::new(),
                mode: Mode::Advisory,
                actor,
                proposal: Some(7),
                intent: None,
                old: Some(0.6),
                requested: Some(0.7),
                value: Some(0.7),
                inputs: Vec::new(),
                expires_ns: Some(300_000_000_000),
                forecast: None,
            }))
        };
        let model = Actor::Model {
            id: "speeds".into(),
            sha256: "5ha".into(),
        };
        table.follow(&[event(D::Pending, model.clone())]);
        let text = table.render(0, 1, &table.states, table.events, &[], &[]);
        assert!(text.contains("pending approval"), "{text}");
        assert!(
            text.contains("#7 belt.speed 0.600 → 0.700 by speeds, expires"),
            "{text}"
        );
        assert!(
            text.contains("setpoint belt.speed: advisory pending"),
            "{text}"
        );
        table.follow(&[event(D::Approved, Actor::Operator { name: "ana".into() })]);
        let text = table.render(0, 2, &table.states, table.events, &[], &[]);
        assert!(!text.contains("pending approval"), "{text}");
        assert!(
            text.contains("setpoint belt.speed: advisory approved"),
            "{text}"
        );
    }
}
