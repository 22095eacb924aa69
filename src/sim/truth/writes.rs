//! The truth model's side of writes to the plant: a written setpoint moves
//! a belt's drive or a station's cycle ([`Truth::apply_setpoint`]), a
//! device may refuse or ignore writes ([`Truth::write_fault`]), and going
//! faster costs: transfer jams from overspeed and the belts' energy.

use std::time::Duration;

use serde_json::json;

use super::{DT_NS, Edge, Label, LineTruth, SIGNAL_STEPS, Truth};
use crate::sim::writable::{SetpointTarget, WriteFault};

/// Above this drive speed (m/s, for a 0.6 m/s-nominal belt) a belt that
/// takes products over from another one starts to jam at the transfer: a
/// tall bottle handed over fast wobbles, and one that tips wedges across
/// the belt. Below it (every commissioning speed, and the wander around
/// it) nothing is drawn, so runs that never go this fast are unchanged.
pub const SPEED_JAM_ONSET_MPS: f64 = 0.8;
/// Jams an hour per unit of relative overspeed (drive / onset − 1): at
/// 0.9 m/s about 6 an hour, one every 10 min; at 1.2 m/s one every 2.5 min.
pub const SPEED_JAM_PER_H: f64 = 48.0;
/// How long an operator takes to clear a transfer jam, s.
pub const SPEED_JAM_CLEAR_S: u64 = 30;
/// Where a transfer jam stands, m along the receiving belt.
pub const SPEED_JAM_AT_M: f64 = 0.1;

/// The label of a transfer jam from overspeed (`speed_jam`).
fn speed_jam_label(
    line: &LineTruth,
    belt: usize,
    n: usize,
    edge: Edge,
    t_ns: u64,
    speed: Option<f64>,
) -> Label {
    Label {
        t: Duration::from_nanos(t_ns),
        edge,
        fault: n,
        kind: "speed_jam",
        target: json!({
            "line": line.id,
            "conveyor": line.belt_ids.get(belt),
            "position": SPEED_JAM_AT_M,
        }),
        params: match speed {
            Some(v) => json!({"speed": v}),
            None => json!({}),
        },
    }
}

impl Truth {
    /// The cost of speed at a transfer: a belt that takes products over
    /// from the one before it, driven faster than [`SPEED_JAM_ONSET_MPS`],
    /// jams at [`SPEED_JAM_AT_M`] with a probability per signal period
    /// that grows with the overspeed; the jam is cleared after
    /// [`SPEED_JAM_CLEAR_S`]. Each gets a `speed_jam` label pair.
    pub(super) fn speed_jams(&mut self, t_ns: u64) {
        let dt = (SIGNAL_STEPS * DT_NS) as f64 / 1e9;
        let base = self.faults.len();
        for l in 0..self.lines.len() {
            // Cleared jams first.
            let mut k = 0;
            while k < self.lines[l].speed_jams.len() {
                let (belt, end, n, o) = self.lines[l].speed_jams[k];
                if t_ns < end {
                    k += 1;
                    continue;
                }
                self.lines[l].speed_jams.remove(k);
                self.lines[l].model.unblock(o);
                let label = speed_jam_label(&self.lines[l], belt, n, Edge::End, t_ns, None);
                self.labels.push(label);
            }
            for belt in 1..self.lines[l].belts.len() {
                let b = &self.lines[l].belts[belt];
                let onset = SPEED_JAM_ONSET_MPS * b.nominal / 0.6;
                if b.drive <= onset || self.lines[l].speed_jams.iter().any(|j| j.0 == belt) {
                    continue;
                }
                let p = SPEED_JAM_PER_H / 3600.0 * (b.drive / onset - 1.0) * dt;
                let speed = b.drive;
                let u = (self.rng.unit() + 1.0) / 2.0;
                if u >= p {
                    continue;
                }
                let Ok(o) = self.lines[l].model.block_at(belt, SPEED_JAM_AT_M) else {
                    continue;
                };
                let n = base + self.speed_jam_count;
                self.speed_jam_count += 1;
                let end = t_ns.saturating_add(SPEED_JAM_CLEAR_S * 1_000_000_000);
                self.lines[l].speed_jams.push((belt, end, n, o));
                let label =
                    speed_jam_label(&self.lines[l], belt, n, Edge::Start, t_ns, Some(speed));
                self.labels.push(label);
            }
        }
    }

    /// Sets a writable setpoint (index in the tag table) to `value`, as an
    /// accepted write does: the belt or station ramps towards it from the
    /// next signal period. Unknown tags are ignored.
    pub fn apply_setpoint(&mut self, tag: usize, value: f64) {
        let Some(k) = self.setpoints.iter().position(|(w, _)| w.tag == tag) else {
            return;
        };
        self.setpoints[k].1 = value;
        match self.setpoints[k].0.target {
            SetpointTarget::BeltSpeed { cfg_line, conveyor } => {
                if let Some(l) = self.line_of(cfg_line)
                    && let Some(b) = self.lines[l].belts.get_mut(conveyor)
                {
                    b.target = Some(value);
                }
            }
            SetpointTarget::StationCycle { cfg_line, station } => {
                if let Some(l) = self.line_of(cfg_line)
                    && let Some(Some(c)) = self.lines[l].cycles.get_mut(station)
                {
                    c.target = Some(value);
                    c.managed = true;
                }
            }
            SetpointTarget::Memory => {}
        }
    }

    /// How a Modbus device (index in `config.modbus`) treats writes now:
    /// `None` normally, or the active `reject_writes` / `ignore_writes`
    /// fault (a rejection wins).
    pub fn write_fault(&self, device: usize) -> Option<WriteFault> {
        if let Some(&(_, code)) = self.reject_writes.get(device).and_then(|r| r.last()) {
            return Some(WriteFault::Reject(code));
        }
        self.ignore_writes
            .get(device)
            .is_some_and(|n| *n > 0)
            .then_some(WriteFault::Ignore)
    }

    /// Mechanical energy a belt's drive delivered since the start, J: the
    /// belt pull (the products' drag) plus the empty belt's drag, times
    /// the drive speed, integrated every signal period. Going faster costs:
    /// the drag grows with speed, and so does the power for the same pull.
    pub fn belt_energy_j(&self, cfg_line: usize, conveyor: usize) -> Option<f64> {
        self.lines
            .iter()
            .find(|l| l.cfg_line == cfg_line)
            .and_then(|l| l.belts.get(conveyor))
            .map(|b| b.energy_j)
    }
}
