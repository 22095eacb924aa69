//! Machines: unique ids, roles bound to existing tags, one owner per tag.
//! Binding writes each tag's machine and role into the tag table.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::tags::Declared;
use super::{Cx, UnknownTags};
use crate::config::decode::Sink;
use crate::config::diagnostics::{Diagnostic, did_you_mean};
use crate::config::{PlantConfig, TagId};

/// What binding found, for the checks after it.
pub(super) struct Bound<'c> {
    /// Each machine id, at its first definition.
    pub machine_ids: BTreeMap<&'c str, &'c Range<usize>>,
    /// Tags some machine means to bind, even where the binding failed (a
    /// duplicate machine, a typo in the tag name). They get no "not bound"
    /// warning: the error at the binding already covers them.
    pub meant: BTreeSet<String>,
}

pub(super) fn bind<'c>(
    sink: &mut Sink,
    cx: &Cx<'_>,
    cfg: &'c PlantConfig,
    declared: &mut Declared<'_>,
    unknown: &UnknownTags,
) -> Bound<'c> {
    let tags = &mut declared.tags;
    let captured = &declared.captured;
    let mut machine_ids: BTreeMap<&str, &Range<usize>> = BTreeMap::new();
    let mut owner: BTreeMap<TagId, (String, Range<usize>)> = BTreeMap::new();
    let mut meant: BTreeSet<String> = BTreeSet::new();
    // A `{machine}` capture binds its tags before `[machines.tags]` does, so
    // a table entry binding the same tag again is reported at the entry.
    let all_machines: Vec<&str> = cfg.machines.iter().map(|m| m.id.value.as_str()).collect();
    let mut capture_roles: BTreeMap<(String, String), (String, Range<usize>)> = BTreeMap::new();
    for c in captured {
        meant.insert(c.tag.clone());
        if !all_machines.contains(&c.machine.value.as_str()) {
            sink.push(
                Diagnostic::error(
                    c.machine.span.clone(),
                    c.path.clone(),
                    format!("unknown machine \"{}\"", c.machine.value),
                )
                .expected("the id of a `[[machines]]` entry")
                .maybe_help(did_you_mean(&c.machine.value, all_machines.iter().copied())),
            );
            continue;
        }
        let Some(id) = tags.id(&c.tag) else { continue };
        if owner.contains_key(&id) {
            continue; // a duplicate tag, reported where it is declared
        }
        owner.insert(id, (c.machine.value.clone(), c.machine.span.clone()));
        capture_roles.insert(
            (c.machine.value.clone(), c.role.clone()),
            (c.tag.clone(), c.machine.span.clone()),
        );
        let def = tags.get_mut(id);
        def.machine = Some(c.machine.value.clone());
        def.role = Some(c.role.clone());
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
                    cx.at(first)
                )),
            );
        } else {
            machine_ids.insert(&m.id.value, &m.id.span);
        }
        for (role, tag) in &m.tags {
            let path = format!("machines[{i}].tags.{}", role.value);
            let Some(id) = tags.id(&tag.value) else {
                meant.extend(unknown.report(sink, path, tag));
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
                        cx.at(first)
                    )),
                );
                continue;
            }
            if let Some((other, first)) = owner.get(&id)
                && *other == m.id.value
                && captured.iter().any(|c| c.tag == tag.value)
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
                        cx.at(first)
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
                        cx.at(first)
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
    Bound { machine_ids, meant }
}
