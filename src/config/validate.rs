//! Cross-checks: everything that needs more than one value to decide.
//!
//! Duplicate names, overlapping registers, references to tags and machines
//! that do not exist, and the tag table the rest of the runtime works from.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::decode::{Loc, Sink};
use super::diagnostics::{Diagnostic, SourceFile, closest, did_you_mean};
use super::{DataType, PlantConfig, RegisterTable, StationCycle};
use super::{TagDef, TagId, TagSource, TagTable};

pub(super) fn validate(sink: &mut Sink, file: &SourceFile, cfg: &PlantConfig) -> TagTable {
    let at = |span: &Range<usize>| {
        let (l, c) = file.line_col(span.start);
        format!("line {l}:{c}")
    };

    // Source names are one namespace: events and logs name sources by them.
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
                    at(first)
                )),
            );
        } else {
            source_names.insert(&name.value, &name.span);
        }
    }

    // Two device entries for the same endpoint and unit would poll twice and
    // disagree about the register map.
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
                    at(first)
                )),
            );
        } else {
            endpoints.insert(key, &d.address.span);
        }
    }

    // Registers: ranges within 0..=65535 and no overlaps per device and table.
    for (i, d) in cfg.modbus.iter().enumerate() {
        let mut taken: Vec<(u32, u32, usize)> = Vec::new();
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
                            at(&other.address.span)
                        )),
                    );
                }
                continue;
            }
            let clash = taken
                .iter()
                .find(|(s, e, k)| d.registers[*k].table == r.table && start <= *e && *s <= end);
            if let Some((s, e, k)) = clash {
                let other = &d.registers[*k];
                sink.push(
                    Diagnostic::error(
                        r.address.span.clone(),
                        path,
                        format!(
                            "{} (tag \"{}\") overlaps {} (tag \"{}\")",
                            span_name(r.table, start, end),
                            r.tag.value,
                            span_name(other.table, *s, *e),
                            other.tag.value
                        ),
                    )
                    .help(format!(
                        "\"{}\" is defined at {}; {} spans {}",
                        other.tag.value,
                        at(&other.address.span),
                        other.data_type.a_name(),
                        match other.width() {
                            1 => "1 register".to_string(),
                            w => format!("{w} registers"),
                        }
                    )),
                );
            }
            taken.push((start, end, j));
        }
    }

    // The tag table, in file order: Modbus first, then MQTT.
    let mut tags = TagTable::default();
    // Where each tag is declared (span, key path), by tag id.
    let mut tag_spans: Vec<(Range<usize>, String)> = Vec::new();
    let mut add = |sink: &mut Sink, path: String, tag: &Loc<String>, def: TagDef| {
        if let Some(id) = tags.id(&tag.value) {
            sink.push(
                Diagnostic::error(
                    tag.span.clone(),
                    path,
                    format!("duplicate tag \"{}\"", tag.value),
                )
                .help(format!(
                    "first defined at {}; each tag must come from exactly one source",
                    at(&tag_spans[id.index()].0)
                )),
            );
        } else {
            tag_spans.push((tag.span.clone(), path));
            tags.push(def);
        }
    };
    for (i, d) in cfg.modbus.iter().enumerate() {
        for (j, r) in d.registers.iter().enumerate() {
            let def = TagDef {
                id: TagId(0),
                name: r.tag.value.clone(),
                unit: r.unit.clone(),
                machine: None,
                role: None,
                source: TagSource::Modbus {
                    device: i,
                    register: j,
                },
                stale_after: r
                    .stale_after
                    .or(d.stale_after)
                    .unwrap_or(cfg.plant.stale_after),
                is_bool: r.data_type == DataType::Bool,
            };
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
            add(
                sink,
                format!("sources.modbus[{i}].registers[{j}].tag"),
                &r.tag,
                def,
            );
        }
        let stale = d.stale_after.unwrap_or(cfg.plant.stale_after);
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
    // Tags an MQTT topic binds to a machine through its `{machine}`
    // capture: (tag, machine as listed, role, key path of the list entry).
    let mut captured: Vec<(String, &Loc<String>, String, String)> = Vec::new();
    for (i, m) in cfg.mqtt.iter().enumerate() {
        for (j, tp) in m.topics.iter().enumerate() {
            let role = tp.capture_role().unwrap_or_default();
            for (k, (name, machine)) in tp.tag_names().into_iter().enumerate() {
                let def = TagDef {
                    id: TagId(0),
                    name: name.clone(),
                    unit: tp.unit.clone(),
                    machine: None,
                    role: None,
                    source: TagSource::Mqtt {
                        source: i,
                        topic: j,
                    },
                    stale_after: tp
                        .stale_after
                        .or(m.stale_after)
                        .unwrap_or(cfg.plant.stale_after),
                    is_bool: false,
                };
                if machine.is_some() {
                    let entry = &tp.machines[k];
                    let path = format!("sources.mqtt[{i}].topics[{j}].machines[{k}]");
                    // The template's own characters were checked when it was
                    // decoded; the machine id is what may not fit a tag name.
                    if let Some(bad) = entry
                        .value
                        .chars()
                        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
                    {
                        sink.broken_tags.insert(name);
                        sink.push(
                            Diagnostic::error(
                                entry.span.clone(),
                                path,
                                format!(
                                    "machine \"{}\" cannot be part of a tag name: it contains {bad:?}",
                                    entry.value
                                ),
                            )
                            .expected("machine ids made of letters, digits, `_`, `.` and `-` for a `{machine}` capture"),
                        );
                        continue;
                    }
                    captured.push((name.clone(), entry, role.clone(), path));
                }
                add(
                    sink,
                    format!("sources.mqtt[{i}].topics[{j}].tag"),
                    &Loc::new(name, tp.tag.span.clone()),
                    def,
                );
            }
        }
    }

    for (i, s) in cfg.sparkplug.iter().enumerate() {
        // The same metric mapped twice would feed two tags from one value
        // and usually hides a copy-paste slip.
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
                        at(first)
                    )),
                );
            } else {
                seen.insert(key, &m.metric.span);
            }
        }
        for (j, m) in s.metrics.iter().enumerate() {
            let def = TagDef {
                id: TagId(0),
                name: m.tag.value.clone(),
                unit: m.unit.clone(),
                machine: None,
                role: None,
                source: TagSource::Sparkplug {
                    source: i,
                    metric: j,
                },
                stale_after: m
                    .stale_after
                    .or(s.stale_after)
                    .unwrap_or(cfg.plant.stale_after),
                is_bool: false,
            };
            add(
                sink,
                format!("sources.sparkplug[{i}].metrics[{j}].tag"),
                &m.tag,
                def,
            );
        }
    }

    let tag_names: Vec<String> = tags.iter().map(|t| t.name.clone()).collect();
    // Reports an unknown tag and returns the tag it was probably meant to be.
    // A tag declared by an entry that failed to decode is not unknown: its
    // own error is already reported where it is declared.
    let unknown_tag = |sink: &mut Sink, path: String, tag: &Loc<String>| -> Option<String> {
        if sink.broken_tags.contains(&tag.value) {
            return None;
        }
        // Broken tags are still what the integrator meant to declare.
        let names = tag_names.iter().chain(&sink.broken_tags);
        let guess = closest(&tag.value, names.map(String::as_str)).map(str::to_string);
        sink.push(
            Diagnostic::error(tag.span.clone(), path, format!("unknown tag \"{}\"", tag.value))
                .expected("a tag defined by a source (sources.modbus[].registers[].tag or sources.mqtt[].topics[].tag)")
                .maybe_help(guess.as_ref().map(|g| format!("did you mean `{g}`?"))),
        );
        guess
    };

    // Machines: unique ids, roles bound to existing tags, one owner per tag.
    let mut machine_ids: BTreeMap<&str, &Range<usize>> = BTreeMap::new();
    let mut owner: BTreeMap<TagId, (String, Range<usize>)> = BTreeMap::new();
    // Tags some machine means to bind, even where the binding failed (a
    // duplicate machine, a typo in the tag name). They get no "not bound"
    // warning: the error at the binding already covers them.
    let mut meant: BTreeSet<String> = BTreeSet::new();
    // A `{machine}` capture binds its tags before `[machines.tags]` does, so
    // a table entry binding the same tag again is reported at the entry.
    let all_machines: Vec<&str> = cfg.machines.iter().map(|m| m.id.value.as_str()).collect();
    let mut capture_roles: BTreeMap<(String, String), (String, Range<usize>)> = BTreeMap::new();
    for (tag, machine, role, path) in &captured {
        meant.insert(tag.clone());
        if !all_machines.contains(&machine.value.as_str()) {
            sink.push(
                Diagnostic::error(
                    machine.span.clone(),
                    path.clone(),
                    format!("unknown machine \"{}\"", machine.value),
                )
                .expected("the id of a `[[machines]]` entry")
                .maybe_help(did_you_mean(&machine.value, all_machines.iter().copied())),
            );
            continue;
        }
        let Some(id) = tags.id(tag) else { continue };
        if owner.contains_key(&id) {
            continue; // a duplicate tag, reported where it is declared
        }
        owner.insert(id, (machine.value.clone(), machine.span.clone()));
        capture_roles.insert(
            (machine.value.clone(), role.clone()),
            (tag.clone(), machine.span.clone()),
        );
        let def = tags.get_mut(id);
        def.machine = Some(machine.value.clone());
        def.role = Some(role.clone());
    }
    for (i, m) in cfg.machines.iter().enumerate() {
        let duplicate = machine_ids.get(m.id.value.as_str()).copied();
        if let Some(first) = duplicate {
            sink.push(
                Diagnostic::error(
                    m.id.span.clone(),
                    format!("machines[{i}].id"),
                    format!("duplicate machine id \"{}\"", m.id.value),
                )
                .help(format!(
                    "first defined at {}; lines, models and events name machines by id, so ids must be unique",
                    at(first)
                )),
            );
        } else {
            machine_ids.insert(&m.id.value, &m.id.span);
        }
        for (role, tag) in &m.tags {
            let path = format!("machines[{i}].tags.{}", role.value);
            let Some(id) = tags.id(&tag.value) else {
                meant.extend(unknown_tag(sink, path, tag));
                continue;
            };
            meant.insert(tag.value.clone());
            if duplicate.is_some() {
                continue;
            }
            if let Some((other, first)) =
                capture_roles.get(&(m.id.value.clone(), role.value.clone()))
                && *other != tag.value
            {
                sink.push(
                    Diagnostic::error(
                        tag.span.clone(),
                        path,
                        format!(
                            "role \"{}\" of machine \"{}\" is already taken by tag \"{other}\"",
                            role.value, m.id.value
                        ),
                    )
                    .help(format!(
                        "an MQTT topic's `{{machine}}` capture binds it at {}; give one of them another role",
                        at(first)
                    )),
                );
                continue;
            }
            if let Some((other, first)) = owner.get(&id)
                && *other == m.id.value
                && captured.iter().any(|c| c.0 == tag.value)
            {
                sink.push(
                    Diagnostic::error(
                        tag.span.clone(),
                        path,
                        format!(
                            "tag \"{}\" is already bound to machine \"{}\" by its MQTT topic",
                            tag.value, other
                        ),
                    )
                    .help(format!(
                        "the topic's `{{machine}}` capture binds it at {}; remove this entry",
                        at(first)
                    )),
                );
                continue;
            }
            if let Some((other, first)) = owner.get(&id) {
                sink.push(
                    Diagnostic::error(
                        tag.span.clone(),
                        path,
                        format!(
                            "tag \"{}\" is already bound to machine \"{}\"",
                            tag.value, other
                        ),
                    )
                    .help(format!(
                        "bound at {}; a tag belongs to one machine",
                        at(first)
                    )),
                );
                continue;
            }
            owner.insert(id, (m.id.value.clone(), tag.span.clone()));
            let def = tags.get_mut(id);
            def.machine = Some(m.id.value.clone());
            def.role = Some(role.value.clone());
        }
    }
    let machine_names: Vec<&str> = machine_ids.keys().copied().collect();
    let unknown_machine = |sink: &mut Sink, path: String, m: &Loc<String>| {
        sink.push(
            Diagnostic::error(
                m.span.clone(),
                path,
                format!("unknown machine \"{}\"", m.value),
            )
            .expected("the id of a `[[machines]]` entry")
            .maybe_help(did_you_mean(&m.value, machine_names.iter().copied())),
        );
    };

    // Ids of lines and models, and setpoint tags, are each one namespace.
    let dup = |sink: &mut Sink,
               seen: &mut BTreeMap<String, Range<usize>>,
               what: &str,
               path: String,
               id: &Loc<String>| {
        if let Some(first) = seen.get(&id.value) {
            sink.push(
                Diagnostic::error(
                    id.span.clone(),
                    path,
                    format!("duplicate {what} \"{}\"", id.value),
                )
                .help(format!("first seen at {}", at(first))),
            );
        } else {
            seen.insert(id.value.clone(), id.span.clone());
        }
    };
    let mut line_ids = BTreeMap::new();
    for (i, line) in cfg.lines.iter().enumerate() {
        dup(
            sink,
            &mut line_ids,
            "line id",
            format!("lines[{i}].id"),
            &line.id,
        );
        let mut in_line = BTreeMap::new();
        for (j, m) in line.machines.iter().enumerate() {
            if !machine_ids.contains_key(m.value.as_str()) {
                unknown_machine(sink, format!("lines[{i}].machines[{j}]"), m);
            } else {
                dup(
                    sink,
                    &mut in_line,
                    "machine in this line",
                    format!("lines[{i}].machines[{j}]"),
                    m,
                );
            }
        }
        // Conveyor ids name a belt within its line (events will say
        // "line/conveyor"), so they are unique per line.
        let mut conveyor_ids = BTreeMap::new();
        for (j, c) in line.conveyors.iter().enumerate() {
            dup(
                sink,
                &mut conveyor_ids,
                "conveyor id in this line",
                format!("lines[{i}].conveyors[{j}].id"),
                &c.id,
            );
            if tags.id(&c.speed_tag.value).is_none() {
                let _ = unknown_tag(
                    sink,
                    format!("lines[{i}].conveyors[{j}].speed_tag"),
                    &c.speed_tag,
                );
            }
        }
        // Stations, photo-eyes, pushers and diverters stand at a place on a belt of
        // this line. Their ids are one namespace per line (events will name
        // them).
        let conveyor_names: Vec<&str> =
            line.conveyors.iter().map(|c| c.id.value.as_str()).collect();
        // The conveyor a station, eye, pusher or zone names, reported when
        // unknown.
        let find_conveyor = |sink: &mut Sink, path: &str, conveyor: &Loc<String>| {
            let found = line.conveyors.iter().find(|c| c.id.value == conveyor.value);
            if found.is_none() {
                sink.push(
                    Diagnostic::error(
                        conveyor.span.clone(),
                        format!("{path}.conveyor"),
                        format!("unknown conveyor \"{}\"", conveyor.value),
                    )
                    .expected("the id of a `[[lines.conveyors]]` entry of this line")
                    .maybe_help(did_you_mean(
                        &conveyor.value,
                        conveyor_names.iter().copied(),
                    )),
                );
            }
            found
        };
        // Whether `key` (metres along `c`) is on its belt, reported when not.
        let on_belt =
            |sink: &mut Sink, path: &str, key: &str, v: &Loc<f64>, c: &super::Conveyor| {
                let length: f64 = c.segments.iter().map(|s| s.length.value).sum();
                let p = v.value;
                let on = p.is_finite() && (0.0..=length).contains(&p);
                if !on {
                    sink.push(
                        Diagnostic::error(
                            v.span.clone(),
                            format!("{path}.{key}"),
                            format!(
                                "{key} {p} m is off conveyor \"{}\", which is {length} m long",
                                c.id.value
                            ),
                        )
                        .expected(format!(
                            "metres along the belt from its start, 0 to {length}"
                        )),
                    );
                }
                on
            };
        let mut place_ids = BTreeMap::new();
        let mut check_place = |sink: &mut Sink,
                               path: String,
                               id: &Loc<String>,
                               conveyor: &Loc<String>,
                               position: &Loc<f64>| {
            dup(
                sink,
                &mut place_ids,
                "station, photo-eye, pusher or diverter id in this line",
                format!("{path}.id"),
                id,
            );
            if let Some(c) = find_conveyor(sink, &path, conveyor) {
                on_belt(sink, &path, "position", position, c);
            }
        };
        for (j, s) in line.stations.iter().enumerate() {
            let path = format!("lines[{i}].stations[{j}]");
            check_place(sink, path.clone(), &s.id, &s.conveyor, &s.position);
            if let StationCycle::Tag(tag) = &s.cycle
                && tags.id(&tag.value).is_none()
            {
                let _ = unknown_tag(sink, format!("{path}.cycle_time_tag"), tag);
            }
        }
        // With `[[lines.products]]` the arrival keys are the line's own.
        let arrivals = if line.products_listed {
            format!("lines[{i}]")
        } else {
            format!("lines[{i}].product")
        };
        if let Some(tag) = line
            .product
            .as_ref()
            .and_then(|p| p.infeed_counter_tag.as_ref())
            && tags.id(&tag.value).is_none()
        {
            let _ = unknown_tag(sink, format!("{arrivals}.infeed_counter_tag"), tag);
        }
        if let Some(tag) = &line.product_tag
            && tags.id(&tag.value).is_none()
        {
            let _ = unknown_tag(sink, format!("lines[{i}].product_tag"), tag);
        }
        // A changeover names a type by id (text) or code (number): both are
        // namespaces of the line.
        if line.products_listed {
            let mut type_ids = BTreeMap::new();
            let mut codes: BTreeMap<i64, Range<usize>> = BTreeMap::new();
            for (k, p) in line.products.iter().enumerate() {
                dup(
                    sink,
                    &mut type_ids,
                    "product id in this line",
                    format!("lines[{i}].products[{k}].id"),
                    &p.id,
                );
                if let Some(first) = codes.get(&p.code.value) {
                    sink.push(
                        Diagnostic::error(
                            p.code.span.clone(),
                            format!("lines[{i}].products[{k}].code"),
                            format!("duplicate product code {} in this line", p.code.value),
                        )
                        .expected("a recipe number no other product of the line has")
                        .help(format!(
                            "first seen at {}; a product without `code` takes its 1-based position in the list",
                            at(first)
                        )),
                    );
                } else {
                    codes.insert(p.code.value, p.code.span.clone());
                }
            }
        }
        for (j, e) in line.photo_eyes.iter().enumerate() {
            let path = format!("lines[{i}].photo_eyes[{j}]");
            check_place(sink, path.clone(), &e.id, &e.conveyor, &e.position);
            if tags.id(&e.tag.value).is_none() {
                let _ = unknown_tag(sink, format!("{path}.tag"), &e.tag);
            }
        }
        for (j, p) in line.pushers.iter().enumerate() {
            let path = format!("lines[{i}].pushers[{j}]");
            check_place(sink, path.clone(), &p.id, &p.conveyor, &p.position);
            if tags.id(&p.coil_tag.value).is_none() {
                let _ = unknown_tag(sink, format!("{path}.coil_tag"), &p.coil_tag);
            }
        }
        for (j, d) in line.diverters.iter().enumerate() {
            let path = format!("lines[{i}].diverters[{j}]");
            check_place(sink, path.clone(), &d.id, &d.conveyor, &d.position);
            if tags.id(&d.coil_tag.value).is_none() {
                let _ = unknown_tag(sink, format!("{path}.coil_tag"), &d.coil_tag);
            }
            check_branch(sink, i, &path, line, d);
        }
        // Zone counts share the `zones` object of line events with the
        // per-conveyor counts, so a zone may not take a conveyor's id.
        let mut zone_ids = conveyor_ids.clone();
        for (j, z) in line.zones.iter().enumerate() {
            let path = format!("lines[{i}].zones[{j}]");
            dup(
                sink,
                &mut zone_ids,
                "zone or conveyor id in this line",
                format!("{path}.id"),
                &z.id,
            );
            let Some(c) = find_conveyor(sink, &path, &z.conveyor) else {
                continue;
            };
            let from_ok = on_belt(sink, &path, "from", &z.from, c);
            let to_ok = on_belt(sink, &path, "to", &z.to, c);
            if from_ok && to_ok && z.from.value >= z.to.value {
                sink.push(
                    Diagnostic::error(
                        z.to.span.clone(),
                        format!("{path}.to"),
                        format!(
                            "the zone ends ({} m) before it starts ({} m)",
                            z.to.value, z.from.value
                        ),
                    )
                    .expected("from < to, in the direction the belt runs")
                    .maybe_help(
                        (z.from.value > z.to.value).then(|| "swap `from` and `to`".to_string()),
                    ),
                );
            }
        }
    }
    let mut model_ids = BTreeMap::new();
    for (i, model) in cfg.models.iter().enumerate() {
        dup(
            sink,
            &mut model_ids,
            "model id",
            format!("models[{i}].id"),
            &model.id,
        );
        if let Some(m) = &model.machine
            && !machine_ids.contains_key(m.value.as_str())
        {
            unknown_machine(sink, format!("models[{i}].machine"), m);
        }
        for (j, tag) in model.inputs.iter().enumerate() {
            if tags.id(&tag.value).is_none() {
                let _ = unknown_tag(sink, format!("models[{i}].inputs[{j}]"), tag);
            }
        }
    }
    let mut setpoint_tags = BTreeMap::new();
    for (i, sp) in cfg.setpoints.iter().enumerate() {
        let path = format!("setpoints[{i}].tag");
        dup(
            sink,
            &mut setpoint_tags,
            "setpoint for tag",
            path.clone(),
            &sp.tag,
        );
        if let Some(on) = &sp.enabled
            && on.value
        {
            sink.push(
                Diagnostic::warning(
                    on.span.clone(),
                    format!("setpoints[{i}].enabled"),
                    "write-back is not available in this version; this setpoint is validated but never written",
                )
                .help("leave `enabled = false` until your twin version supports guarded write-back"),
            );
        }
        let Some(id) = tags.id(&sp.tag.value) else {
            let _ = unknown_tag(sink, path, &sp.tag);
            continue;
        };
        // Say where the tag comes from: that is what makes it read-only.
        let read_only_from = match tags.get(id).source {
            TagSource::Modbus { device, register } => {
                let d = &cfg.modbus[device];
                let r = &d.registers[register];
                (!r.table.is_writable()).then(|| {
                    format!(
                        "{} {} of device \"{}\"",
                        r.table.noun(),
                        r.address.value,
                        d.name.value
                    )
                })
            }
            TagSource::Mqtt { source, .. } => Some(format!(
                "MQTT source \"{}\", which the twin only subscribes to",
                cfg.mqtt[source].name.value
            )),
            TagSource::Sparkplug { source, .. } => Some(format!(
                "Sparkplug source \"{}\"; Sparkplug writes (DCMD/NCMD metrics) are not supported yet",
                cfg.sparkplug[source].name.value
            )),
        };
        if let Some(from) = read_only_from {
            sink.push(
                Diagnostic::error(
                    sp.tag.span.clone(),
                    path,
                    format!("tag \"{}\" is read-only: it comes from {from}", sp.tag.value),
                )
                .expected("a tag read from a Modbus holding register or coil")
                .help("map the holding register (or coil) the PLC takes this value from, if it has one"),
            );
        }
    }

    super::geometry::check_geometry(sink, cfg);
    // Tags no machine claims still flow, but are usually a forgotten binding.
    for t in tags.iter() {
        if t.machine.is_none() && !meant.contains(&t.name) {
            let (span, path) = tag_spans[t.id.index()].clone();
            sink.push(
                Diagnostic::warning(
                    span,
                    path,
                    format!("tag \"{}\" is not bound to any machine", t.name),
                )
                .help("bind it under `[machines.tags]` so the twin knows what it measures"),
            );
        }
    }

    tags
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

#[cfg(test)]
mod tests {
    use crate::config::load_str;
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn stale_after_is_tag_then_source_then_plant() {
        let cfg = load_str(
            Path::new("s.toml"),
            r#"
[plant]
name = "p"
stale_after = "9s"
[[sources.modbus]]
name = "d"
address = "127.0.0.1:502"
stale_after = "4s"
registers = [
  { tag = "a", table = "holding", address = 0, stale_after = "2s" },
  { tag = "b", table = "holding", address = 1 },
]
[[sources.mqtt]]
name = "m"
broker = "embedded"
topics = [{ topic = "t/c", tag = "c" }, { topic = "t/e", tag = "e", stale_after = "30s" }]
[[machines]]
id = "x"
kind = "generic"
tags = { a = "a", b = "b", c = "c", e = "e" }
"#,
        )
        .expect("valid");
        let age = |n: &str| cfg.tags.get(cfg.tags.id(n).expect("tag")).stale_after;
        assert_eq!(age("a"), Duration::from_secs(2));
        assert_eq!(age("b"), Duration::from_secs(4));
        assert_eq!(age("c"), Duration::from_secs(9));
        assert_eq!(age("e"), Duration::from_secs(30));
    }
}

#[cfg(test)]
mod warning_tests {
    use crate::config::load_str;
    use std::path::Path;

    #[test]
    fn enabling_a_setpoint_warns_that_write_back_is_not_available() {
        let cfg = load_str(
            Path::new("w.toml"),
            r#"
[plant]
name = "p"
[[sources.modbus]]
name = "d"
address = "127.0.0.1:502"
registers = [{ tag = "a", table = "holding", address = 0 }]
[[machines]]
id = "x"
kind = "generic"
tags = { a = "a" }
[[setpoints]]
tag = "a"
min = 0
max = 10
enabled = true
"#,
        )
        .expect("valid, with a warning");
        assert_eq!(cfg.warnings.len(), 1);
        assert_eq!(cfg.warnings[0].path, "setpoints[0].enabled");
        assert!(
            cfg.warnings[0]
                .message
                .contains("write-back is not available")
        );
    }
}

#[cfg(test)]
mod mqtt_tests {
    use crate::config::{Broker, Secret, load_str};
    use std::path::Path;

    const HEAD: &str = r#"
[plant]
name = "p"
[[machines]]
id = "filler"
kind = "filler"
[[machines]]
id = "capper"
kind = "capper"
"#;

    fn load(mqtt: &str) -> Result<crate::config::LoadedConfig, String> {
        load_str(Path::new("m.toml"), &format!("{HEAD}{mqtt}")).map_err(|r| {
            r.diagnostics
                .iter()
                .map(|d| format!("{}: {}", d.path, d.message))
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    fn a_machine_capture_declares_one_bound_tag_per_listed_machine() {
        let cfg = load(
            r#"
[[sources.mqtt]]
name = "m"
broker = "mqtt://10.0.0.1"
  [[sources.mqtt.topics]]
  topic = "plant/{machine}/vibration/#"
  tag = "{machine}.vibration"
  machines = ["filler", "capper"]
  [[sources.mqtt.topics]]
  topic = "plant/{machine}/t"
  tag = "{machine}.temp_c"
  role = "temperature"
  machines = ["capper"]
"#,
        )
        .expect("valid");
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        let bound = |t: &str| {
            let d = cfg.tags.get(cfg.tags.id(t).expect(t));
            (d.machine.clone(), d.role.clone())
        };
        assert_eq!(
            bound("filler.vibration"),
            (Some("filler".into()), Some("vibration".into()))
        );
        assert_eq!(
            bound("capper.vibration"),
            (Some("capper".into()), Some("vibration".into()))
        );
        assert_eq!(
            bound("capper.temp_c"),
            (Some("capper".into()), Some("temperature".into()))
        );
        assert_eq!(cfg.tags.len(), 3);
    }

    #[test]
    fn a_captured_tag_is_not_bound_twice() {
        let e = load(
            r#"
[[sources.mqtt]]
name = "m"
broker = "mqtt://10.0.0.1"
topics = [{ topic = "p/{machine}/v", tag = "{machine}.v", machines = ["filler"] }]
[[machines]]
id = "x"
kind = "generic"
tags = { v = "filler.v" }
"#,
        )
        .expect_err("invalid");
        assert!(e.contains("already bound to machine \"filler\""), "{e}");
        let e = load(
            r#"
[[sources.mqtt]]
name = "m"
broker = "mqtt://10.0.0.1"
topics = [{ topic = "p/{machine}/v", tag = "{machine}.v", machines = ["filler", "filler"] }]
"#,
        )
        .expect_err("invalid");
        assert!(e.contains("listed twice"), "{e}");
    }

    #[test]
    fn connection_keys() {
        let cfg = load(
            r#"
[[sources.mqtt]]
name = "m"
broker = "mqtts://broker.local"
username = "twin"
password_env = "MQTT_PASSWORD"
ca_file = "ca.pem"
max_packet_size = 1024
clean_session = true
topics = [{ topic = "a/+/b", tag = "filler.any" }]
[[machines]]
id = "x"
kind = "generic"
tags = { any = "filler.any" }
"#,
        )
        .expect("valid");
        let m = &cfg.config.mqtt[0];
        assert_eq!(
            m.broker.value,
            Broker::Tcp {
                host: "broker.local".into(),
                port: 8883
            }
        );
        assert!(m.tls && m.clean_session);
        assert_eq!(m.max_packet_size, 1024);
        assert!(matches!(&m.password, Some(Secret::Env(v)) if v.value == "MQTT_PASSWORD"));
        assert_eq!(m.client_id, "twin-m");

        // The embedded broker has no authentication to give credentials to.
        let e = load(
            r#"
[[sources.mqtt]]
name = "m"
broker = "embedded"
username = "twin"
password_env = "$PASS"
"#,
        )
        .expect_err("invalid");
        assert!(e.contains("`username` does not apply"), "{e}");
        assert!(e.contains("environment variable name"), "{e}");

        // Credentials over plain mqtt:// are allowed, with a warning.
        let cfg = load(
            r#"
[[sources.mqtt]]
name = "m"
broker = "mqtt://10.0.0.1"
username = "twin"
password_file = "secret"
"#,
        )
        .expect("valid");
        assert!(
            cfg.warnings
                .iter()
                .any(|w| w.message.contains("unencrypted")),
            "{:?}",
            cfg.warnings
        );
    }
}

/// Half-width of a belt's start, beyond the two belts' half-widths, within
/// which a diverter's branch conveyor must start: a product steered off the
/// main belt must land on it.
const BRANCH_REACH: f64 = 0.1;
/// The turn, degrees, from the main belt onto a diverter's branch: a
/// smaller one is not a diverter but a merge of two lanes; a larger one
/// sends products back against the flow.
const BRANCH_TURN: (f64, f64) = (30.0, 90.0);

/// A diverter's branch conveyor (`to`): it exists, is not the diverter's
/// own conveyor, and starts beside the main belt at the diverter, leaving
/// it at 30° to 90°. Unknown main conveyors and positions off the belt are
/// reported by `check_place`; the placement is then not checked.
fn check_branch(sink: &mut Sink, i: usize, path: &str, line: &super::Line, d: &super::Diverter) {
    use super::geometry::{num, pt, turn};
    let names = line
        .conveyors
        .iter()
        .map(|c| c.id.value.as_str())
        .filter(|c| *c != d.conveyor.value);
    let Some((k, branch)) = line
        .conveyors
        .iter()
        .enumerate()
        .find(|(_, c)| c.id.value == d.to.value)
    else {
        sink.push(
            Diagnostic::error(
                d.to.span.clone(),
                format!("{path}.to"),
                format!("unknown conveyor \"{}\"", d.to.value),
            )
            .expected("the id of the `[[lines.conveyors]]` entry of this line that takes the diverted products")
            .maybe_help(did_you_mean(&d.to.value, names)),
        );
        return;
    };
    if branch.id.value == d.conveyor.value {
        sink.push(
            Diagnostic::error(
                d.to.span.clone(),
                format!("{path}.to"),
                format!(
                    "diverter \"{}\" sends products to its own conveyor \"{}\"",
                    d.id.value, d.to.value
                ),
            )
            .expected("the id of another conveyor of this line: the branch the diverted products leave on")
            .help("set `to` to the id of the branch conveyor: its own `[[lines.conveyors]]` entry, starting beside this belt at the diverter"),
        );
        return;
    }
    let Some(main) = line
        .conveyors
        .iter()
        .find(|c| c.id.value == d.conveyor.value)
    else {
        return;
    };
    let length: f64 = main.segments.iter().map(|s| s.length.value).sum();
    let p = d.position.value;
    if !(p.is_finite() && (0.0..=length).contains(&p)) {
        return;
    }
    // Where the physics puts the diverter: the one layout walk.
    let (at, heading) = super::layout::Layout::of(main).at(p);
    let (sin, cos) = super::layout::sin_cos_deg(heading);
    let branch_heading = branch.segments.first().map_or(0.0, |s| s.heading);
    let t = turn(heading, branch_heading);
    let (hw_main, hw_branch) = (main.width.value / 2.0, branch.width.value / 2.0);
    let reach = hw_main + hw_branch + BRANCH_REACH;
    let rel = [branch.origin[0] - at[0], branch.origin[1] - at[1]];
    let dist = rel[0].hypot(rel[1]);
    // The side the branch leaves on: where its origin is, else where it
    // turns to; left (counter-clockwise) when neither says.
    let lateral = cos * rel[1] - sin * rel[0];
    let left = if lateral.abs() > 1e-9 {
        lateral > 0.0
    } else {
        t >= 0.0
    };
    let lid = &line.id.value;
    if dist > reach {
        // A right-angle branch starts on the belt's edge; a slanted one
        // further out, so its start's near corner is on the edge.
        let slant = if t.abs() >= BRANCH_TURN.0 && t.abs() <= BRANCH_TURN.1 {
            hw_branch * t.to_radians().cos().abs()
        } else {
            0.0
        };
        let side = if left { 1.0 } else { -1.0 };
        let off = (hw_main + slant) * side;
        let origin = [at[0] - sin * off, at[1] + cos * off];
        sink.push(
            Diagnostic::error(
                d.to.span.clone(),
                format!("{path}.to"),
                format!(
                    "line \"{lid}\": branch conveyor \"{}\" starts at {}, {} m from diverter \"{}\" at {} on conveyor \"{}\"; products steered off the belt there would fall",
                    d.to.value,
                    pt(branch.origin),
                    num(dist),
                    d.id.value,
                    pt(at),
                    d.conveyor.value
                ),
            )
            .expected(format!(
                "a branch `origin` within {} m of the diverter's point on the main belt's centre line (half of each belt's width, plus {} m)",
                num(reach),
                num(BRANCH_REACH)
            ))
            .help(format!(
                "move conveyor \"{}\" (lines[{i}].conveyors[{k}]) beside the main belt: `origin = [{}, {}]`, or move the diverter's `position` to where the branch starts",
                d.to.value,
                num(origin[0]),
                num(origin[1])
            )),
        );
    }
    if !(BRANCH_TURN.0..=BRANCH_TURN.1).contains(&t.abs()) {
        let square = heading + if left { 90.0 } else { -90.0 };
        sink.push(
            Diagnostic::error(
                branch.id.span.clone(),
                format!("lines[{i}].conveyors[{k}].segments[0].heading"),
                format!(
                    "line \"{lid}\": diverter \"{}\" sends products onto conveyor \"{}\", whose first heading ({}°) turns {}° from conveyor \"{}\" at the diverter ({}°)",
                    d.id.value,
                    d.to.value,
                    num(branch_heading),
                    num(t.abs()),
                    d.conveyor.value,
                    num(heading)
                ),
            )
            .expected(format!(
                "a first heading {}° to {}° either side of {}°: a branch leaving the belt sideways",
                num(BRANCH_TURN.0),
                num(BRANCH_TURN.1),
                num(heading)
            ))
            .help(format!(
                "for a right-angle branch set its first segment's `heading = {}` (degrees counter-clockwise from east)",
                num(square.rem_euclid(360.0))
            )),
        );
    }
}
