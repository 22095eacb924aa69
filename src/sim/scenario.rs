//! Fault scenarios for the virtual plant (`twin sim --scenario FILE`).
//!
//! Data flow: a scenario file (TOML, `plant-configs/scenarios/*.toml`) is
//! decoded here against the plant config it will run on, into a
//! [`Scenario`]: a list of [`Fault`]s, each with a kind, a target in that
//! plant (a conveyor position, a photo-eye, a machine, a tag or a Modbus
//! device), a start time and an optional duration. The truth model
//! ([`super::truth`]) applies them on its sim-time schedule and emits a
//! ground-truth label at each start and end.
//!
//! Decoding uses the same located-diagnostic reader as plant files, so a
//! broken scenario is reported the same way: every problem at once, each
//! with file:line:col, the key path, what was expected and a did-you-mean
//! for unknown keys and unknown references into the plant.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value as Json, json};
use toml::de::DeTable;

use crate::config::diagnostics::closest;
use crate::config::{ConfigReport, Diagnostic, LoadedConfig, Severity, SourceFile};

use crate::config::decode::{Loc, Sink, Table};

/// Fault kinds, as written in a scenario's `kind`.
pub const FAULT_KINDS: &[&str] = &[
    "bearing_wear",
    "belt_slip",
    "jam",
    "eye_stuck_on",
    "eye_stuck_off",
    "motor_overheat",
    "sensor_drift",
    "plc_disconnect",
    "ignore_writes",
    "reject_writes",
    "setpoint",
    "supply",
    "station_drift",
];

/// Longest time a scenario may schedule: a year of sim time (humantime's
/// year, 365.25 days, so messages say "1year").
const MAX_TIME: Duration = Duration::from_secs(31_557_600);

/// A decoded scenario: faults in file order.
#[derive(Debug, Clone, Default)]
pub struct Scenario {
    pub name: Option<String>,
    pub faults: Vec<Fault>,
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Sim time at which it starts.
    pub at: Duration,
    /// How long it lasts; `None`: until the run ends.
    pub duration: Option<Duration>,
    pub kind: FaultKind,
}

/// What a fault does and to what. Indices are into the plant config
/// (`config.lines`, a line's `conveyors` / `photo_eyes`, `config.machines`,
/// `config.modbus`) and the tag table.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// The machine's bearing wears from `from` to `to` (0 = new, 1 =
    /// failing) linearly over `ramp` of sim time; vibration and bearing
    /// temperature follow. At the end (if any) the bearing is replaced.
    BearingWear {
        machine: usize,
        from: f64,
        to: f64,
        ramp: Duration,
    },
    /// The belt's surface runs `slip` (0..1) slower than its drive; the
    /// speed tag still reads the drive speed.
    BeltSlip {
        line: usize,
        conveyor: usize,
        slip: f64,
    },
    /// Something stuck across the belt at `position` metres: products pile
    /// up behind it.
    Jam {
        line: usize,
        conveyor: usize,
        position: f64,
    },
    /// The photo-eye's input reads blocked (`on`) or clear, whatever the
    /// products do.
    EyeStuck { line: usize, eye: usize, on: bool },
    /// The machine's motor loses `cooling_loss` (0..1) of its cooling (a
    /// blocked fan): its steady temperature rise grows by 1 / (1 - loss).
    MotorOverheat { machine: usize, cooling_loss: f64 },
    /// The tag reads `per_hour` engineering units per hour of sim time too
    /// high (negative: too low), growing from the start.
    SensorDrift { tag: usize, per_hour: f64 },
    /// The Modbus device stops answering and refuses connections.
    PlcDisconnect { device: usize },
    /// The Modbus device acknowledges writes but applies none of them (its
    /// registers keep their values): what a read-back must catch.
    IgnoreWrites { device: usize },
    /// The Modbus device answers every write with exception `code` (04,
    /// server device failure, by default) and applies none.
    RejectWrites { device: usize, code: u8 },
    /// An action, not a fault: the writable setpoint tag is set to `value`
    /// at `at`, as if written over Modbus (docs/sim.md).
    Setpoint { tag: usize, value: f64 },
    /// The line's supply runs at `per_min` products a minute (0: a gap)
    /// instead of its `spawn_interval`.
    Supply { line: usize, per_min: f64 },
    /// The station's cycle time grows by `per_hour` of itself per hour
    /// (wear); back to its setpoint at the end (maintenance).
    StationDrift {
        line: usize,
        station: usize,
        per_hour: f64,
    },
}

impl FaultKind {
    /// The name written in `kind`.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::BearingWear { .. } => "bearing_wear",
            FaultKind::BeltSlip { .. } => "belt_slip",
            FaultKind::Jam { .. } => "jam",
            FaultKind::EyeStuck { on: true, .. } => "eye_stuck_on",
            FaultKind::EyeStuck { on: false, .. } => "eye_stuck_off",
            FaultKind::MotorOverheat { .. } => "motor_overheat",
            FaultKind::SensorDrift { .. } => "sensor_drift",
            FaultKind::PlcDisconnect { .. } => "plc_disconnect",
            FaultKind::IgnoreWrites { .. } => "ignore_writes",
            FaultKind::RejectWrites { .. } => "reject_writes",
            FaultKind::Setpoint { .. } => "setpoint",
            FaultKind::Supply { .. } => "supply",
            FaultKind::StationDrift { .. } => "station_drift",
        }
    }

    /// The target, by name, for labels.
    pub fn target_json(&self, cfg: &LoadedConfig) -> Json {
        let c = &cfg.config;
        let line = |l: usize| c.lines.get(l).map(|l| l.id.value.clone());
        let conveyor = |l: usize, cv: usize| {
            c.lines
                .get(l)
                .and_then(|x| x.conveyors.get(cv))
                .map(|x| x.id.value.clone())
        };
        let machine = |m: usize| c.machines.get(m).map(|m| m.id.value.clone());
        match self {
            FaultKind::BearingWear { machine: m, .. }
            | FaultKind::MotorOverheat { machine: m, .. } => json!({"machine": machine(*m)}),
            FaultKind::BeltSlip {
                line: l,
                conveyor: cv,
                ..
            } => json!({"line": line(*l), "conveyor": conveyor(*l, *cv)}),
            FaultKind::Jam {
                line: l,
                conveyor: cv,
                position,
            } => json!({
                "line": line(*l),
                "conveyor": conveyor(*l, *cv),
                "position": position,
            }),
            FaultKind::EyeStuck { line: l, eye, .. } => {
                let e = c.lines.get(*l).and_then(|x| x.photo_eyes.get(*eye));
                json!({
                    "line": line(*l),
                    "eye": e.map(|e| e.id.value.clone()),
                    "tag": e.map(|e| e.tag.value.clone()),
                })
            }
            FaultKind::SensorDrift { tag, .. } => {
                json!({"tag": cfg.tags.iter().nth(*tag).map(|d| d.name.clone())})
            }
            FaultKind::PlcDisconnect { device }
            | FaultKind::IgnoreWrites { device }
            | FaultKind::RejectWrites { device, .. } => {
                json!({"device": c.modbus.get(*device).map(|d| d.name.value.clone())})
            }
            FaultKind::Setpoint { tag, .. } => {
                json!({"tag": cfg.tags.iter().nth(*tag).map(|d| d.name.clone())})
            }
            FaultKind::Supply { line: l, .. } => json!({"line": line(*l)}),
            FaultKind::StationDrift {
                line: l, station, ..
            } => json!({
                "line": line(*l),
                "station": c.lines.get(*l).and_then(|x| x.stations.get(*station)).map(|s| s.id.value.clone()),
            }),
        }
    }

    /// The kind-specific parameters, for labels.
    pub fn params_json(&self) -> Json {
        match self {
            FaultKind::BearingWear { from, to, ramp, .. } => {
                json!({"from": from, "to": to, "ramp_s": ramp.as_secs_f64()})
            }
            FaultKind::BeltSlip { slip, .. } => json!({"slip": slip}),
            FaultKind::MotorOverheat { cooling_loss, .. } => {
                json!({"cooling_loss": cooling_loss})
            }
            FaultKind::SensorDrift { per_hour, .. } => json!({"per_hour": per_hour}),
            FaultKind::RejectWrites { code, .. } => json!({"code": code}),
            FaultKind::Setpoint { value, .. } => json!({"value": value}),
            FaultKind::Supply { per_min, .. } => json!({"per_min": per_min}),
            FaultKind::StationDrift { per_hour, .. } => json!({"per_hour": per_hour}),
            FaultKind::Jam { .. }
            | FaultKind::EyeStuck { .. }
            | FaultKind::PlcDisconnect { .. }
            | FaultKind::IgnoreWrites { .. } => {
                json!({})
            }
        }
    }
}

/// Read and decode a scenario file for `cfg`.
pub fn load_file(path: &Path, cfg: &LoadedConfig) -> Result<Scenario, Box<ConfigReport>> {
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(path, &text, cfg),
        Err(e) => {
            let d = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Diagnostic::error(0..0, "", "scenario file not found").help(
                        "check the path; the shipped scenarios are in plant-configs/scenarios/",
                    )
                }
                _ => Diagnostic::error(0..0, "", format!("cannot read scenario file: {e}"))
                    .help("check the path and the file's permissions"),
            };
            Err(Box::new(ConfigReport {
                file: SourceFile::new(path, ""),
                diagnostics: vec![d],
            }))
        }
    }
}

/// Decode scenario text for `cfg`; `path` is only used in messages.
pub fn load_str(
    path: &Path,
    text: &str,
    cfg: &LoadedConfig,
) -> Result<Scenario, Box<ConfigReport>> {
    let file = SourceFile::new(path, text);
    let mut sink = Sink::default();
    let (root, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let diagnostics = syntax
            .into_iter()
            .map(|e| {
                Diagnostic::error(
                    e.span().unwrap_or(0..0),
                    "",
                    format!("TOML syntax error: {}", e.message().trim()),
                )
                .help("fix the syntax first; the scenario is checked once the file parses")
            })
            .collect();
        return Err(Box::new(ConfigReport { file, diagnostics }));
    }
    let span = root.span();
    let mut t = Table::new(root.get_ref(), span, "");
    t.opt_int(&mut sink, "version", 1, 1);
    let name = t.opt_str(&mut sink, "name").map(|n| n.value);
    t.opt_str(&mut sink, "description");
    let tables = t.opt_table_array(&mut sink, "faults");
    if t.key_span("faults").is_none() {
        sink.push(
            Diagnostic::error(0..0, "faults", "a scenario needs at least one `[[faults]]` entry")
                .expected("one or more `[[faults]]` tables with `kind`, `at` and a target")
                .help("add e.g. `[[faults]]` with `kind = \"jam\"`, `at = \"60s\"`, `line`, `conveyor` and `position`"),
        );
    }
    let mut faults = Vec::new();
    for f in tables {
        faults.extend(decode_fault(&mut sink, f, cfg));
    }
    t.finish(&mut sink);
    let mut diags = sink.diags;
    diags.sort_by_key(|d| (d.span.start, d.severity));
    if diags.iter().any(|d| d.severity == Severity::Error) {
        return Err(Box::new(ConfigReport {
            file,
            diagnostics: diags,
        }));
    }
    Ok(Scenario { name, faults })
}

/// A reference by name that names nothing: the error, with a did-you-mean
/// among `known`.
fn unknown_ref<'a>(
    sink: &mut Sink,
    t: &Table<'_, '_>,
    key: &str,
    what: &str,
    name: &Loc<String>,
    known: impl Iterator<Item = &'a str> + Clone,
) {
    let list: Vec<&str> = known.clone().collect();
    sink.push(
        Diagnostic::error(
            name.span.clone(),
            t.key_path(key),
            format!("unknown {what} \"{}\"", name.value),
        )
        .expected(format!("one of {}", list.join(", ")))
        .help(
            closest(&name.value, known)
                .map(|c| format!("did you mean `{c}`?"))
                .unwrap_or_else(|| format!("name a {what} of the plant config")),
        ),
    );
}

/// Looks up `key` (a required string) among `names`; reports it when absent
/// or unknown.
fn lookup<'a>(
    sink: &mut Sink,
    t: &mut Table<'_, '_>,
    key: &'static str,
    what: &str,
    names: impl Iterator<Item = &'a str> + Clone,
) -> Option<usize> {
    let name = t.req_str(sink, key)?;
    let found = names.clone().position(|n| n == name.value);
    if found.is_none() {
        unknown_ref(sink, t, key, what, &name, names);
    }
    found
}

/// A number in `lo..=hi`, reported at its value when outside.
fn in_range(
    sink: &mut Sink,
    t: &Table<'_, '_>,
    key: &'static str,
    v: Option<Loc<f64>>,
    (lo, hi): (f64, f64),
    help: &str,
) -> Option<f64> {
    let v = v?;
    if (lo..=hi).contains(&v.value) {
        return Some(v.value);
    }
    sink.push(
        Diagnostic::error(
            v.span.clone(),
            t.key_path(key),
            format!("{} is out of range", v.value),
        )
        .expected(format!("a number in {lo}..={hi}"))
        .help(help.to_string()),
    );
    None
}

/// The line (`line`, or the only line with conveyors when omitted) and one
/// of its conveyors (`conveyor`).
fn line_conveyor(
    sink: &mut Sink,
    t: &mut Table<'_, '_>,
    cfg: &LoadedConfig,
) -> Option<(usize, usize)> {
    let lines = &cfg.config.lines;
    let Some(line) = line_only(sink, t, cfg) else {
        // Without its line the conveyor cannot be checked, but `conveyor`
        // is a key of this fault all the same: it must not come out as
        // "unknown key `conveyor`".
        let _ = t.opt_str(sink, "conveyor");
        return None;
    };
    let convs = &lines[line].conveyors;
    let what = format!("conveyor of line \"{}\"", lines[line].id.value);
    let conveyor = lookup(
        sink,
        t,
        "conveyor",
        &what,
        convs.iter().map(|c| c.id.value.as_str()),
    )?;
    Some((line, conveyor))
}

/// The line named by `line`, or the only line with conveyors when omitted.
fn line_only(sink: &mut Sink, t: &mut Table<'_, '_>, cfg: &LoadedConfig) -> Option<usize> {
    let lines = &cfg.config.lines;
    if t.key_span("line").is_some() {
        return lookup(
            sink,
            t,
            "line",
            "line",
            lines.iter().map(|l| l.id.value.as_str()),
        );
    }
    let with: Vec<usize> = (0..lines.len())
        .filter(|&i| !lines[i].conveyors.is_empty())
        .collect();
    if let [only] = with[..] {
        return Some(only);
    }
    sink.push(
        Diagnostic::error(t.span(), t.key_path("line"), "missing required key `line`")
            .expected("the id of a line with conveyors")
            .help("the plant has several lines (or none with conveyors); name one with `line = \"...\"`"),
    );
    None
}

/// The machine named by `machine`, which must bind a tag in `role`.
fn machine_with_role(
    sink: &mut Sink,
    t: &mut Table<'_, '_>,
    cfg: &LoadedConfig,
    role: &str,
    why: &str,
) -> Option<usize> {
    let machines = &cfg.config.machines;
    let m = lookup(
        sink,
        t,
        "machine",
        "machine",
        machines.iter().map(|m| m.id.value.as_str()),
    )?;
    if !machines[m].tags.iter().any(|(r, _)| r.value == role) {
        let with: Vec<&str> = machines
            .iter()
            .filter(|m| m.tags.iter().any(|(r, _)| r.value == role))
            .map(|m| m.id.value.as_str())
            .collect();
        sink.push(
            Diagnostic::error(
                t.key_span("machine").unwrap_or(t.span()),
                t.key_path("machine"),
                format!(
                    "machine \"{}\" has no `{role}` tag, so {why}",
                    machines[m].id.value
                ),
            )
            .expected(format!("a machine whose [machines.tags] binds `{role}`"))
            .help(if with.is_empty() {
                format!("bind a `{role}` tag to the machine in the plant config")
            } else {
                format!("machines with one: {}", with.join(", "))
            }),
        );
        return None;
    }
    Some(m)
}

fn decode_fault(sink: &mut Sink, mut t: Table<'_, '_>, cfg: &LoadedConfig) -> Option<Fault> {
    let mut kind_known = true;
    let fault = decode_fault_keys(sink, &mut t, cfg, &mut kind_known);
    // Unknown keys are reported even when a known one was wrong, but not
    // when the kind is: which keys belong then is anyone's guess, and the
    // kind's own error says what to fix.
    if kind_known {
        t.finish(sink);
    }
    fault
}

/// Other spellings of a kind, for the did-you-mean.
const KIND_ALIASES: &[(&str, &str)] = &[
    ("stuck_eye", "eye_stuck_on"),
    ("slip", "belt_slip"),
    ("disconnect", "plc_disconnect"),
    ("drift", "sensor_drift"),
    ("overheat", "motor_overheat"),
];

const WEAR_HELP: &str = "0 is a new bearing, 1 a failing one";

fn decode_fault_keys(
    sink: &mut Sink,
    t: &mut Table<'_, '_>,
    cfg: &LoadedConfig,
    kind_known: &mut bool,
) -> Option<Fault> {
    let kind = t.req_enum(sink, "kind", FAULT_KINDS, KIND_ALIASES);
    *kind_known = kind.is_some();
    if t.key_span("at").is_none() {
        sink.push(
            Diagnostic::error(t.span(), t.key_path("at"), "missing required key `at`")
                .expected("a duration of sim time since the start, such as \"90s\" or \"1h\"")
                .help("add `at = \"60s\"` to start the fault a minute into the run"),
        );
    }
    let at = t.opt_duration(sink, "at", Duration::ZERO, MAX_TIME);
    let duration = t.opt_duration(sink, "duration", Duration::from_millis(1), MAX_TIME);
    let kind = match kind?.value {
        "bearing_wear" => {
            let machine =
                machine_with_role(sink, t, cfg, "vibration", "its wear could not be seen");
            let from = t.opt_f64(sink, "from");
            let from = in_range(sink, t, "from", from, (0.0, 1.0), WEAR_HELP);
            let to = t.opt_f64(sink, "to");
            let to = in_range(sink, t, "to", to, (0.0, 1.0), WEAR_HELP);
            let ramp = t.opt_duration(sink, "ramp", Duration::from_secs(1), MAX_TIME);
            FaultKind::BearingWear {
                machine: machine?,
                from: from.unwrap_or(0.0),
                to: to.unwrap_or(1.0),
                ramp: ramp.map_or(Duration::from_secs(4 * 3600), |r| r.value),
            }
        }
        "belt_slip" => {
            let lc = line_conveyor(sink, t, cfg);
            let slip = t.req_f64(sink, "slip");
            let slip = in_range(
                sink,
                t,
                "slip",
                slip,
                (0.0, 0.95),
                "the fraction the belt surface runs slower than its drive, e.g. 0.3",
            );
            let (line, conveyor) = lc?;
            FaultKind::BeltSlip {
                line,
                conveyor,
                slip: slip?,
            }
        }
        "jam" => {
            let lc = line_conveyor(sink, t, cfg);
            let pos = t.req_f64(sink, "position");
            let (line, conveyor) = lc?;
            let length: f64 = cfg.config.lines[line].conveyors[conveyor]
                .segments
                .iter()
                .map(|s| s.length.value)
                .sum();
            let position = in_range(
                sink,
                t,
                "position",
                pos,
                (0.0, length),
                "metres along the conveyor's belt, from its start",
            )?;
            FaultKind::Jam {
                line,
                conveyor,
                position,
            }
        }
        k @ ("eye_stuck_on" | "eye_stuck_off") => {
            let on = k == "eye_stuck_on";
            let (line, eye) = photo_eye(sink, t, cfg)?;
            FaultKind::EyeStuck { line, eye, on }
        }
        "motor_overheat" => {
            let machine = machine_with_role(
                sink,
                t,
                cfg,
                "motor_temperature",
                "it has no motor temperature to overheat",
            );
            let loss = t.opt_f64(sink, "cooling_loss");
            let loss = in_range(
                sink,
                t,
                "cooling_loss",
                loss,
                (0.0, 0.95),
                "the fraction of the motor's cooling lost, e.g. 0.6 for a blocked fan",
            );
            FaultKind::MotorOverheat {
                machine: machine?,
                cooling_loss: loss.unwrap_or(0.6),
            }
        }
        "sensor_drift" => {
            let names: Vec<&str> = cfg.tags.iter().map(|d| d.name.as_str()).collect();
            let tag = lookup(sink, t, "tag", "tag", names.iter().copied());
            let per_hour = t.req_f64(sink, "per_hour");
            let tag = tag?;
            if cfg.tags.iter().nth(tag).is_some_and(|d| d.is_bool) {
                sink.push(
                    Diagnostic::error(
                        t.key_span("tag").unwrap_or(t.span()),
                        t.key_path("tag"),
                        "a boolean tag cannot drift",
                    )
                    .expected("a numeric tag")
                    .help("use eye_stuck_on or eye_stuck_off for a photo-eye input"),
                );
                return None;
            }
            FaultKind::SensorDrift {
                tag,
                per_hour: per_hour?.value,
            }
        }
        "plc_disconnect" => {
            let device = lookup(
                sink,
                t,
                "device",
                "Modbus device",
                cfg.config.modbus.iter().map(|d| d.name.value.as_str()),
            );
            FaultKind::PlcDisconnect { device: device? }
        }
        k @ ("ignore_writes" | "reject_writes") => {
            let device = lookup(
                sink,
                t,
                "device",
                "Modbus device",
                cfg.config.modbus.iter().map(|d| d.name.value.as_str()),
            );
            if k == "ignore_writes" {
                FaultKind::IgnoreWrites { device: device? }
            } else {
                // 1..=255: any exception a device may answer; the common
                // ones are 04 (server device failure) and 06 (busy).
                let code = t.opt_int(sink, "code", 1, 255);
                FaultKind::RejectWrites {
                    device: device?,
                    code: code.map_or(4, |c| u8::try_from(c.value).unwrap_or(4)),
                }
            }
        }
        "setpoint" => {
            let writable = super::writable::writable_tags(cfg);
            let names: Vec<&str> = writable
                .iter()
                .filter_map(|w| cfg.tags.iter().nth(w.tag).map(|d| d.name.as_str()))
                .collect();
            let found = if names.is_empty() {
                // `tag` is this action's key even when nothing can be
                // written: point at it, and do not call it unknown.
                let at = t.key_span("tag").unwrap_or(t.span());
                let _ = t.opt_str(sink, "tag");
                sink.push(
                    Diagnostic::error(at, t.key_path("tag"), "the plant has no writable setpoint")
                        .expected("a holding register or coil whose tag is named `..._sp`")
                        .help("add e.g. `infeed.speed_sp` next to a conveyor's `infeed.speed` (docs/sim.md, \"Writable setpoints\")"),
                );
                None
            } else {
                lookup(sink, t, "tag", "writable setpoint", names.iter().copied())
            };
            let value = t.req_f64(sink, "value");
            if let Some(span) = t.key_span("duration") {
                sink.push(
                    Diagnostic::error(
                        span,
                        t.key_path("duration"),
                        "a setpoint action has no duration",
                    )
                    .expected("`at` only: the setpoint holds until the next write")
                    .help("add a second `setpoint` action to change it back"),
                );
            }
            let w = &writable[found?];
            let value = in_range(
                sink,
                t,
                "value",
                value,
                w.accept,
                "the range the device accepts (docs/sim.md, \"Writable setpoints\")",
            )?;
            FaultKind::Setpoint { tag: w.tag, value }
        }
        "supply" => {
            let line = line_only(sink, t, cfg);
            let per_min = t.req_f64(sink, "per_min");
            let per_min = in_range(
                sink,
                t,
                "per_min",
                per_min,
                (0.0, 600.0),
                "products a minute at the infeed; 0 is a gap in the supply",
            );
            let line = line?;
            if cfg.config.lines[line]
                .product
                .as_ref()
                .and_then(|p| p.spawn_interval)
                .is_none()
            {
                sink.push(
                    Diagnostic::error(
                        t.key_span("per_min").unwrap_or(t.span()),
                        t.key_path("per_min"),
                        "the line has no supply to vary",
                    )
                    .expected("a line whose [lines.product] has a `spawn_interval`")
                    .help("give the line's product a `spawn_interval`"),
                );
                return None;
            }
            FaultKind::Supply {
                line,
                per_min: per_min?,
            }
        }
        "station_drift" => {
            let line = line_only(sink, t, cfg);
            let station = line.and_then(|l| {
                let what = format!("station of line \"{}\"", cfg.config.lines[l].id.value);
                lookup(
                    sink,
                    t,
                    "station",
                    &what,
                    cfg.config.lines[l]
                        .stations
                        .iter()
                        .map(|s| s.id.value.as_str()),
                )
            });
            let per_hour = t.req_f64(sink, "per_hour");
            let per_hour = in_range(
                sink,
                t,
                "per_hour",
                per_hour,
                (-0.5, 10.0),
                "the share of its cycle time the station slows by per hour, e.g. 0.3",
            );
            FaultKind::StationDrift {
                line: line?,
                station: station?,
                per_hour: per_hour?,
            }
        }
        _ => return None,
    };
    Some(Fault {
        at: at?.value,
        duration: duration.map(|d| d.value),
        kind,
    })
}

/// The photo-eye named by `eye` (within `line`, if given): (line, eye).
fn photo_eye(sink: &mut Sink, t: &mut Table<'_, '_>, cfg: &LoadedConfig) -> Option<(usize, usize)> {
    let lines = &cfg.config.lines;
    let line_given = t.key_span("line").is_some();
    let line = if line_given {
        lookup(
            sink,
            t,
            "line",
            "line",
            lines.iter().map(|l| l.id.value.as_str()),
        )
    } else {
        None
    };
    let name = t.req_str(sink, "eye")?;
    if line_given && line.is_none() {
        return None;
    }
    let candidates: Vec<(usize, usize)> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| line.is_none_or(|l| l == *i))
        .flat_map(|(i, l)| (0..l.photo_eyes.len()).map(move |e| (i, e)))
        .collect();
    let id = |&(l, e): &(usize, usize)| lines[l].photo_eyes[e].id.value.as_str();
    let hits: Vec<(usize, usize)> = candidates
        .iter()
        .copied()
        .filter(|c| id(c) == name.value)
        .collect();
    match hits[..] {
        [hit] => Some(hit),
        [] => {
            unknown_ref(
                sink,
                t,
                "eye",
                "photo-eye",
                &name,
                candidates.iter().map(id),
            );
            None
        }
        _ => {
            sink.push(
                Diagnostic::error(
                    name.span.clone(),
                    t.key_path("eye"),
                    format!("photo-eye \"{}\" is in several lines", name.value),
                )
                .expected("a photo-eye id that names one eye")
                .help("add `line = \"...\"` to say which line's eye"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> LoadedConfig {
        crate::config::load_str(
            Path::new("packaging-line.toml"),
            include_str!("../../plant-configs/packaging-line.toml"),
        )
        .expect("demo config")
    }

    #[test]
    fn every_shipped_scenario_decodes_against_the_demo_line() {
        let cfg = demo();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("plant-configs/scenarios");
        let mut kinds = std::collections::BTreeSet::new();
        let entries = std::fs::read_dir(&dir).expect("scenario folder");
        for e in entries {
            let path = e.expect("entry").path();
            let s = load_file(&path, &cfg).unwrap_or_else(|r| panic!("{r}"));
            assert!(!s.faults.is_empty(), "{}", path.display());
            kinds.extend(s.faults.iter().map(|f| f.kind.name()));
        }
        // Every kind but one of the two eye directions appears in the
        // shipped files; both eye kinds are covered by stuck_eye + mixed.
        assert_eq!(kinds.len(), FAULT_KINDS.len(), "{kinds:?}");
    }

    #[test]
    fn write_and_shift_kinds_decode_with_their_defaults() {
        let cfg = demo();
        let text = "[[faults]]\nkind = \"reject_writes\"\ndevice = \"line_plc\"\nat = \"1s\"\n\n\
                    [[faults]]\nkind = \"ignore_writes\"\ndevice = \"filler_plc\"\nat = \"1s\"\nduration = \"5s\"\n\n\
                    [[faults]]\nkind = \"setpoint\"\ntag = \"filler.cycle_sp\"\nvalue = 0.6\nat = \"2s\"\n\n\
                    [[faults]]\nkind = \"supply\"\nper_min = 0\nat = \"3s\"\nduration = \"1s\"\n\n\
                    [[faults]]\nkind = \"station_drift\"\nstation = \"capper\"\nper_hour = 0.2\nat = \"0s\"\n";
        let s = load_str(Path::new("s.toml"), text, &cfg).unwrap_or_else(|r| panic!("{r}"));
        let kinds: Vec<FaultKind> = s.faults.into_iter().map(|f| f.kind).collect();
        let tag = cfg.tags.id("filler.cycle_sp").expect("tag").index();
        assert_eq!(
            kinds,
            vec![
                FaultKind::RejectWrites { device: 0, code: 4 },
                FaultKind::IgnoreWrites { device: 1 },
                FaultKind::Setpoint { tag, value: 0.6 },
                FaultKind::Supply {
                    line: 0,
                    per_min: 0.0
                },
                FaultKind::StationDrift {
                    line: 0,
                    station: 1,
                    per_hour: 0.2
                },
            ]
        );
    }

    #[test]
    fn write_and_shift_kinds_report_located_errors() {
        let cfg = demo();
        let text = "[[faults]]\nkind = \"reject_writes\"\ndevice = \"line_plk\"\ncode = 300\nat = \"1s\"\n\n\
                    [[faults]]\nkind = \"setpoint\"\ntag = \"infeed.speed\"\nvalue = 0.6\nat = \"2s\"\n\n\
                    [[faults]]\nkind = \"setpoint\"\ntag = \"infeed.speed_sp\"\nvalue = 2.0\nat = \"2s\"\nduration = \"1s\"\n\n\
                    [[faults]]\nkind = \"supply\"\nper_min = -5\nat = \"3s\"\n\n\
                    [[faults]]\nkind = \"station_drift\"\nstation = \"filer\"\nper_hour = 0.2\nat = \"0s\"\n";
        let r = load_str(Path::new("s.toml"), text, &cfg).expect_err("broken");
        let short: Vec<String> = r
            .diagnostics
            .iter()
            .map(|d| r.file.render_short(d))
            .collect();
        let want = [
            (
                "s.toml:3:10: error: faults[0].device: unknown Modbus device",
                "did you mean `line_plc`?",
            ),
            (
                "s.toml:4:8: error: faults[0].code: 300 is out of range",
                "1..=255",
            ),
            (
                "s.toml:9:7: error: faults[1].tag: unknown writable setpoint",
                "did you mean `infeed.speed_sp`?",
            ),
            (
                "s.toml:16:9: error: faults[2].value: 2 is out of range",
                "0..=1.5",
            ),
            (
                "s.toml:18:1: error: faults[2].duration: a setpoint action has no duration",
                "",
            ),
            (
                "s.toml:22:11: error: faults[3].per_min: -5 is out of range",
                "0..=600",
            ),
            (
                "s.toml:27:11: error: faults[4].station: unknown station",
                "did you mean `filler`?",
            ),
        ];
        assert_eq!(short.len(), want.len(), "{short:#?}");
        for (got, (head, tail)) in short.iter().zip(want) {
            assert!(
                got.starts_with(head) && got.contains(tail),
                "{got}\nwant {head} … {tail}"
            );
        }
    }

    #[test]
    fn diagnostics_name_the_key_and_suggest_the_fix() {
        let cfg = demo();
        let text = "[[faults]]\nkind = \"jam\"\nline = \"line1\"\nconveyor = \"outfed\"\nposition = 0.3\nat = \"10s\"\n";
        let r = load_str(Path::new("s.toml"), text, &cfg).expect_err("unknown conveyor");
        let short: Vec<String> = r
            .diagnostics
            .iter()
            .map(|d| r.file.render_short(d))
            .collect();
        assert_eq!(short.len(), 1, "{short:?}");
        assert!(
            short[0].starts_with("s.toml:4:12: error: faults[0].conveyor: unknown conveyor")
                && short[0].contains("did you mean `outfeed`?"),
            "{short:?}"
        );
    }
}
