//! The live terminal table shown by `twin run` and `twin demo` when stdout
//! is a terminal: one block per machine, one row per tag.

use std::fmt::Write as _;
use std::io::{self, Write};

use crate::config::LoadedConfig;
use crate::sources::health::SourceHealth;
use crate::twin::events::rfc3339;
use crate::twin::{Quality, TagState, Value};

pub struct LiveTable {
    plant: String,
    /// Rows in display order: (machine or "-", role or "-", tag index).
    rows: Vec<(String, String, usize)>,
    names: Vec<String>,
    units: Vec<String>,
    first: bool,
}

impl LiveTable {
    pub fn new(cfg: &LoadedConfig) -> Self {
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
            first: true,
        }
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
        let _ = writeln!(s, "\x1b[2mCtrl-C to stop\x1b[0m");
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

    /// Redraw in place on the terminal.
    pub fn draw(&mut self, text: &str) -> io::Result<()> {
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
