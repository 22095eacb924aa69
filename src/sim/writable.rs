//! The virtual plant's writable setpoints: which served registers a client
//! may write, what each one drives in the truth model, the range the device
//! accepts and the drive's ramp (docs/sim.md, "Writable setpoints").
//!
//! Data flow: the plant config → [`writable_tags`] (here) → the Modbus
//! server's write check (`modbus_server`, exception 02 / 03) and the truth
//! model's setpoints (`truth`), which ramp the belts and stations towards
//! what was written. The rule is by name, so plant files need no new key:
//! a holding register or coil whose tag is `X_sp` is writable; when `X` is
//! a conveyor's `speed_tag` it is that belt's speed setpoint, when the tag
//! is `S.cycle_sp` for a station `S` it is the station's cycle time, and
//! any other `_sp` tag is a plain memory setpoint (stored and served back,
//! no effect on the plant).

use crate::config::{LoadedConfig, RegisterTable, TagSource};

/// A belt drive's acceleration limit, m/s² (for a speed tag in m/s; other
/// units scale with the belt's nominal). A packaging-line VFD ramps a
/// conveyor from standstill to its 0.6 m/s nominal in about 3 s: quick
/// enough to follow a line, gentle enough that a queue of 0.22 m bottles
/// standing on the belt is not shaken (a standing bottle tips at about
/// g × width / height ≈ 3 m/s², a soft start stays an order below it).
pub const BELT_ACCEL_MPS2: f64 = 0.2;
/// The belt nominal `BELT_ACCEL_MPS2` and the ranges below are stated for.
const NOMINAL_MPS: f64 = 0.6;
/// What a belt PLC accepts as a speed reference, m/s: 0 (stop) up to
/// 1.5 m/s; a write outside it is refused with exception 03.
pub const BELT_ACCEPT_MPS: (f64, f64) = (0.0, 1.5);
/// What the belt drive can run at, m/s: an accepted reference above
/// 1.2 m/s (the motor's base speed) is clamped by the drive, so the
/// measured speed stops there while the register reads what was written.
pub const BELT_PHYSICAL_MPS: (f64, f64) = (0.0, 1.2);
/// A station's cycle time changes at most this many seconds per second:
/// a rotary filler's main drive ramps, about 1.5 s from 0.8 s to 0.5 s.
pub const CYCLE_RAMP_S_PER_S: f64 = 0.2;
/// What a station PLC accepts as a cycle time, s.
pub const CYCLE_ACCEPT_S: (f64, f64) = (0.4, 3.0);
/// The station's fastest mechanical cycle, s: a faster accepted setpoint
/// is clamped to it.
pub const CYCLE_PHYSICAL_S: (f64, f64) = (0.5, 3.0);

/// How a device treats writes while a scenario fault holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// Acknowledged, not applied (`ignore_writes`).
    Ignore,
    /// Answered with this Modbus exception code (`reject_writes`).
    Reject(u8),
}

/// What a writable setpoint drives.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SetpointTarget {
    /// A conveyor's drive speed, in its speed tag's unit.
    BeltSpeed { cfg_line: usize, conveyor: usize },
    /// A station's cycle time, s.
    StationCycle { cfg_line: usize, station: usize },
    /// Nothing in the plant: the value is stored and served back.
    Memory,
}

/// One writable setpoint tag.
#[derive(Debug, Clone, PartialEq)]
pub struct Writable {
    /// Index in the tag table.
    pub tag: usize,
    pub target: SetpointTarget,
    /// Engineering values the device accepts (inclusive); others get
    /// exception 03.
    pub accept: (f64, f64),
    /// Engineering values the actuator can reach (the truth clamps to it).
    pub physical: (f64, f64),
    /// Largest change of the actual value per second of sim time.
    pub ramp_per_s: f64,
}

/// The writable setpoint tags of `cfg`, in tag-table order.
pub fn writable_tags(cfg: &LoadedConfig) -> Vec<Writable> {
    let c = &cfg.config;
    let mut out = Vec::new();
    for (i, def) in cfg.tags.iter().enumerate() {
        let TagSource::Modbus { device, register } = def.source else {
            continue;
        };
        let reg = &c.modbus[device].registers[register];
        if !matches!(reg.table, RegisterTable::Holding | RegisterTable::Coil) {
            continue;
        }
        let Some(measured) = def.name.strip_suffix("_sp") else {
            continue;
        };
        let belt = c.lines.iter().enumerate().find_map(|(l, line)| {
            line.conveyors
                .iter()
                .position(|cv| cv.speed_tag.value == measured)
                .map(|cv| (l, cv))
        });
        let station = measured.strip_suffix(".cycle").and_then(|sid| {
            c.lines.iter().enumerate().find_map(|(l, line)| {
                line.stations
                    .iter()
                    .position(|s| s.id.value == sid)
                    .map(|s| (l, s))
            })
        });
        let w = match (belt, station) {
            (Some((cfg_line, conveyor)), _) => {
                let k = super::truth::belt_nominal(cfg, measured) / NOMINAL_MPS;
                Writable {
                    tag: i,
                    target: SetpointTarget::BeltSpeed { cfg_line, conveyor },
                    accept: (BELT_ACCEPT_MPS.0 * k, BELT_ACCEPT_MPS.1 * k),
                    physical: (BELT_PHYSICAL_MPS.0 * k, BELT_PHYSICAL_MPS.1 * k),
                    ramp_per_s: BELT_ACCEL_MPS2 * k,
                }
            }
            (None, Some((cfg_line, station))) => Writable {
                tag: i,
                target: SetpointTarget::StationCycle { cfg_line, station },
                accept: CYCLE_ACCEPT_S,
                physical: CYCLE_PHYSICAL_S,
                ramp_per_s: CYCLE_RAMP_S_PER_S,
            },
            (None, None) => Writable {
                tag: i,
                target: SetpointTarget::Memory,
                accept: (f64::NEG_INFINITY, f64::INFINITY),
                physical: (f64::NEG_INFINITY, f64::INFINITY),
                ramp_per_s: f64::INFINITY,
            },
        };
        out.push(w);
    }
    out
}

/// One step of a rate-limited actuator: from `actual` towards `target`
/// (clamped to `physical`) by at most `ramp_per_s × dt_s`.
pub fn ramp(actual: f64, target: f64, physical: (f64, f64), ramp_per_s: f64, dt_s: f64) -> f64 {
    let goal = target.clamp(physical.0, physical.1);
    let max = ramp_per_s * dt_s;
    if (goal - actual).abs() <= max {
        goal
    } else if goal > actual {
        actual + max
    } else {
        actual - max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> LoadedConfig {
        crate::config::load_str(
            std::path::Path::new("packaging-line.toml"),
            include_str!("../../plant-configs/packaging-line.toml"),
        )
        .expect("demo config")
    }

    #[test]
    fn the_demo_line_has_three_writable_setpoints() {
        let cfg = demo();
        let w = writable_tags(&cfg);
        let names: Vec<&str> = w
            .iter()
            .map(|w| cfg.tags.iter().nth(w.tag).map_or("", |d| d.name.as_str()))
            .collect();
        assert_eq!(
            names,
            ["infeed.speed_sp", "outfeed.speed_sp", "filler.cycle_sp"]
        );
        assert_eq!(
            w[1].target,
            SetpointTarget::BeltSpeed {
                cfg_line: 0,
                conveyor: 1
            }
        );
        assert_eq!(
            w[2].target,
            SetpointTarget::StationCycle {
                cfg_line: 0,
                station: 0
            }
        );
        assert!((w[0].accept.1 - 1.5).abs() < 1e-12, "{:?}", w[0].accept);
    }

    #[test]
    fn a_ramp_is_rate_limited_and_clamped_to_the_drive() {
        // 0.6 → 0.8 m/s at 0.2 m/s²: 1 s, ten 100 ms steps, none larger
        // than 0.02 m/s.
        let mut v = 0.6;
        let mut steps = 0;
        while (v - 0.8_f64).abs() > 1e-12 {
            let next = ramp(v, 0.8, BELT_PHYSICAL_MPS, BELT_ACCEL_MPS2, 0.1);
            assert!(next > v && next - v <= 0.02 + 1e-12, "{v} → {next}");
            v = next;
            steps += 1;
            assert!(steps < 100, "never converges");
        }
        assert_eq!(steps, 10);
        // Above the drive's range the belt stops at its base speed.
        let mut v = 1.0;
        for _ in 0..100 {
            v = ramp(v, 1.45, BELT_PHYSICAL_MPS, BELT_ACCEL_MPS2, 0.1);
        }
        assert_eq!(v, BELT_PHYSICAL_MPS.1);
        // Down as well as up.
        assert!((ramp(0.6, 0.0, BELT_PHYSICAL_MPS, 0.2, 0.1) - 0.58).abs() < 1e-12);
    }
}
