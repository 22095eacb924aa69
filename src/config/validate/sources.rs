//! Checks across the sources: names, Modbus endpoints and register maps,
//! polling against staleness, MQTT topics read twice, Sparkplug metrics.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::time::Duration;

use super::Cx;
use crate::config::decode::Sink;
use crate::config::diagnostics::Diagnostic;
use crate::config::sparkplug::SparkplugSource;
use crate::config::{ModbusDevice, PlantConfig, RegisterTable};

pub(super) fn check(sink: &mut Sink, cx: &Cx<'_>, cfg: &PlantConfig) {
    unique_names(sink, cx, cfg);
    unique_endpoints(sink, cx, cfg);
    for (i, d) in cfg.modbus.iter().enumerate() {
        registers(sink, cx, i, d);
        polling(sink, i, d, cfg.plant.stale_after);
    }
    for (i, s) in cfg.sparkplug.iter().enumerate() {
        metrics_once(sink, cx, i, s);
    }
    for (i, m) in cfg.mqtt.iter().enumerate() {
        topics_agree(sink, cx, i, &m.topics);
    }
}

/// Two entries for one topic of one source. Reading different JSON fields
/// of it is what several entries are for; but a topic read as a plain
/// number by one entry and as JSON by another leaves one of the two tags
/// bad on every message, and two entries reading the same value give two
/// tags that can never differ. Warnings: such a file was valid before.
fn topics_agree(sink: &mut Sink, cx: &Cx<'_>, i: usize, topics: &[crate::config::topic::TopicMap]) {
    use crate::config::topic::Payload;
    let shape = |p: &Payload| match p {
        Payload::Number => "a plain number",
        Payload::Json { .. } => "a JSON object",
        Payload::JsonSamples { .. } => "a JSON array of samples",
    };
    let same_value = |a: &Payload, b: &Payload| match (a, b) {
        (Payload::Number, Payload::Number) => true,
        (Payload::Json { field: x, .. }, Payload::Json { field: y, .. }) => x == y,
        (
            Payload::JsonSamples {
                array: a1,
                field: f1,
                ..
            },
            Payload::JsonSamples {
                array: a2,
                field: f2,
                ..
            },
        ) => a1 == a2 && f1 == f2,
        _ => false,
    };
    for (j, t) in topics.iter().enumerate() {
        let Some(first) = topics[..j].iter().find(|f| f.topic.value == t.topic.value) else {
            continue;
        };
        let path = format!("sources.mqtt[{i}].topics[{j}].topic");
        let (a, b) = (shape(&first.payload), shape(&t.payload));
        if a != b {
            sink.push(
                Diagnostic::warning(
                    t.topic.span.clone(),
                    path,
                    format!(
                        "topic \"{}\" is read here as {b} and at {} as {a}: a message is one or the other, so one of the two tags will always be bad",
                        t.topic.value,
                        cx.at(&first.topic.span)
                    ),
                )
                .help("give both entries the payload the device sends (`payload` and `field`)"),
            );
        } else if same_value(&first.payload, &t.payload) {
            sink.push(
                Diagnostic::warning(
                    t.topic.span.clone(),
                    path,
                    format!(
                        "topic \"{}\" is already read the same way at {} (tag \"{}\"): tag \"{}\" would always have the same value",
                        t.topic.value,
                        cx.at(&first.topic.span),
                        first.tag.value,
                        t.tag.value
                    ),
                )
                .help("map each value of a topic to one tag; several entries of one topic read different JSON fields (`field`)"),
            );
        }
    }
}

/// Source names are one namespace: events and logs name sources by them.
fn unique_names(sink: &mut Sink, cx: &Cx<'_>, cfg: &PlantConfig) {
    let mut source_names: BTreeMap<&str, &Range<usize>> = BTreeMap::new();
    let names = cfg
        .modbus
        .iter()
        .enumerate()
        .map(|(i, d)| (format!("sources.modbus[{i}].name"), &d.name))
        .chain(
            cfg.mqtt
                .iter()
                .enumerate()
                .map(|(i, m)| (format!("sources.mqtt[{i}].name"), &m.name)),
        )
        .chain(
            cfg.recorded
                .iter()
                .enumerate()
                .map(|(i, r)| (format!("sources.recorded[{i}].name"), &r.name)),
        );
    for (path, name) in names {
        if let Some(first) = source_names.get(name.value.as_str()) {
            sink.push(
                Diagnostic::error(
                    name.span.clone(),
                    path,
                    format!("duplicate source name \"{}\"", name.value),
                )
                .help(format!(
                    "first defined at {}; source names must be unique",
                    cx.at(first)
                )),
            );
        } else {
            source_names.insert(&name.value, &name.span);
        }
    }
}

/// Two device entries for the same endpoint and unit would poll twice and
/// disagree about the register map.
fn unique_endpoints(sink: &mut Sink, cx: &Cx<'_>, cfg: &PlantConfig) {
    let mut endpoints: BTreeMap<(String, u8), &Range<usize>> = BTreeMap::new();
    for (i, d) in cfg.modbus.iter().enumerate() {
        let key = (d.address.value.clone(), d.unit_id);
        if let Some(first) = endpoints.get(&key) {
            sink.push(
                Diagnostic::error(
                    d.address.span.clone(),
                    format!("sources.modbus[{i}].address"),
                    format!(
                        "device {}, unit {} is already configured",
                        d.address.value, d.unit_id
                    ),
                )
                .help(format!(
                    "merge the register maps into the device at {}",
                    cx.at(first)
                )),
            );
        } else {
            endpoints.insert(key, &d.address.span);
        }
    }
}

/// The registers of device `i`: ranges within 0..=65535 and no overlaps per
/// table.
fn registers(sink: &mut Sink, cx: &Cx<'_>, i: usize, d: &ModbusDevice) {
    // The first register, in file order, covering each address of each
    // table: the one an overlap is reported against. A register spans at
    // most 125 addresses, so filling and asking this is linear in the
    // registers, where scanning every earlier register was quadratic
    // (60,000 registers in one device took seconds).
    let mut first: HashMap<(RegisterTable, u32), usize> = HashMap::new();
    // (table, address, bit) → register index, for bit-in-register tags.
    let mut bits: BTreeMap<(RegisterTable, u16, u8), usize> = BTreeMap::new();
    for (j, r) in d.registers.iter().enumerate() {
        let path = format!("sources.modbus[{i}].registers[{j}].address");
        let start = u32::from(r.address.value);
        let end = start + u32::from(r.width()) - 1;
        if end > 65535 {
            sink.push(
                Diagnostic::error(
                    r.address.span.clone(),
                    path,
                    format!(
                        "{} at address {} would end at {}, past the last address 65535",
                        r.data_type.a_name(),
                        start,
                        end
                    ),
                )
                .expected(format!("address <= {}", 65536 - u32::from(r.width()))),
            );
            continue;
        }
        // Single bits of a register may share it with each other and with
        // a tag reading the whole word (a status word and its flags); only
        // the same bit mapped twice is a mistake.
        if let Some(bit) = r.bit {
            if let Some(k) = bits.insert((r.table, r.address.value, bit), j) {
                let other = &d.registers[k];
                sink.push(
                    Diagnostic::error(
                        r.address.span.clone(),
                        path,
                        format!(
                            "bit {bit} of {} {} is already mapped to tag \"{}\"",
                            r.table.noun(),
                            start,
                            other.tag.value
                        ),
                    )
                    .help(format!(
                        "\"{}\" is defined at {}",
                        other.tag.value,
                        cx.at(&other.address.span)
                    )),
                );
            }
            continue;
        }
        let clash = (start..=end)
            .filter_map(|a| first.get(&(r.table, a)))
            .min()
            .copied();
        if let Some(k) = clash {
            let other = &d.registers[k];
            let s = u32::from(other.address.value);
            let e = s + u32::from(other.width()) - 1;
            sink.push(
                Diagnostic::error(
                    r.address.span.clone(),
                    path,
                    format!(
                        "{} (tag \"{}\") overlaps {} (tag \"{}\")",
                        span_name(r.table, start, end),
                        r.tag.value,
                        span_name(other.table, s, e),
                        other.tag.value
                    ),
                )
                .help(format!(
                    "\"{}\" is defined at {}; {} spans {}",
                    other.tag.value,
                    cx.at(&other.address.span),
                    other.data_type.a_name(),
                    match other.width() {
                        1 => "1 register".to_string(),
                        w => format!("{w} registers"),
                    }
                )),
            );
        }
        for a in start..=end {
            first.entry((r.table, a)).or_insert(j);
        }
    }
}

/// A run of addresses in one table, for messages: "holding register 1",
/// "input registers 0..=1", "coil 3".
fn span_name(table: RegisterTable, start: u32, end: u32) -> String {
    let noun = table.noun();
    if start == end {
        format!("{noun} {start}")
    } else {
        format!("{noun}s {start}..={end}")
    }
}

/// A tag whose `stale_after` is shorter than its device's poll interval
/// turns stale between two polls of a healthy device.
fn polling(sink: &mut Sink, i: usize, d: &ModbusDevice, plant_stale_after: Duration) {
    for (j, r) in d.registers.iter().enumerate() {
        if let Some(st) = r.stale_after
            && st < d.poll_interval
        {
            sink.push(
                Diagnostic::warning(
                    r.tag.span.clone(),
                    format!("sources.modbus[{i}].registers[{j}].stale_after"),
                    format!(
                        "stale_after ({}) is shorter than the device's poll_interval ({}); the tag will flap to stale between polls",
                        humantime::format_duration(st),
                        humantime::format_duration(d.poll_interval)
                    ),
                )
                .help("set stale_after to at least 2 × poll_interval"),
            );
        }
    }
    let stale = d.stale_after.unwrap_or(plant_stale_after);
    if stale < d.poll_interval {
        sink.push(
            Diagnostic::warning(
                d.name.span.clone(),
                format!("sources.modbus[{i}]"),
                format!(
                    "stale_after ({}) is shorter than poll_interval ({}); tags will flap to stale between polls",
                    humantime::format_duration(stale),
                    humantime::format_duration(d.poll_interval)
                ),
            )
            .help("set stale_after to at least 2 × poll_interval"),
        );
    }
}

/// The same metric mapped twice would feed two tags from one value and
/// usually hides a copy-paste slip.
fn metrics_once(sink: &mut Sink, cx: &Cx<'_>, i: usize, s: &SparkplugSource) {
    let mut seen: BTreeMap<(&str, Option<&str>, &str), &Range<usize>> = BTreeMap::new();
    for (j, m) in s.metrics.iter().enumerate() {
        let key = (
            m.node.value.as_str(),
            m.device.as_ref().map(|d| d.value.as_str()),
            m.metric.value.as_str(),
        );
        if let Some(first) = seen.get(&key) {
            sink.push(
                Diagnostic::error(
                    m.metric.span.clone(),
                    format!("sources.sparkplug[{i}].metrics[{j}].metric"),
                    format!(
                        "metric \"{}\" of this node and device is already mapped",
                        m.metric.value
                    ),
                )
                .help(format!(
                    "first mapped at {}; map each metric to one tag",
                    cx.at(first)
                )),
            );
        } else {
            seen.insert(key, &m.metric.span);
        }
    }
}
