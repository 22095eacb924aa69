//! Cross-checks: everything that needs more than one value to decide.
//!
//! The checks run in a fixed order, because later ones need what earlier
//! ones found:
//!
//! 1. [`sources`]: source names, Modbus endpoints and register overlaps,
//!    Sparkplug metrics mapped twice;
//! 2. [`tags`]: the tag table, in file order, with duplicate tags;
//! 3. [`machines`]: machine ids and the tags they bind (roles, one owner per
//!    tag);
//! 4. [`lines`], [`models`] and [`setpoints`]: references to tags,
//!    machines and conveyors; [`models`] also resolves the runnable models
//!    (bindings, roles, lines, ticks) into the ML stage's `MlConfig`, and
//!    [`setpoints`] the setpoints, their targets and interlocks and
//!    `[guard]` into the guard's `GuardConfig`;
//! 5. the line geometry (`super::geometry`), then the tags no machine binds.
//!
//! Diagnostics are sorted by position once all are in, so the order here
//! only decides between two at the same place.

mod lines;
mod machines;
mod models;
mod optimise;
mod setpoints;
mod sources;
mod tags;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ops::Range;

use super::decode::{Loc, Sink};
use super::diagnostics::{Diagnostic, SourceFile, closest, did_you_mean};
use super::guard::GuardConfig;
use super::{MlConfig, PlantConfig, TagTable};

pub(super) fn validate(
    sink: &mut Sink,
    file: &SourceFile,
    cfg: &PlantConfig,
) -> (TagTable, MlConfig, GuardConfig) {
    let cx = Cx { file };
    sources::check(sink, &cx, cfg);
    let mut declared = tags::declare(sink, &cx, cfg);
    let unknown = UnknownTags::new(&declared.tags);
    let bound = machines::bind(sink, &cx, cfg, &mut declared, &unknown);
    let refs = Refs {
        tags: &declared.tags,
        unknown: &unknown,
        machines: &bound.machine_ids,
    };
    lines::check(sink, &cx, cfg, &refs);
    let ml = models::check(sink, &cx, cfg, &refs);
    let guard = setpoints::check(sink, &cx, cfg, &refs);
    super::geometry::check_geometry(sink, cfg);
    tags::warn_unbound(sink, &declared, &bound.meant);
    (declared.tags, ml, guard)
}

/// The file being checked, for messages that point back at an earlier
/// definition.
struct Cx<'a> {
    file: &'a SourceFile,
}

impl Cx<'_> {
    /// "line 12:5", for a help that names where something else is defined.
    fn at(&self, span: &Range<usize>) -> String {
        let (l, c) = self.file.line_col(span.start);
        format!("line {l}:{c}")
    }

    /// Records `id` in the namespace `seen`, reporting it if it is there
    /// already.
    fn dup(
        &self,
        sink: &mut Sink,
        seen: &mut BTreeMap<String, Range<usize>>,
        what: &str,
        path: String,
        id: &Loc<String>,
    ) {
        if let Some(first) = seen.get(&id.value) {
            sink.push(
                Diagnostic::error(
                    id.span.clone(),
                    path,
                    format!("duplicate {what} \"{}\"", id.value),
                )
                .help(format!("first seen at {}", self.at(first))),
            );
        } else {
            seen.insert(id.value.clone(), id.span.clone());
        }
    }
}

/// Reports references to tags no source declares, with a did-you-mean.
struct UnknownTags {
    names: Vec<String>,
}

impl UnknownTags {
    fn new(tags: &TagTable) -> Self {
        UnknownTags {
            names: tags.iter().map(|t| t.name.clone()).collect(),
        }
    }

    /// Reports an unknown tag and returns the tag it was probably meant to
    /// be. A tag declared by an entry that failed to decode is not unknown:
    /// its own error is already reported where it is declared.
    fn report(&self, sink: &mut Sink, path: String, tag: &Loc<String>) -> Option<String> {
        if sink.broken_tags.contains(&tag.value) {
            return None;
        }
        // Broken tags are still what the integrator meant to declare.
        let names = self.names.iter().chain(&sink.broken_tags);
        let guess = closest(&tag.value, names.map(String::as_str)).map(str::to_string);
        sink.push(
            Diagnostic::error(tag.span.clone(), path, format!("unknown tag \"{}\"", tag.value))
                .expected("a tag defined by a source (sources.modbus[].registers[].tag or sources.mqtt[].topics[].tag)")
                .maybe_help(guess.as_ref().map(|g| format!("did you mean `{g}`?"))),
        );
        guess
    }
}

/// What lines, models and setpoints refer to: the bound tag table and the
/// machine ids.
struct Refs<'a> {
    tags: &'a TagTable,
    unknown: &'a UnknownTags,
    /// Each machine id, at its first definition.
    machines: &'a BTreeMap<&'a str, &'a Range<usize>>,
}

impl Refs<'_> {
    /// Reports `tag` if no source declares it.
    fn tag(&self, sink: &mut Sink, path: String, tag: &Loc<String>) {
        if self.tags.id(&tag.value).is_none() {
            let _ = self.unknown.report(sink, path, tag);
        }
    }

    /// Reports `m` if no `[[machines]]` entry has that id; says whether it
    /// is known.
    fn machine(&self, sink: &mut Sink, path: String, m: &Loc<String>) -> bool {
        if self.machines.contains_key(m.value.as_str()) {
            return true;
        }
        sink.push(
            Diagnostic::error(
                m.span.clone(),
                path,
                format!("unknown machine \"{}\"", m.value),
            )
            .expected("the id of a `[[machines]]` entry")
            .maybe_help(did_you_mean(&m.value, self.machines.keys().copied())),
        );
        false
    }
}
