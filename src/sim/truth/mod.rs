//! The virtual plant's ground truth: what the plant "really" does, from which
//! every served tag value is read.
//!
//! Data flow: plant config (+ optional [`Scenario`], + seed) → [`Truth`] →
//! (sim-time steps) → engineering value of every tag ([`Truth::value`]) and
//! ground-truth fault labels ([`Truth::drain_labels`]) → the async servers
//! (`sim/mod.rs`: register images, MQTT payloads) or the headless writer
//! (truth + labels JSONL).
//!
//! Each line with conveyors runs the twin's own physics
//! ([`crate::physics::LineModel`]) in 5 ms steps, so the sensors the twin
//! sees are consistent with the model it predicts them with: photo-eye tags
//! are the sensor colliders' `blocked()`, the infeed counter counts spawns,
//! the last conveyor's `count` counts products out, the counters of a
//! machine that is a station (same id; `good_count`, `label_count`, ...,
//! not rejects) count its releases, belt speed tags read the drive speed. Motor current, motor temperature, vibration and bearing
//! temperature are derived from the physics and from the machine's
//! condition (see docs/sim.md for the equations and constants). Tags not
//! tied to either keep the simple process models of [`super::signals`].
//!
//! This is synchronous, reads no clock and draws its noise from one seeded
//! generator in a fixed order, so the same config, scenario, seed and total
//! advance give identical values whatever chunks time is advanced in.

use std::time::Duration;

use serde_json::{Value as Json, json};

use super::scenario::{FaultKind, Scenario};
use super::signals::{Model, Rng};
use super::writable::{SetpointTarget, Writable, ramp, writable_tags};
use crate::config::layout::Layout;
use crate::config::{LoadedConfig, TagSource};
use crate::physics::{LineModel, Obstacle, PlanPoint};
use crate::twin::events::rfc3339;

mod line;
mod writes;
use line::build_line;
pub use writes::{SPEED_JAM_AT_M, SPEED_JAM_CLEAR_S, SPEED_JAM_ONSET_MPS, SPEED_JAM_PER_H};

/// Physics step: the twin's own step length, so products behave as the
/// twin expects them to.
pub const PHYSICS_DT: Duration = Duration::from_millis(5);
const DT_NS: u64 = 5_000_000;
/// Non-physics signals (speeds, currents, temperatures, vibration) are
/// updated every this many physics steps (100 ms): drives and condition
/// sensors do not change meaningfully faster, and the noise per sample
/// stays that of the old signal models.
pub const SIGNAL_STEPS: u64 = 20;

/// Share of the gap to the last 100 ms window's utilisation a station
/// machine's load closes per window: a first-order lag of about 1 s.
const LOAD_SMOOTHING: f64 = 0.1;

/// Gravity, m/s².
const G: f64 = 9.81;
/// Motor current of a conveyor drive with an empty belt at standstill
/// (magnetising current and gearbox losses), A.
pub const I_IDLE_A: f64 = 2.0;
/// Extra current per m/s of drive speed (the empty belt's and rollers'
/// friction grows with speed), A per m/s.
pub const I_PER_MPS: f64 = 1.5;
/// Extra current per newton of belt pull (the torque-producing current of a
/// small geared motor behind the drive pulley), A per N.
pub const I_PER_N: f64 = 0.15;
/// Pull needed by a product carried with the belt (the loaded belt dragging
/// over its slider bed), as a fraction of the product's weight.
pub const CARRY_RESISTANCE: f64 = 0.03;
/// A product moving slower than this fraction of the belt surface speed is
/// slipping: the belt slides under it (held at a station, queued against a
/// held product or a jam) and pulls with the product's full friction.
pub const SLIP_RATIO: f64 = 0.5;
/// Ambient temperature of the motors, °C.
pub const AMBIENT_C: f64 = 25.0;
/// Steady motor temperature rise per A² of current with full cooling, K/A².
pub const HEAT_K_PER_A2: f64 = 3.0;
/// Motor thermal time constant, s.
pub const MOTOR_TAU_S: f64 = 600.0;
/// Vibration added by a fully worn bearing (wear 1) at nominal speed, mm/s
/// RMS, on top of the healthy baseline: from a good machine (~2 mm/s) to
/// beyond ISO 10816's "unacceptable" 7.1 mm/s.
pub const VIB_PER_WEAR2: f64 = 9.0;
/// Bearing temperature added by a fully worn bearing, K.
pub const BEARING_HEAT_PER_WEAR: f64 = 25.0;
/// The empty belt's drag per m/s of drive speed, N·s/m: the same friction
/// `I_PER_MPS` draws current for (1.5 A per m/s at 0.15 A per N), for
/// the belt energy figure.
pub const BELT_DRAG_N_PER_MPS: f64 = I_PER_MPS / I_PER_N;
/// Which end of a fault a label marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Start,
    End,
}

/// A ground-truth fault label: one per fault start and end.
#[derive(Debug, Clone, PartialEq)]
pub struct Label {
    /// Sim time since the start of the run.
    pub t: Duration,
    pub edge: Edge,
    /// Index of the fault in its scenario file.
    pub fault: usize,
    pub kind: &'static str,
    pub target: Json,
    pub params: Json,
}

impl Label {
    /// The label's JSONL record; `epoch_ns` is the wall time sim time 0
    /// stands for (see docs/sim.md).
    pub fn to_json(&self, epoch_ns: i64) -> Json {
        let t_ns = epoch_ns.saturating_add(i64::try_from(self.t.as_nanos()).unwrap_or(i64::MAX));
        json!({
            "v": 1,
            "t": rfc3339(t_ns),
            "sim_t": self.t.as_secs_f64(),
            "edge": match self.edge { Edge::Start => "start", Edge::End => "end" },
            "fault": self.fault,
            "kind": self.kind,
            "target": self.target,
            "params": self.params,
        })
    }
}

/// Counts of one modelled line since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineCounts {
    pub spawned: u64,
    pub out: u64,
    pub lost: u64,
    /// Spawns due while the infeed spot was occupied, skipped.
    pub infeed_blocked: u64,
}

/// A straight belt segment in the line model's local frame, to find which belt a
/// product is on.
#[derive(Debug, Clone, Copy)]
struct Seg {
    x0: f64,
    y0: f64,
    dx: f64,
    dy: f64,
    len: f64,
    half_w: f64,
    height: f64,
}

#[derive(Debug, Clone)]
struct Belt {
    /// Drive speed model (wanders around nominal).
    speed: Model,
    nominal: f64,
    drive: f64,
    slip: f64,
    segs: Vec<Seg>,
    /// Belt pull summed over this signal period's steps, N, and the steps.
    force_sum: f64,
    force_steps: u32,
    /// Mean pull over the last signal period, N.
    force: f64,
    /// The written speed setpoint; `None` until one is written (the drive
    /// then runs its commissioning speed, `nominal`).
    target: Option<f64>,
    /// The drive's reference after its ramp: the centre of the speed
    /// model (its `nominal` once a setpoint was written).
    reference: f64,
    /// The drive's range and acceleration (from its writable setpoint).
    physical: (f64, f64),
    ramp_per_s: f64,
    /// Mechanical energy delivered at the drive pulley since the start, J.
    energy_j: f64,
}

/// A station's cycle time as the plant runs it, once a setpoint or a drift
/// has touched it (until then the physics keeps its configured cycle).
#[derive(Debug, Clone)]
struct CycleTruth {
    /// The cycle it was commissioned with, s.
    commissioned: f64,
    /// The written setpoint, s.
    target: Option<f64>,
    /// The cycle after the drive's ramp, s (before wear).
    reference: f64,
    physical: (f64, f64),
    ramp_per_s: f64,
    /// Active wear drift: share of the cycle per hour at the commissioned
    /// rate.
    drift: Option<f64>,
    /// Wear so far: the cycle is `reference × (1 + wear)`.
    wear: f64,
    /// Touched by a setpoint or a drift: recomputed every signal period.
    managed: bool,
}

struct LineTruth {
    /// Index in `config.lines`.
    cfg_line: usize,
    /// The line's and its conveyors' ids, for labels.
    id: String,
    belt_ids: Vec<String>,
    model: LineModel,
    belts: Vec<Belt>,
    spawn_ns: Option<u64>,
    next_spawn_ns: u64,
    counts: LineCounts,
    mass: f64,
    friction: f64,
    /// The product's largest dimension: how high above the belt a centre
    /// may be and still rest on it (upright or lying).
    reach: f64,
    /// Per photo-eye: a stuck value overriding the physics.
    eye_stuck: Vec<Option<bool>>,
    /// Jams in place: (fault index, obstacle).
    obstacles: Vec<(usize, Obstacle)>,
    /// Per station: physics steps it held a product since the last signal
    /// update, and the share of that window (its utilisation).
    busy_steps: Vec<u32>,
    busy: Vec<f64>,
    /// Per station: the machine that is it (same id), if any.
    station_machine: Vec<Option<usize>>,
    /// Per station with a fixed cycle: its cycle as setpoints and wear
    /// make it.
    cycles: Vec<Option<CycleTruth>>,
    /// The configured spawn interval, which a `supply` condition overrides.
    base_spawn_ns: Option<u64>,
    /// Transfer jams from overspeed in place: (belt, clear at ns, label
    /// number, obstacle).
    speed_jams: Vec<(usize, u64, usize, Obstacle)>,
}

#[derive(Debug, Clone, Default)]
struct MachineTruth {
    /// Speed relative to nominal (1.0 without a speed tag).
    ratio: f64,
    /// For a machine that is a station: the share of the last 100 ms it
    /// worked on a product, which its motor current follows (`None`: the
    /// current follows `ratio`).
    load: Option<f64>,
    current: Option<f64>,
    motor_temp: Option<f64>,
    wear: f64,
    /// Active bearing-wear fault: (start ns, from, to, ramp ns).
    wear_fault: Option<(u64, f64, f64, u64)>,
    cooling_loss: f64,
}

#[derive(Debug, Clone)]
enum Driver {
    /// A writable setpoint: serves what was last written (index in
    /// `Truth::setpoints`).
    Setpoint {
        sp: usize,
    },
    Eye {
        line: usize,
        eye: usize,
    },
    InfeedCount {
        line: usize,
    },
    OutCount {
        line: usize,
    },
    /// A machine that is a station of the line (same id): its production
    /// counter counts the station's releases.
    StationCount {
        line: usize,
        station: usize,
    },
    /// A station machine's speed in products per minute: 60 / its cycle
    /// time (the rate it is set to run at, fed or not).
    StationSpeed {
        line: usize,
        station: usize,
        machine: Option<usize>,
        nominal: f64,
    },
    BeltSpeed {
        line: usize,
        belt: usize,
    },
    BeltCurrent {
        line: usize,
        belt: usize,
        machine: usize,
    },
    MotorTemp {
        machine: usize,
    },
    Vibration {
        machine: usize,
        base: f64,
    },
    BearingTemp {
        machine: usize,
        model: Model,
    },
    Signal {
        model: Model,
        machine: Option<usize>,
    },
}

#[derive(Debug, Clone)]
struct TagTruth {
    driver: Driver,
    value: f64,
    device: Option<usize>,
    /// Active sensor drift: (start ns, units per hour).
    drift: Option<(u64, f64)>,
}

#[derive(Debug, Clone)]
struct FaultState {
    at_ns: u64,
    end_ns: Option<u64>,
    kind: FaultKind,
    target: Json,
    params: Json,
    started: bool,
    ended: bool,
}

/// The virtual plant's truth model. See the module docs.
pub struct Truth {
    steps: u64,
    /// Sim time asked for so far, ns (≥ steps × dt).
    target_ns: u64,
    rng: Rng,
    lines: Vec<LineTruth>,
    machines: Vec<MachineTruth>,
    tags: Vec<TagTruth>,
    faults: Vec<FaultState>,
    /// Per Modbus device: how many disconnect faults hold it down.
    offline: Vec<u32>,
    /// Per Modbus device: how many `ignore_writes` faults are active, and
    /// the active `reject_writes` faults (fault index, exception code).
    ignore_writes: Vec<u32>,
    reject_writes: Vec<Vec<(usize, u8)>>,
    /// The writable setpoints and the value each one holds now.
    setpoints: Vec<(Writable, f64)>,
    /// Transfer jams from overspeed so far (their labels are numbered
    /// after the scenario's faults).
    speed_jam_count: usize,
    labels: Vec<Label>,
}

fn nominal_of(model: &Model) -> Option<f64> {
    match model {
        Model::Speed { nominal } => Some(*nominal),
        _ => None,
    }
}

/// The signal model the virtual plant drives a belt's speed tag with, from
/// the tag's unit (m/s when it has none).
pub(super) fn belt_speed_model(cfg: &LoadedConfig, speed_tag: &str) -> Model {
    let unit = cfg
        .tags
        .id(speed_tag)
        .and_then(|id| cfg.tags.get(id).unit.clone())
        .unwrap_or_else(|| "m/s".into());
    Model::pick("speed", &unit, false)
}

/// The speed the virtual plant runs a belt at when nothing disturbs it
/// (0.6 for a tag in m/s). The config gives no nominal belt speed, so this
/// is what `twin whatif` assumes, and says it assumes, when it is told no
/// current speed.
pub fn belt_nominal(cfg: &LoadedConfig, speed_tag: &str) -> f64 {
    nominal_of(&belt_speed_model(cfg, speed_tag)).unwrap_or(0.6)
}

/// The nominal value the virtual plant serves a tag around, if its signal
/// model (picked from the tag's role or name and unit, as for every
/// served tag) has one.
pub fn tag_nominal(cfg: &LoadedConfig, tag: &str) -> Option<f64> {
    let def = cfg.tags.get(cfg.tags.id(tag)?);
    let role = def
        .role
        .clone()
        .unwrap_or_else(|| def.name.rsplit('.').next().unwrap_or(&def.name).to_string());
    nominal_of(&Model::pick(
        &role,
        def.unit.as_deref().unwrap_or(""),
        def.is_bool,
    ))
}

fn to_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The truth's served values as the core's samples, one batch per tick of
/// `cfg`, for `span` of sim time from `epoch_ns`: every `poll`, each tag's
/// value becomes a good sample stamped then (a disconnected device's tags a
/// bad one, `timeout`), as a poller would hand them over, with no wire in
/// between. For tests and benches of the core; `sim::lockstep` is the run
/// that goes through the register and payload encoding.
pub fn sample_ticks(
    cfg: &LoadedConfig,
    scenario: Option<&Scenario>,
    seed: u64,
    span: Duration,
    poll: Duration,
    epoch_ns: i64,
) -> Vec<Vec<crate::twin::Sample>> {
    use crate::twin::{Reason, Sample, Value};
    let period = cfg.config.plant.tick;
    let mut truth = Truth::new(cfg, scenario, seed);
    let tags: Vec<_> = cfg
        .tags
        .iter()
        .map(|d| (d.id.index(), d.id, d.is_bool))
        .collect();
    let (mut ticks, mut batch) = (Vec::new(), Vec::new());
    let (mut next_poll, mut next_tick) = (Duration::ZERO, period);
    while truth.now() < span {
        truth.advance(Duration::from_millis(5));
        let now = truth.now();
        let t_ns = epoch_ns.saturating_add(i64::try_from(now.as_nanos()).unwrap_or(i64::MAX));
        if now >= next_poll {
            next_poll += poll;
            for &(i, id, is_bool) in &tags {
                batch.push(match truth.value(i) {
                    Some(v) if is_bool => Sample::good(id, Value::Bool(v != 0.0), t_ns, t_ns),
                    Some(v) => Sample::good(id, Value::Num(v), t_ns, t_ns),
                    None => Sample::bad(id, Reason::Timeout, t_ns),
                });
            }
        }
        if now >= next_tick {
            next_tick += period;
            ticks.push(std::mem::take(&mut batch));
        }
    }
    ticks
}

impl Truth {
    /// Builds the truth model of `cfg`, with `scenario`'s faults scheduled
    /// and the noise seeded by `seed`.
    pub fn new(cfg: &LoadedConfig, scenario: Option<&Scenario>, seed: u64) -> Self {
        let c = &cfg.config;
        let lines: Vec<LineTruth> = (0..c.lines.len())
            .filter(|&i| !c.lines[i].conveyors.is_empty())
            .map(|i| build_line(cfg, i))
            .collect();
        let machine_idx = |id: &str| c.machines.iter().position(|m| m.id.value == id);
        // The machine whose [machines.tags] binds a tag.
        let machine_of_tag = |tag: &str| {
            c.machines
                .iter()
                .position(|m| m.tags.iter().any(|(_, t)| t.value == tag))
        };
        // Per modelled line and belt: the machine driving it.
        let belt_machine: Vec<Vec<Option<usize>>> = lines
            .iter()
            .map(|l| {
                c.lines[l.cfg_line]
                    .conveyors
                    .iter()
                    .map(|cv| machine_of_tag(&cv.speed_tag.value))
                    .collect()
            })
            .collect();
        let has_current = |m: usize| {
            c.machines[m]
                .tags
                .iter()
                .any(|(r, _)| r.value == "motor_current")
        };

        let writable = writable_tags(cfg);
        let mut lines = lines;
        // Initial setpoints: what the plant was commissioned with.
        let setpoints: Vec<(Writable, f64)> = writable
            .iter()
            .map(|w| {
                let v = match w.target {
                    SetpointTarget::BeltSpeed { cfg_line, conveyor } => lines
                        .iter_mut()
                        .find(|l| l.cfg_line == cfg_line)
                        .and_then(|l| l.belts.get_mut(conveyor))
                        .map_or(0.0, |b| {
                            b.physical = w.physical;
                            b.ramp_per_s = w.ramp_per_s;
                            b.nominal
                        }),
                    SetpointTarget::StationCycle { cfg_line, station } => lines
                        .iter_mut()
                        .find(|l| l.cfg_line == cfg_line)
                        .and_then(|l| l.cycles.get_mut(station))
                        .and_then(|c| c.as_mut())
                        .map_or(0.0, |c| {
                            c.physical = w.physical;
                            c.ramp_per_s = w.ramp_per_s;
                            c.commissioned
                        }),
                    SetpointTarget::Memory => 0.0,
                };
                (w.clone(), v)
            })
            .collect();
        let mut tags = Vec::new();
        for def in cfg.tags.iter() {
            let role = def
                .role
                .clone()
                .unwrap_or_else(|| def.name.rsplit('.').next().unwrap_or(&def.name).to_string());
            let machine = def.machine.as_deref().and_then(machine_idx);
            let model = Model::pick(&role, def.unit.as_deref().unwrap_or(""), def.is_bool);
            // A setpoint draws no noise, so adding one to a plant leaves
            // every other tag's values as they were.
            let mut driver = writable
                .iter()
                .position(|w| w.tag == def.id.index())
                .map(|sp| Driver::Setpoint { sp });
            for (l, lt) in lines.iter().enumerate() {
                if driver.is_some() {
                    break;
                }
                let line = &c.lines[lt.cfg_line];
                let counter = line
                    .product
                    .as_ref()
                    .and_then(|p| p.infeed_counter_tag.as_ref());
                if let Some(eye) = line.photo_eyes.iter().position(|e| e.tag.value == def.name) {
                    driver = Some(Driver::Eye { line: l, eye });
                } else if counter.is_some_and(|t| t.value == def.name) {
                    driver = Some(Driver::InfeedCount { line: l });
                } else if let Some(belt) = line
                    .conveyors
                    .iter()
                    .position(|cv| cv.speed_tag.value == def.name)
                {
                    driver = Some(Driver::BeltSpeed { line: l, belt });
                } else if let Some(m) = machine
                    && let Some(belt) = belt_machine[l].iter().position(|bm| *bm == Some(m))
                {
                    if role == "motor_current" {
                        driver = Some(Driver::BeltCurrent {
                            line: l,
                            belt,
                            machine: m,
                        });
                    } else if role == "count" && belt + 1 == line.conveyors.len() {
                        driver = Some(Driver::OutCount { line: l });
                    }
                } else if let Some(m) = def.machine.as_deref()
                    && let Some(station) = line.stations.iter().position(|s| s.id.value == m)
                {
                    let r = role.to_ascii_lowercase();
                    let unit = def.unit.as_deref().unwrap_or("").to_ascii_lowercase();
                    // Products per minute: bpm, ppm, cpm, 1/min, /min.
                    let per_minute =
                        unit.ends_with("pm") || unit.ends_with("/min") || unit.ends_with("per min");
                    if !def.is_bool && r.contains("count") && !r.contains("reject") {
                        driver = Some(Driver::StationCount { line: l, station });
                    } else if !def.is_bool && r == "speed" && per_minute {
                        driver = Some(Driver::StationSpeed {
                            line: l,
                            station,
                            machine,
                            nominal: nominal_of(&model).unwrap_or(60.0),
                        });
                    }
                }
                if driver.is_some() {
                    break;
                }
            }
            let r = role.to_ascii_lowercase();
            let driver = driver.unwrap_or_else(|| match (machine, &model) {
                (Some(m), Model::Temperature { .. }) if r.contains("motor") && has_current(m) => {
                    Driver::MotorTemp { machine: m }
                }
                (Some(m), Model::Temperature { .. }) if r.contains("bearing") => {
                    Driver::BearingTemp {
                        machine: m,
                        model: model.clone(),
                    }
                }
                (Some(m), Model::Vibration { base }) => Driver::Vibration {
                    machine: m,
                    base: *base,
                },
                _ => Driver::Signal { model, machine },
            });
            let device = match def.source {
                TagSource::Modbus { device, .. } => Some(device),
                _ => None,
            };
            tags.push(TagTruth {
                driver,
                value: 0.0,
                device,
                drift: None,
            });
        }

        let faults = scenario
            .map(|s| {
                s.faults
                    .iter()
                    .map(|f| {
                        let at_ns = to_ns(f.at);
                        FaultState {
                            at_ns,
                            end_ns: f.duration.map(|d| at_ns.saturating_add(to_ns(d))),
                            kind: f.kind.clone(),
                            target: f.kind.target_json(cfg),
                            params: f.kind.params_json(),
                            started: false,
                            ended: false,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();

        let mut truth = Truth {
            steps: 0,
            target_ns: 0,
            rng: Rng::new(seed),
            lines,
            machines: vec![
                MachineTruth {
                    ratio: 1.0,
                    ..MachineTruth::default()
                };
                c.machines.len()
            ],
            tags,
            faults,
            offline: vec![0; c.modbus.len()],
            ignore_writes: vec![0; c.modbus.len()],
            reject_writes: vec![Vec::new(); c.modbus.len()],
            setpoints,
            speed_jam_count: 0,
            labels: Vec::new(),
        };
        // Sim time 0 is served before the first step: faults due at 0 and
        // the first signal values are in place from the start.
        truth.apply_faults(0);
        truth.update_signals(0);
        truth
    }

    /// Sim time reached: whole physics steps.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.steps.saturating_mul(DT_NS))
    }

    /// Whether any line is modelled by physics (then photo-eyes need fast
    /// serving).
    pub fn has_lines(&self) -> bool {
        !self.lines.is_empty()
    }

    /// Advances sim time by `dt`, in whole 5 ms physics steps; a remainder
    /// is carried to the next call, so how time is chunked does not matter.
    pub fn advance(&mut self, dt: Duration) {
        self.target_ns = self.target_ns.saturating_add(to_ns(dt));
        while self.steps.saturating_add(1).saturating_mul(DT_NS) <= self.target_ns {
            self.step_once();
        }
    }

    fn step_once(&mut self) {
        let t_ns = self.steps.saturating_mul(DT_NS);
        self.apply_faults(t_ns);
        // Step 0's update was done by `new`.
        if self.steps > 0 && self.steps.is_multiple_of(SIGNAL_STEPS) {
            self.update_signals(t_ns);
            self.speed_jams(t_ns);
        }
        for line in &mut self.lines {
            line.step(t_ns);
        }
        self.steps += 1;
    }

    /// Starts and ends the faults due at `t_ns`, with their labels.
    fn apply_faults(&mut self, t_ns: u64) {
        for i in 0..self.faults.len() {
            let f = &self.faults[i];
            let start = !f.started && t_ns >= f.at_ns;
            let end = f.started && !f.ended && f.end_ns.is_some_and(|e| t_ns >= e);
            if !(start || end) {
                continue;
            }
            let kind = f.kind.clone();
            self.set_fault(i, &kind, start, t_ns);
            let f = &mut self.faults[i];
            if start {
                f.started = true;
            } else {
                f.ended = true;
            }
            self.labels.push(Label {
                t: Duration::from_nanos(t_ns),
                edge: if start { Edge::Start } else { Edge::End },
                fault: i,
                kind: kind.name(),
                target: f.target.clone(),
                params: f.params.clone(),
            });
        }
    }

    fn line_of(&self, cfg_line: usize) -> Option<usize> {
        self.lines.iter().position(|l| l.cfg_line == cfg_line)
    }

    fn set_fault(&mut self, i: usize, kind: &FaultKind, on: bool, t_ns: u64) {
        match *kind {
            FaultKind::BearingWear {
                machine,
                from,
                to,
                ramp,
            } => {
                if let Some(m) = self.machines.get_mut(machine) {
                    m.wear_fault = on.then_some((t_ns, from, to, to_ns(ramp).max(1)));
                    // Ended: the bearing was replaced.
                    m.wear = if on { from } else { 0.0 };
                }
            }
            FaultKind::BeltSlip {
                line,
                conveyor,
                slip,
            } => {
                if let Some(l) = self.line_of(line) {
                    let lt = &mut self.lines[l];
                    let s = if on { slip } else { 0.0 };
                    if lt.model.set_belt_slip_at(conveyor, s as f32).is_ok()
                        && let Some(b) = lt.belts.get_mut(conveyor)
                    {
                        b.slip = s;
                    }
                }
            }
            FaultKind::Jam {
                line,
                conveyor,
                position,
            } => {
                if let Some(l) = self.line_of(line) {
                    let lt = &mut self.lines[l];
                    if on {
                        if let Ok(o) = lt.model.block_at(conveyor, position) {
                            lt.obstacles.push((i, o));
                        }
                    } else if let Some(k) = lt.obstacles.iter().position(|(f, _)| *f == i) {
                        let (_, o) = lt.obstacles.remove(k);
                        lt.model.unblock(o);
                    }
                }
            }
            FaultKind::EyeStuck {
                line,
                eye,
                on: level,
            } => {
                if let Some(l) = self.line_of(line)
                    && let Some(s) = self.lines[l].eye_stuck.get_mut(eye)
                {
                    *s = on.then_some(level);
                }
            }
            FaultKind::MotorOverheat {
                machine,
                cooling_loss,
            } => {
                if let Some(m) = self.machines.get_mut(machine) {
                    m.cooling_loss = if on { cooling_loss } else { 0.0 };
                }
            }
            FaultKind::SensorDrift { tag, per_hour } => {
                if let Some(t) = self.tags.get_mut(tag) {
                    t.drift = on.then_some((t_ns, per_hour));
                }
            }
            FaultKind::PlcDisconnect { device } => {
                if let Some(n) = self.offline.get_mut(device) {
                    *n = if on { *n + 1 } else { n.saturating_sub(1) };
                }
            }
            FaultKind::IgnoreWrites { device } => {
                if let Some(n) = self.ignore_writes.get_mut(device) {
                    *n = if on { *n + 1 } else { n.saturating_sub(1) };
                }
            }
            FaultKind::RejectWrites { device, code } => {
                if let Some(r) = self.reject_writes.get_mut(device) {
                    r.retain(|(f, _)| *f != i);
                    if on {
                        r.push((i, code));
                    }
                }
            }
            FaultKind::Setpoint { tag, value } => {
                if on {
                    // As a write over Modbus: a device that ignores or
                    // rejects writes does not take it either.
                    let device = self.tags.get(tag).and_then(|t| t.device);
                    match device.and_then(|d| self.write_fault(d)) {
                        Some(f) => {
                            tracing::info!(tag, value, fault = ?f, "Scenario setpoint not taken: the device refuses writes.");
                        }
                        None => self.apply_setpoint(tag, value),
                    }
                }
            }
            FaultKind::Supply { line, per_min } => {
                if let Some(l) = self.line_of(line) {
                    let lt = &mut self.lines[l];
                    lt.spawn_ns = if !on {
                        lt.base_spawn_ns
                    } else if per_min > 0.0 {
                        Some(((60e9 / per_min).round() as u64).max(1))
                    } else {
                        None
                    };
                    // The new rate starts now; the first product of it
                    // arrives at once if the infeed is clear.
                    lt.next_spawn_ns = t_ns;
                }
            }
            FaultKind::StationDrift {
                line,
                station,
                per_hour,
            } => {
                if let Some(l) = self.line_of(line)
                    && let Some(Some(c)) = self.lines[l].cycles.get_mut(station)
                {
                    c.drift = on.then_some(per_hour);
                    // Ended: the station was serviced.
                    if !on {
                        c.wear = 0.0;
                    }
                    c.managed = true;
                }
            }
        }
    }

    /// Updates every non-physics signal at `t_ns`, in a fixed order: drive
    /// speeds (which also set the belts for the next period), machine speed
    /// ratios, currents, motor temperatures, then vibration and the rest.
    fn update_signals(&mut self, t_ns: u64) {
        let t = t_ns as f64 / 1e9;
        let dt = (SIGNAL_STEPS * DT_NS) as f64 / 1e9;
        for line in &mut self.lines {
            for (i, b) in line.belts.iter_mut().enumerate() {
                // A written setpoint moves the drive's reference at its
                // acceleration limit; the speed model wanders around it as
                // around the commissioning speed. Unwritten, nothing here
                // changes (the model is exactly as before).
                if let Some(target) = b.target {
                    b.reference = ramp(b.reference, target, b.physical, b.ramp_per_s, dt);
                    if let Model::Speed { nominal } = &mut b.speed {
                        *nominal = b.reference;
                    }
                }
                b.drive = b.speed.step(t, dt, 1.0, &mut self.rng);
                // Finite by construction; a refusal would keep the last speed.
                let _ = line.model.set_belt_speed_at(i, b.drive as f32);
                b.force = if b.force_steps > 0 {
                    b.force_sum / f64::from(b.force_steps)
                } else {
                    0.0
                };
                b.force_sum = 0.0;
                b.force_steps = 0;
                let v = b.drive.abs();
                b.energy_j += (b.force + BELT_DRAG_N_PER_MPS * v) * v * dt;
            }
            for (i, cyc) in line.cycles.iter_mut().enumerate() {
                let Some(c) = cyc.as_mut().filter(|c| c.managed) else {
                    continue;
                };
                let target = c.target.unwrap_or(c.commissioned);
                c.reference = ramp(c.reference, target, c.physical, c.ramp_per_s, dt);
                // Wear grows with the cycles worked: a station run faster
                // than commissioned wears faster, the cost of its speed.
                if let Some(per_hour) = c.drift {
                    let pace = c.commissioned / c.reference.max(1e-3);
                    c.wear += per_hour * pace * dt / 3600.0;
                }
                let ns = (c.reference * (1.0 + c.wear).max(0.1) * 1e9).round() as u64;
                let now = line.model.stations().get(i).and_then(|s| s.cycle());
                if now.map(|d| d.as_nanos()) != Some(u128::from(ns)) {
                    line.model
                        .set_station_cycle_at(i, Some(Duration::from_nanos(ns.max(1))));
                }
            }
            for (busy, n) in line.busy.iter_mut().zip(&mut line.busy_steps) {
                *busy = f64::from(*n) / SIGNAL_STEPS as f64;
                *n = 0;
            }
        }
        for line in &self.lines {
            for (busy, m) in line.busy.iter().zip(&line.station_machine) {
                // Smoothed over about a second (a multi-head filler or
                // capper works on several products at once, so its drive
                // sees the average, not each product).
                if let Some(m) = m.and_then(|m| self.machines.get_mut(m)) {
                    let was = m.load.unwrap_or(*busy);
                    m.load = Some(was + (*busy - was) * LOAD_SMOOTHING);
                }
            }
        }
        for m in &mut self.machines {
            if let Some((start, from, to, ramp)) = m.wear_fault {
                let x = (t_ns.saturating_sub(start) as f64 / ramp as f64).min(1.0);
                m.wear = from + (to - from) * x;
            }
        }
        // Pass 1: speeds, then each machine's speed ratio.
        for tag in &mut self.tags {
            match &mut tag.driver {
                Driver::BeltSpeed { line, belt } => {
                    if let Some(b) = self.lines.get(*line).and_then(|l| l.belts.get(*belt)) {
                        tag.value = b.drive;
                    }
                }
                Driver::Signal { model, .. } if nominal_of(model).is_some() => {
                    tag.value = model.step(t, dt, 1.0, &mut self.rng);
                }
                Driver::StationSpeed { line, station, .. } => {
                    let cycle = self
                        .lines
                        .get(*line)
                        .and_then(|l| l.model.stations().get(*station))
                        .and_then(|s| s.cycle())
                        .map(|c| c.as_secs_f64());
                    tag.value = match cycle {
                        Some(c) if c > 0.0 => 60.0 / c,
                        _ => 0.0,
                    };
                }
                _ => {}
            }
        }
        for k in 0..self.tags.len() {
            let (machine, ratio) = match &self.tags[k].driver {
                Driver::BeltSpeed { line, belt } => {
                    let Some(b) = self.lines.get(*line).and_then(|l| l.belts.get(*belt)) else {
                        continue;
                    };
                    (self.machine_of_belt(*line, *belt), b.drive / b.nominal)
                }
                Driver::Signal {
                    model,
                    machine: Some(m),
                } => match nominal_of(model) {
                    Some(n) => (Some(*m), self.tags[k].value / n),
                    None => continue,
                },
                Driver::StationSpeed {
                    machine: Some(m),
                    nominal,
                    ..
                } if *nominal > 0.0 => (Some(*m), self.tags[k].value / *nominal),
                _ => continue,
            };
            if let Some(m) = machine.and_then(|m| self.machines.get_mut(m)) {
                m.ratio = ratio.clamp(0.0, 1.5);
            }
        }
        // Pass 2: currents.
        for tag in &mut self.tags {
            let (value, machine) = match &mut tag.driver {
                Driver::BeltCurrent {
                    line,
                    belt,
                    machine,
                } => {
                    let Some(b) = self.lines.get(*line).and_then(|l| l.belts.get(*belt)) else {
                        continue;
                    };
                    let i = I_IDLE_A
                        + I_PER_MPS * b.drive.abs()
                        + I_PER_N * b.force
                        + 0.03 * self.rng.unit();
                    (i, Some(*machine))
                }
                Driver::Signal {
                    model: model @ Model::Current { .. },
                    machine,
                } => {
                    let machine = *machine;
                    // A station machine draws current as it works on
                    // products (idle when starved); others as they run.
                    let load = machine
                        .and_then(|m| self.machines.get(m))
                        .map_or(1.0, |m| m.load.unwrap_or(m.ratio));
                    (model.step(t, dt, load, &mut self.rng), machine)
                }
                _ => continue,
            };
            tag.value = value;
            if let Some(m) = machine.and_then(|m| self.machines.get_mut(m)) {
                m.current = Some(value);
            }
        }
        // Motor temperatures: a first-order lag towards the steady state of
        // the current's I² heating, which a cooling loss raises.
        for m in &mut self.machines {
            let Some(i) = m.current else { continue };
            let steady = AMBIENT_C + HEAT_K_PER_A2 * i * i / (1.0 - m.cooling_loss).max(0.05);
            m.motor_temp = Some(match m.motor_temp {
                // Start warm: a run begins on a line already at temperature.
                None => steady,
                Some(temp) => temp + (steady - temp) * (1.0 - (-dt / MOTOR_TAU_S).exp()),
            });
        }
        // Pass 3: the rest.
        let tau = std::f64::consts::TAU;
        for tag in &mut self.tags {
            tag.value = match &mut tag.driver {
                Driver::MotorTemp { machine } => {
                    let Some(temp) = self.machines.get(*machine).and_then(|m| m.motor_temp) else {
                        continue;
                    };
                    temp + 0.05 * self.rng.unit()
                }
                Driver::Vibration { machine, base } => {
                    let Some(m) = self.machines.get(*machine) else {
                        continue;
                    };
                    (*base + VIB_PER_WEAR2 * m.wear * m.wear)
                        * m.ratio
                        * (1.0 + 0.1 * (tau * t / 37.0).sin() + 0.08 * self.rng.unit())
                }
                Driver::BearingTemp { machine, model } => {
                    let (ratio, wear) = self
                        .machines
                        .get(*machine)
                        .map_or((1.0, 0.0), |m| (m.ratio, m.wear));
                    model.step(t, dt, ratio, &mut self.rng) + BEARING_HEAT_PER_WEAR * wear
                }
                Driver::Signal { model, machine } => {
                    if nominal_of(model).is_some() || matches!(model, Model::Current { .. }) {
                        continue;
                    }
                    let load = (*machine)
                        .and_then(|m| self.machines.get(m))
                        .map_or(1.0, |m| m.ratio);
                    model.step(t, dt, load, &mut self.rng)
                }
                _ => continue,
            };
        }
    }

    fn machine_of_belt(&self, line: usize, belt: usize) -> Option<usize> {
        self.tags.iter().find_map(|t| match t.driver {
            Driver::BeltCurrent {
                line: l,
                belt: b,
                machine,
            } if l == line && b == belt => Some(machine),
            _ => None,
        })
    }

    /// The engineering value of tag `tag` (index in the tag table) as the
    /// plant serves it now, sensor faults included; booleans are 0 or 1.
    /// `None`: not served now (its Modbus device is disconnected) or no
    /// such tag.
    pub fn value(&self, tag: usize) -> Option<f64> {
        let tt = self.tags.get(tag)?;
        if tt.device.is_some_and(|d| self.device_offline(d)) {
            return None;
        }
        let v = match &tt.driver {
            Driver::Setpoint { sp } => self.setpoints.get(*sp)?.1,
            Driver::Eye { line, eye } => {
                let l = self.lines.get(*line)?;
                let blocked = match l.eye_stuck.get(*eye).copied().flatten() {
                    Some(stuck) => stuck,
                    None => l.model.photo_eyes().get(*eye)?.blocked(),
                };
                f64::from(u8::from(blocked))
            }
            Driver::InfeedCount { line } => self.lines.get(*line)?.counts.spawned as f64,
            Driver::OutCount { line } => self.lines.get(*line)?.counts.out as f64,
            Driver::StationCount { line, station } => self
                .lines
                .get(*line)?
                .model
                .stations()
                .get(*station)?
                .releases() as f64,
            _ => tt.value,
        };
        let drift = tt.drift.map_or(0.0, |(start, per_hour)| {
            let since = self.steps.saturating_mul(DT_NS).saturating_sub(start);
            per_hour * since as f64 / 3.6e12
        });
        Some(v + drift)
    }

    /// Whether a Modbus device (index in `config.modbus`) is disconnected.
    pub fn device_offline(&self, device: usize) -> bool {
        self.offline.get(device).is_some_and(|n| *n > 0)
    }

    /// The labels emitted since the last call, in order.
    pub fn drain_labels(&mut self) -> Vec<Label> {
        std::mem::take(&mut self.labels)
    }

    /// Counts of a modelled line, by index in `config.lines`.
    pub fn line_counts(&self, cfg_line: usize) -> Option<LineCounts> {
        self.lines
            .iter()
            .find(|l| l.cfg_line == cfg_line)
            .map(|l| l.counts)
    }

    /// The physics of a modelled line, by index in `config.lines`.
    pub fn line_model(&self, cfg_line: usize) -> Option<&LineModel> {
        self.lines
            .iter()
            .find(|l| l.cfg_line == cfg_line)
            .map(|l| &l.model)
    }

    /// Mean belt pull over the last signal period, N, of
    /// `config.lines[cfg_line].conveyors[conveyor]`.
    pub fn belt_force(&self, cfg_line: usize, conveyor: usize) -> Option<f64> {
        self.lines
            .iter()
            .find(|l| l.cfg_line == cfg_line)
            .and_then(|l| l.belts.get(conveyor))
            .map(|b| b.force)
    }

    /// A machine's bearing wear (0 new .. 1 failing), by index in
    /// `config.machines`.
    pub fn bearing_wear(&self, machine: usize) -> Option<f64> {
        self.machines.get(machine).map(|m| m.wear)
    }
}
