//! The tag table: every tag the sources declare, in file order (Modbus,
//! then MQTT, then Sparkplug, then recorded), each declared once.

use std::collections::BTreeSet;
use std::ops::Range;

use super::Cx;
use crate::config::decode::{Loc, Sink};
use crate::config::diagnostics::Diagnostic;
use crate::config::{DataType, PlantConfig, RecordedType, TagDef, TagId, TagSource, TagTable};

/// The tag table and where each tag came from.
pub(super) struct Declared<'c> {
    pub tags: TagTable,
    /// Where each tag is declared (span, key path), by tag id.
    pub spans: Vec<(Range<usize>, String)>,
    /// Tags an MQTT topic binds to a machine through its `{machine}`
    /// capture, in file order.
    pub captured: Vec<Capture<'c>>,
}

/// A tag an MQTT topic's `{machine}` capture binds to a machine.
pub(super) struct Capture<'c> {
    pub tag: String,
    /// The machine as listed in the topic's `machines`.
    pub machine: &'c Loc<String>,
    pub role: String,
    /// Key path of the list entry.
    pub path: String,
}

impl Declared<'_> {
    /// Adds a tag, or reports it if another source declares it already.
    fn add(&mut self, sink: &mut Sink, cx: &Cx<'_>, path: String, tag: &Loc<String>, def: TagDef) {
        if let Some(id) = self.tags.id(&tag.value) {
            sink.push(
                Diagnostic::error(
                    tag.span.clone(),
                    path,
                    format!("duplicate tag \"{}\"", tag.value),
                )
                .help(format!(
                    "first defined at {}; each tag must come from exactly one source",
                    cx.at(&self.spans[id.index()].0)
                )),
            );
        } else {
            self.spans.push((tag.span.clone(), path));
            self.tags.push(def);
        }
    }
}

pub(super) fn declare<'c>(sink: &mut Sink, cx: &Cx<'_>, cfg: &'c PlantConfig) -> Declared<'c> {
    let mut out = Declared {
        tags: TagTable::default(),
        spans: Vec::new(),
        captured: Vec::new(),
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
            out.add(
                sink,
                cx,
                format!("sources.modbus[{i}].registers[{j}].tag"),
                &r.tag,
                def,
            );
        }
    }
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
                    out.captured.push(Capture {
                        tag: name.clone(),
                        machine: entry,
                        role: role.clone(),
                        path,
                    });
                }
                out.add(
                    sink,
                    cx,
                    format!("sources.mqtt[{i}].topics[{j}].tag"),
                    &Loc::new(name, tp.tag.span.clone()),
                    def,
                );
            }
        }
    }
    for (i, s) in cfg.sparkplug.iter().enumerate() {
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
            out.add(
                sink,
                cx,
                format!("sources.sparkplug[{i}].metrics[{j}].tag"),
                &m.tag,
                def,
            );
        }
    }
    for (i, s) in cfg.recorded.iter().enumerate() {
        for (j, r) in s.tags.iter().enumerate() {
            let def = TagDef {
                id: TagId(0),
                name: r.tag.value.clone(),
                unit: r.unit.clone(),
                machine: None,
                role: None,
                source: TagSource::Recorded { source: i, tag: j },
                stale_after: r
                    .stale_after
                    .or(s.stale_after)
                    .unwrap_or(cfg.plant.stale_after),
                is_bool: r.data_type == RecordedType::Bool,
            };
            out.add(
                sink,
                cx,
                format!("sources.recorded[{i}].tags[{j}].tag"),
                &r.tag,
                def,
            );
        }
    }
    out
}

/// Tags no machine claims still flow, but are usually a forgotten binding.
/// `meant` are the tags some binding names, even where it failed: its error
/// covers them.
pub(super) fn warn_unbound(sink: &mut Sink, declared: &Declared<'_>, meant: &BTreeSet<String>) {
    for t in declared.tags.iter() {
        if t.machine.is_none() && !meant.contains(&t.name) {
            let (span, path) = declared.spans[t.id.index()].clone();
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
}
