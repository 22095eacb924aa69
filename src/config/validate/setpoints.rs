//! Setpoints and `[guard]`: one setpoint per tag, each written somewhere the
//! twin can write (a coil or holding register, an MQTT command topic, a
//! Sparkplug metric), no two writing the same place, read back from a known
//! tag, with interlocks that parse and type-check against the tags they
//! name; resolved into the guard's [`GuardConfig`].

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use super::{Cx, Refs};
use crate::config::decode::{Loc, Sink};
use crate::config::diagnostics::{Diagnostic, Severity, did_you_mean};
use crate::config::guard::{
    DEFAULT_ADVISORY_EXPIRY, DEFAULT_READBACK_TIMEOUT, DEFAULT_READBACK_TOLERANCE,
    DEFAULT_WATCHDOG_EVERY, GuardConfig, GuardedSetpoint, ModbusTarget, OutOfRange, Readback,
    Watchdog, WriteTarget,
};
use crate::config::interlock::{self, Interlock, Kind, SpanMap};
use crate::config::{
    DataType, PlantConfig, RecordedType, RegisterTable, Setpoint, TagId, TagSource, tag_value_type,
};

pub(super) fn check(
    sink: &mut Sink,
    cx: &Cx<'_>,
    cfg: &PlantConfig,
    refs: &Refs<'_>,
) -> GuardConfig {
    let mut setpoint_tags = BTreeMap::new();
    let mut written: Vec<(WriteTarget, Range<usize>)> = Vec::new();
    let mut setpoints = Vec::new();
    for (i, sp) in cfg.setpoints.iter().enumerate() {
        let path = format!("setpoints[{i}].tag");
        // A second setpoint for a tag is reported once, as a duplicate.
        let repeated = setpoint_tags.contains_key(&sp.tag.value);
        cx.dup(
            sink,
            &mut setpoint_tags,
            "setpoint for tag",
            path.clone(),
            &sp.tag,
        );
        let before = errors(sink);
        let id = match refs.tags.id(&sp.tag.value) {
            Some(id) => Some(id),
            None => {
                let _ = refs.unknown.report(sink, path, &sp.tag);
                None
            }
        };
        let target = id.and_then(|id| target(sink, cfg, i, sp, refs.tags.get(id).source));
        let readback = readback(sink, cfg, refs, i, sp, id, target.as_ref());
        let interlocks = interlocks(sink, cx, cfg, refs, i, sp);
        if let Some(t) = target.as_ref().filter(|_| !repeated) {
            if let Some((_, first)) = written.iter().find(|(w, _)| clash(w, t)) {
                sink.push(
                    Diagnostic::error(
                        sp.tag.span.clone(),
                        format!("setpoints[{i}]"),
                        format!(
                            "setpoint for \"{}\" writes {}, as another setpoint does",
                            sp.tag.value,
                            place(cfg, t)
                        ),
                    )
                    .expected("each setpoint written to its own register, topic or metric")
                    .help(format!("the other setpoint is at {}", cx.at(first))),
                );
            } else {
                written.push((t.clone(), sp.tag.span.clone()));
            }
        }
        if errors(sink) != before {
            continue;
        }
        if let (Some(tag), Some(target), Some(readback)) = (id, target, readback) {
            setpoints.push(resolve(cfg, sp, tag, target, readback, interlocks));
        }
    }
    let g = &cfg.guard;
    let kill_tag = g.kill_tag.as_ref().and_then(|k| {
        let path = "guard.kill_tag".to_string();
        let Some(id) = refs.tags.id(&k.value) else {
            let _ = refs.unknown.report(sink, path, k);
            return None;
        };
        if kind(cfg, refs, id) == Kind::Text {
            sink.push(
                Diagnostic::error(
                    k.span.clone(),
                    path,
                    format!("kill tag \"{}\" is text", k.value),
                )
                .expected(
                    "a boolean or numeric tag: while it is true or non-zero, nothing is written",
                ),
            );
            return None;
        }
        Some(id)
    });
    let watchdog = g.watchdog.as_ref().and_then(|w| {
        let Some(device) = cfg
            .modbus
            .iter()
            .position(|d| d.name.value == w.device.value)
        else {
            sink.push(
                Diagnostic::error(
                    w.device.span.clone(),
                    "guard.watchdog.device",
                    format!("unknown Modbus device \"{}\"", w.device.value),
                )
                .expected(
                    "the name of a `[[sources.modbus]]` entry: the PLC that watches the heartbeat",
                )
                .maybe_help(did_you_mean(
                    &w.device.value,
                    cfg.modbus.iter().map(|d| d.name.value.as_str()),
                )),
            );
            return None;
        };
        let every = w.every.as_ref().map_or(DEFAULT_WATCHDOG_EVERY, |e| e.value);
        let beat = WriteTarget::Modbus(ModbusTarget {
            device,
            table: w.table.value,
            address: w.address.value,
            data_type: if w.table.value.is_bits() {
                DataType::Bool
            } else {
                DataType::U16
            },
            bit: None,
            order: Default::default(),
            scale: 1.0,
            offset: 0.0,
            own_register: false,
        });
        if let Some((_, first)) = written.iter().find(|(t, _)| clash(t, &beat)) {
            sink.push(
                Diagnostic::error(
                    w.address.span.clone(),
                    "guard.watchdog.address",
                    format!(
                        "the watchdog writes {}, as a setpoint does",
                        place(cfg, &beat)
                    ),
                )
                .expected("a register of its own for the heartbeat")
                .help(format!("the setpoint is at {}", cx.at(first))),
            );
            return None;
        }
        Some(Watchdog {
            device,
            table: w.table.value,
            address: w.address.value,
            every,
            every_ticks: ticks_up(cfg, every),
        })
    });
    let advisory_expiry = g
        .advisory_expiry
        .as_ref()
        .map_or(DEFAULT_ADVISORY_EXPIRY, |d| d.value);
    GuardConfig {
        setpoints,
        kill_switch: g.kill_switch.as_ref().is_some_and(|k| k.value),
        kill_tag,
        watchdog,
        advisory_expiry,
        advisory_expiry_ticks: ticks_up(cfg, advisory_expiry),
    }
}

fn errors(sink: &Sink) -> usize {
    sink.diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count()
}

/// `d` in ticks, rounded up: a limit is at least as long as written.
fn ticks_up(cfg: &PlantConfig, d: Duration) -> u32 {
    let tick = cfg.plant.tick.as_nanos().max(1);
    u32::try_from(d.as_nanos().div_ceil(tick)).unwrap_or(u32::MAX)
}

fn kind(cfg: &PlantConfig, refs: &Refs<'_>, id: TagId) -> Kind {
    match tag_value_type(cfg, refs.tags.get(id)) {
        RecordedType::Bool => Kind::Bool,
        RecordedType::Number => Kind::Num,
        RecordedType::Text => Kind::Text,
    }
}

/// Where the setpoint on tag `id` is written, or why it cannot be.
fn target(
    sink: &mut Sink,
    cfg: &PlantConfig,
    i: usize,
    sp: &Setpoint,
    source: TagSource,
) -> Option<WriteTarget> {
    let at = |key: &str| format!("setpoints[{i}].{key}");
    let tag = &sp.tag;
    let modbus_keys = sp
        .target
        .as_ref()
        .map(|t| t.modbus_keys())
        .unwrap_or_default();
    let metric = sp.target.as_ref().and_then(|t| t.metric.as_ref());
    // Keys of another kind of source than the tag's: name each one.
    let misplaced = |sink: &mut Sink, key: &str, span: Range<usize>, from: &str, instead: &str| {
        sink.push(
            Diagnostic::error(
                span,
                at(key),
                format!(
                    "`{key}` does not apply to tag \"{}\": it comes from {from}",
                    tag.value
                ),
            )
            .help(instead.to_string()),
        );
    };
    match source {
        TagSource::Modbus { device, register } => {
            let d = &cfg.modbus[device];
            let from = format!("Modbus device \"{}\"", d.name.value);
            if let Some(c) = &sp.command_topic {
                misplaced(
                    sink,
                    "command_topic",
                    c.span.clone(),
                    &from,
                    "remove it; a Modbus setpoint is written to a register (`target`)",
                );
            }
            if let Some(m) = metric {
                misplaced(
                    sink,
                    "target.metric",
                    m.span.clone(),
                    &from,
                    "remove it; `metric` names a Sparkplug metric",
                );
            }
            let r = &d.registers[register];
            let Some(t) = sp.target.as_ref().filter(|_| !modbus_keys.is_empty()) else {
                if !r.table.is_writable() {
                    sink.push(
                        Diagnostic::error(
                            tag.span.clone(),
                            at("tag"),
                            format!(
                                "tag \"{}\" is read-only: it comes from {} {} of device \"{}\"",
                                tag.value,
                                r.table.noun(),
                                r.address.value,
                                d.name.value
                            ),
                        )
                        .expected("a tag read from a Modbus holding register or coil, or a `target` naming one")
                        .help("name the holding register (or coil) the PLC takes this value from: `target = { table = \"holding\", address = ... }`"),
                    );
                    return None;
                }
                return Some(WriteTarget::Modbus(ModbusTarget {
                    device,
                    table: r.table,
                    address: r.address.value,
                    data_type: r.data_type,
                    bit: r.bit,
                    order: r.order,
                    scale: r.scale,
                    offset: r.offset,
                    own_register: true,
                }));
            };
            let mut missing = |key: &str, example: &str| {
                sink.push(
                    Diagnostic::error(
                        t.span.clone(),
                        at(&format!("target.{key}")),
                        format!("missing required key `{key}` in `target`"),
                    )
                    .expected(format!("a register on device \"{}\", e.g. `target = {{ table = \"holding\", address = {example} }}`", d.name.value)),
                );
            };
            if t.table.is_none() {
                missing("table", "100");
            }
            if t.address.is_none() {
                missing("address", "100");
            }
            let (table, address) = (t.table.as_ref()?, t.address.as_ref()?);
            if !table.value.is_writable() {
                // Reported where the table is written.
                return None;
            }
            let data_type = match (&t.data_type, table.value) {
                (Some(dt), _) => dt.value,
                (None, RegisterTable::Coil) => DataType::Bool,
                (None, _) if !matches!(r.data_type, DataType::Bool | DataType::String) => {
                    r.data_type
                }
                (None, _) => DataType::U16,
            };
            if t.data_type.is_none()
                && u32::from(address.value) + u32::from(data_type.width()) > 65536
            {
                sink.push(
                    Diagnostic::error(
                        address.span.clone(),
                        at("target.address"),
                        format!(
                            "{} at address {} runs past the last register (65535)",
                            data_type.a_name(),
                            address.value
                        ),
                    )
                    .expected(format!(
                        "an address <= {}",
                        65536 - u32::from(data_type.width())
                    )),
                );
                return None;
            }
            Some(WriteTarget::Modbus(ModbusTarget {
                device,
                table: table.value,
                address: address.value,
                data_type,
                bit: None,
                order: t.order.as_ref().map_or(r.order, |o| o.value),
                scale: t.scale.as_ref().map_or(r.scale, |s| s.value),
                offset: t.offset.as_ref().map_or(r.offset, |o| o.value),
                own_register: table.value == r.table && address.value == r.address.value,
            }))
        }
        TagSource::Mqtt { source, .. } => {
            let from = format!("MQTT source \"{}\"", cfg.mqtt[source].name.value);
            for (key, span) in &modbus_keys {
                misplaced(
                    sink,
                    &format!("target.{key}"),
                    span.clone(),
                    &from,
                    "remove it; an MQTT setpoint is published to `command_topic`",
                );
            }
            if let Some(m) = metric {
                misplaced(
                    sink,
                    "target.metric",
                    m.span.clone(),
                    &from,
                    "remove it; `metric` names a Sparkplug metric",
                );
            }
            let Some(c) = &sp.command_topic else {
                sink.push(
                    Diagnostic::error(
                        tag.span.clone(),
                        at("tag"),
                        format!(
                            "tag \"{}\" is read-only: it comes from {from}, and the setpoint has no `command_topic`",
                            tag.value
                        ),
                    )
                    .expected("`command_topic`: the topic the device takes this setpoint on")
                    .help("add e.g. `command_topic = \"plant/filler/speed/set\"`; the twin publishes a JSON command there at QoS 1"),
                );
                return None;
            };
            Some(WriteTarget::Mqtt {
                source,
                topic: c.value.clone(),
            })
        }
        TagSource::Sparkplug { source, metric: m } => {
            let s = &cfg.sparkplug[source];
            let from = format!("Sparkplug source \"{}\"", s.name.value);
            if let Some(c) = &sp.command_topic {
                misplaced(
                    sink,
                    "command_topic",
                    c.span.clone(),
                    &from,
                    "remove it; a Sparkplug setpoint is written with NCMD/DCMD to its edge node",
                );
            }
            for (key, span) in &modbus_keys {
                misplaced(
                    sink,
                    &format!("target.{key}"),
                    span.clone(),
                    &from,
                    "remove it; a Sparkplug target names only a `metric` of the tag's edge node",
                );
            }
            let mm = &s.metrics[m];
            Some(WriteTarget::Sparkplug {
                source,
                node: mm.node.value.clone(),
                device: mm.device.as_ref().map(|d| d.value.clone()),
                metric: metric.map_or_else(|| mm.metric.value.clone(), |x| x.value.clone()),
            })
        }
        TagSource::Recorded { source, .. } => {
            sink.push(
                Diagnostic::error(
                    tag.span.clone(),
                    at("tag"),
                    format!(
                        "tag \"{}\" is read-only: it comes from recorded source \"{}\", which only recordings provide",
                        tag.value, cfg.recorded[source].name.value
                    ),
                )
                .expected("a tag read from a Modbus holding register or coil, an MQTT tag with `command_topic`, or a Sparkplug metric"),
            );
            None
        }
    }
}

/// How a write on setpoint `i` is verified: its `readback` tag, else the
/// setpoint's own tag, else (an explicit Modbus `target`, whose register the
/// tag does not read) the written register itself.
fn readback(
    sink: &mut Sink,
    cfg: &PlantConfig,
    refs: &Refs<'_>,
    i: usize,
    sp: &Setpoint,
    id: Option<TagId>,
    target: Option<&WriteTarget>,
) -> Option<Readback> {
    let Some(rb) = &sp.readback else {
        return match target {
            Some(WriteTarget::Modbus(t)) if !t.own_register => Some(Readback::Target),
            _ => id.map(Readback::Tag),
        };
    };
    let path = format!("setpoints[{i}].readback");
    let Some(rid) = refs.tags.id(&rb.value) else {
        let _ = refs.unknown.report(sink, path, rb);
        return None;
    };
    if kind(cfg, refs, rid) == Kind::Text {
        sink.push(
            Diagnostic::error(
                rb.span.clone(),
                path,
                format!(
                    "read-back tag \"{}\" is text, so it cannot show the written value",
                    rb.value
                ),
            )
            .expected("a numeric or boolean tag that shows the setpoint the device took"),
        );
        return None;
    }
    Some(Readback::Tag(rid))
}

/// Parses and checks each interlock of setpoint `i`; the ones without a
/// problem, resolved.
fn interlocks(
    sink: &mut Sink,
    cx: &Cx<'_>,
    cfg: &PlantConfig,
    refs: &Refs<'_>,
    i: usize,
    sp: &Setpoint,
) -> Vec<Interlock> {
    let mut out = Vec::new();
    for (k, text) in sp.interlocks.iter().enumerate() {
        let path = format!("setpoints[{i}].interlocks[{k}]");
        let map = SpanMap::new(&cx.file.text, text.span.clone(), &text.value);
        let report = |sink: &mut Sink, e: interlock::ExprError| {
            sink.push(
                Diagnostic::error(map.map(&e.span), path.clone(), e.message)
                    .expected(e.expected)
                    .maybe_help(e.help),
            );
        };
        let expr = match interlock::parse(&text.value) {
            Ok(e) => e,
            Err(e) => {
                report(sink, e);
                continue;
            }
        };
        let mut ok = true;
        for (name, span) in expr.tag_refs() {
            if refs.tags.id(name).is_none() {
                ok = false;
                let _ = refs.unknown.report(
                    sink,
                    path.clone(),
                    &Loc::new(name.to_string(), map.map(&span)),
                );
            }
        }
        let kind_of = |n: &str| refs.tags.id(n).map(|id| kind(cfg, refs, id));
        for e in interlock::check_types(&expr, &kind_of) {
            ok = false;
            report(sink, e);
        }
        if ok {
            out.push(Interlock {
                text: text.value.clone(),
                expr,
                span: text.span.clone(),
            });
        }
    }
    out
}

/// Where a target writes, for messages.
fn place(cfg: &PlantConfig, t: &WriteTarget) -> String {
    match t {
        WriteTarget::Modbus(m) => format!(
            "{} {} of device \"{}\"",
            m.table.noun(),
            m.address,
            cfg.modbus[m.device].name.value
        ),
        WriteTarget::Mqtt { source, topic } => format!(
            "topic \"{topic}\" of MQTT source \"{}\"",
            cfg.mqtt[*source].name.value
        ),
        WriteTarget::Sparkplug {
            source,
            node,
            device,
            metric,
        } => format!(
            "metric \"{metric}\" of {}{node}\" in Sparkplug source \"{}\"",
            device.as_ref().map_or("node \"".to_string(), |d| format!(
                "device \"{d}\" of node \""
            )),
            cfg.sparkplug[*source].name.value
        ),
    }
}

/// Whether two targets write (some of) the same place.
fn clash(a: &WriteTarget, b: &WriteTarget) -> bool {
    match (a, b) {
        (WriteTarget::Modbus(x), WriteTarget::Modbus(y)) => {
            let overlap = x.address < y.address.saturating_add(y.width())
                && y.address < x.address.saturating_add(x.width());
            let bits_apart = matches!((x.bit, y.bit), (Some(p), Some(q)) if p != q);
            x.device == y.device && x.table == y.table && overlap && !bits_apart
        }
        _ => a == b,
    }
}

/// The resolved setpoint, with every default filled in.
fn resolve(
    cfg: &PlantConfig,
    sp: &Setpoint,
    tag: TagId,
    target: WriteTarget,
    readback: Readback,
    interlocks: Vec<Interlock>,
) -> GuardedSetpoint {
    let (min, max) = (sp.min.value, sp.max.value);
    let min_interval = sp.min_interval.as_ref().map(|d| d.value);
    let readback_timeout = sp
        .readback_timeout
        .as_ref()
        .map_or(DEFAULT_READBACK_TIMEOUT, |d| d.value);
    let readback_tolerance = sp
        .readback_tolerance
        .as_ref()
        .map_or_else(|| default_tolerance(&target, min, max), |t| t.value);
    GuardedSetpoint {
        tag,
        name: sp.tag.value.clone(),
        mode: sp.effective_mode(),
        min,
        max,
        max_step: sp.max_step.as_ref().map(|s| s.value),
        out_of_range: sp
            .out_of_range
            .as_ref()
            .map_or(OutOfRange::Reject, |o| o.value),
        max_rate: sp.max_rate.as_ref().map(|r| r.value),
        min_interval,
        min_interval_ticks: min_interval.map_or(0, |d| ticks_up(cfg, d)),
        deadband: sp.deadband.as_ref().map_or(0.0, |d| d.value),
        max_input_age: sp.max_input_age.as_ref().map(|d| d.value),
        max_proposal_age: sp
            .max_proposal_age
            .as_ref()
            .map_or(cfg.plant.stale_after, |d| d.value),
        interlocks,
        target,
        readback,
        readback_timeout,
        readback_timeout_ticks: ticks_up(cfg, readback_timeout),
        readback_tolerance,
        span: sp.tag.span.clone(),
    }
}

/// Default `readback_tolerance`: what encoding the value can change it by.
/// An integer register holds whole raw counts, so the value read back may be
/// off by half a count (`|scale| / 2`, plus a hair for float rounding); an
/// f32 keeps 24 bits, so the value may be off by one part in 2^23 of the
/// largest raw value in range; a bit is exact; anything else (f64, MQTT,
/// Sparkplug) gets [`DEFAULT_READBACK_TOLERANCE`].
pub(crate) fn default_tolerance(target: &WriteTarget, min: f64, max: f64) -> f64 {
    let WriteTarget::Modbus(t) = target else {
        return DEFAULT_READBACK_TOLERANCE;
    };
    match t.data_type {
        DataType::Bool => 0.0,
        DataType::F64 | DataType::String => DEFAULT_READBACK_TOLERANCE,
        DataType::F32 => {
            let widest = (min - t.offset).abs().max((max - t.offset).abs());
            (widest * f64::from(f32::EPSILON)).max(DEFAULT_READBACK_TOLERANCE)
        }
        _ => t.scale.abs() * 0.5 * (1.0 + 1e-9),
    }
}
