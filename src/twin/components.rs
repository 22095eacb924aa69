//! Components and resources of the twin's world.
//!
//! Each machine and each tag is an entity. Components are small and plain so
//! later stages (physics, features, inference, guard) can query exactly what
//! they need.

use bevy_ecs::prelude::*;
use std::sync::Arc;

use super::sample::{Quality, Reason, Sample, Value};
use crate::config::TagId;

/// A machine of the plant.
#[derive(Component, Debug, Clone)]
pub struct Machine {
    pub id: Arc<str>,
    pub kind: &'static str,
}

/// The tags a machine binds, by role, in config order.
#[derive(Component, Debug, Clone, Default)]
pub struct MachineTags(pub Vec<(Arc<str>, Entity)>);

/// Marks a tag entity and says which tag it is.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag(pub TagId);

/// The machine a tag belongs to.
#[derive(Component, Debug, Clone, Copy)]
pub struct BelongsTo(pub Entity);

/// The tag's current value; `None` before the first good sample and while bad.
#[derive(Component, Debug, Clone, PartialEq, Default)]
pub struct TagValue(pub Option<Value>);

/// The tag's quality and, unless good, why.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagQuality {
    pub quality: Quality,
    pub reason: Option<Reason>,
}

impl Default for TagQuality {
    fn default() -> Self {
        // Until a source has spoken, nothing is known about the tag.
        TagQuality {
            quality: Quality::Bad,
            reason: Some(Reason::NoData),
        }
    }
}

/// Source timestamp of the last applied sample (ns since the Unix epoch),
/// never later than that sample's receive time.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SourceTime(pub Option<i64>);

/// Age after which the tag turns stale, in ns.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleAfter(pub i64);

/// What the stream last said about the tag, so a change that is undone
/// within one tick produces no event.
#[derive(Component, Debug, Clone, PartialEq, Default)]
pub struct LastEmitted(pub Option<(Option<Value>, Quality, Option<Reason>)>);

/// Level changes of a boolean tag that some stage needs edge by edge (a
/// photo-eye's input): `(source time, new level)` of every change ingest
/// applied, including ones undone within the same tick, which the tick-level
/// `TagValue` cannot show. Drained by the stage that reads it.
#[derive(Component, Debug, Clone, Default)]
pub struct EdgeLog(pub Vec<(i64, bool)>);

/// Samples waiting for their tick, in arrival order. The second buffer is
/// scratch space for ingest, kept so neither is reallocated every tick.
#[derive(Resource, Debug, Default)]
pub struct Inbox(pub Vec<Sample>, pub Vec<Sample>);

/// Tag entity of each `TagId`.
#[derive(Resource, Debug, Default)]
pub struct TagIndex(pub Vec<Entity>);

/// Counters the core keeps about its input.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestStats {
    pub applied: u64,
    /// Samples older than the tag's current source time, dropped.
    pub out_of_order: u64,
    /// Good samples carrying NaN or infinity, turned into bad.
    pub non_finite: u64,
    /// Samples naming a tag that does not exist, dropped.
    pub unknown_tag: u64,
    /// Samples whose source time lay after their receive time; applied
    /// with the receive time as their source time.
    pub future_source_time: u64,
}
