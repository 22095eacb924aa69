//! The core's own systems, one or two per stage (see [`super::stages`]):
//! ingest (Ingest) → staleness (Quality) → physics (Physics) → emit,
//! emit_lines (Emit).
//!
//! Later stages (features, inference, optimiser, guard) add their systems
//! to their own sets between physics and emit.

use bevy_ecs::prelude::*;

use super::clock::TickClock;
use super::components::*;
use super::events::{Outbox, TagEvent, TwinEvent};
use super::lines::{BeltSpeed, CoilInput, CounterInput, EyeInput, Lines, StationCycleTime};
use super::sample::{Quality, Reason, Value};
use std::time::Duration;

/// Apply every sample whose receive time has come, in arrival order.
///
/// Samples are applied only if they are not older than what the tag already
/// holds, so a late, reordered sample can never roll a tag back in time.
///
/// The core trusts no timestamp from outside: a source time ahead of the
/// sample's receive time (a device clock set wrong, a hostile publisher) is
/// bounded to the receive time before it is stored or compared. Otherwise one
/// sample stamped a day ahead would make every later sample look out of
/// order and the tag's age negative: the tag would be frozen, never stale.
pub fn ingest(
    clock: Res<TickClock>,
    mut inbox: ResMut<Inbox>,
    index: Res<TagIndex>,
    mut stats: ResMut<IngestStats>,
    mut tags: Query<(
        &mut TagValue,
        &mut TagQuality,
        &mut SourceTime,
        Option<&mut EdgeLog>,
    )>,
) {
    let now = clock.now_ns();
    let Inbox(queue, scratch) = &mut *inbox;
    // Swap the queue into the scratch buffer; samples not yet due go back
    // into the (now empty) queue. Both keep their capacity across ticks.
    std::mem::swap(queue, scratch);
    for s in scratch.drain(..) {
        if s.recv_time_ns > now {
            queue.push(s);
            continue;
        }
        let Some(&entity) = index.0.get(s.tag.index()) else {
            stats.unknown_tag += 1;
            continue;
        };
        let Ok((mut value, mut quality, mut src, edges)) = tags.get_mut(entity) else {
            stats.unknown_tag += 1;
            continue;
        };
        let source_time = if s.source_time_ns > s.recv_time_ns {
            stats.future_source_time += 1;
            s.recv_time_ns
        } else {
            s.source_time_ns
        };
        if src.0.is_some_and(|t| source_time < t) {
            stats.out_of_order += 1;
            continue;
        }
        let (v, q, reason) = match s.value {
            Some(v) if v.is_valid() || s.quality != Quality::Good => (Some(v), s.quality, s.reason),
            Some(_) => {
                stats.non_finite += 1;
                (None, Quality::Bad, Some(Reason::NonFinite))
            }
            None => (None, s.quality, s.reason),
        };
        // A bad sample carries no value: the tag has no valid value now. A
        // stale sample without a value (a source declaring its data old, as
        // a Sparkplug death does) keeps the last value, flagged.
        let v = match q {
            Quality::Bad => None,
            Quality::Stale if v.is_none() => value.0.clone(),
            _ => v,
        };
        if let Some(mut edges) = edges
            && let Some(level) = v.as_ref().and_then(level_of)
            && value.0.as_ref().and_then(level_of) != Some(level)
        {
            edges.0.push((source_time, level));
        }
        value.set_if_neq(TagValue(v));
        quality.set_if_neq(TagQuality { quality: q, reason });
        src.set_if_neq(SourceTime(Some(source_time)));
        stats.applied += 1;
    }
}

/// A digital level: a boolean, or a number (non-zero is on), as an input
/// published as 0/1 over MQTT reads.
fn level_of(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Num(n) if n.is_finite() => Some(*n != 0.0),
        _ => None,
    }
}

/// Turn tags stale whose last sample is older than their `stale_after`.
pub fn staleness(
    clock: Res<TickClock>,
    mut tags: Query<(&mut TagQuality, &SourceTime, &StaleAfter)>,
) {
    let now = clock.now_ns();
    for (mut quality, src, stale_after) in &mut tags {
        if !matches!(quality.quality, Quality::Good | Quality::Uncertain) {
            continue;
        }
        if let Some(t) = src.0
            && now.saturating_sub(t) > stale_after.0
        {
            quality.set_if_neq(TagQuality {
                quality: Quality::Stale,
                reason: Some(Reason::NoUpdate),
            });
        }
    }
}

type TagRow = (
    &'static Tag,
    &'static TagValue,
    &'static TagQuality,
    &'static SourceTime,
    &'static mut LastEmitted,
);
type ChangedTag = Or<(Changed<TagValue>, Changed<TagQuality>)>;

/// Emit one tag event per tag whose value or quality differs from what the
/// stream last said, in tag order (not world order) so the stream never
/// depends on ECS layout.
pub fn emit(
    clock: Res<TickClock>,
    mut outbox: ResMut<Outbox>,
    mut tags: Query<TagRow, ChangedTag>,
) {
    let now = clock.now_ns();
    let mut changed: Vec<TagEvent> = Vec::new();
    for (tag, value, quality, src, mut last) in &mut tags {
        if last
            .0
            .as_ref()
            .is_some_and(|(v, q, r)| *v == value.0 && *q == quality.quality && *r == quality.reason)
        {
            continue;
        }
        last.0 = Some((value.0.clone(), quality.quality, quality.reason));
        changed.push(TagEvent {
            t_ns: now,
            tag: tag.0,
            value: value.0.clone(),
            quality: quality.quality,
            reason: quality.reason,
            source_time_ns: src.0,
        });
    }
    changed.sort_by_key(|e| e.tag);
    outbox.0.extend(changed.into_iter().map(TwinEvent::Tag));
}

/// Line events due this tick (residual, eye, jam and line reports), held
/// from `physics` to `emit_lines` so that a tick's tag events come before
/// its line events in the stream.
#[derive(Resource, Debug, Default)]
pub struct PendingLineEvents(pub Vec<TwinEvent>);

/// The speed a belt runs at, from its speed tag's current value and quality
/// (see the uncertain rule in `twin::lines`).
fn belt_speed(tag: Option<(&TagValue, &TagQuality)>) -> BeltSpeed {
    match tag {
        Some((TagValue(Some(Value::Num(v))), q)) if v.is_finite() => match q.quality {
            Quality::Good => (*v as f32, true),
            Quality::Uncertain => (*v as f32, false),
            Quality::Bad | Quality::Stale => (0.0, false),
        },
        _ => (0.0, false),
    }
}

/// A station's cycle time from its tag's current value (seconds) and
/// quality, by the same rule as belt speeds, except that an unknown cycle
/// time (bad, stale, no data, non-numeric or negative) holds.
fn station_cycle(tag: Option<(&TagValue, &TagQuality)>) -> StationCycleTime {
    match tag {
        Some((TagValue(Some(Value::Num(v))), q)) if v.is_finite() && *v >= 0.0 => {
            let cycle = Duration::try_from_secs_f64(*v).ok();
            match q.quality {
                Quality::Good => (cycle, cycle.is_some()),
                Quality::Uncertain => (cycle, false),
                Quality::Bad | Quality::Stale => (None, false),
            }
        }
        _ => (None, false),
    }
}

/// A station's measured rate (products per minute) when its tag is good,
/// finite and positive; else none (the station runs at its cycle tag).
fn station_rate(tag: Option<(&TagValue, &TagQuality)>) -> Option<f64> {
    match tag {
        Some((TagValue(Some(Value::Num(v))), q))
            if q.quality == Quality::Good && v.is_finite() && *v > 0.0 =>
        {
            Some(*v)
        }
        _ => None,
    }
}

/// Whether a pusher or a diverter is fired, from its coil tag's current
/// value (a boolean, or a number: non-zero is on) and quality, by the same
/// rule as station cycle times: a good or uncertain coil fires by its
/// value; a bad or stale one, or one without a value, does not fire (the
/// twin does not reject or divert a product on a coil it cannot see). The second value: whether the coil
/// was good (else the line's counts are uncertain).
fn pusher_coil(tag: Option<(&TagValue, &TagQuality)>) -> CoilInput {
    match tag {
        Some((TagValue(Some(v)), q)) => match q.quality {
            Quality::Good => (level_of(v).unwrap_or(false), true),
            Quality::Uncertain => (level_of(v).unwrap_or(false), false),
            Quality::Bad | Quality::Stale => (false, false),
        },
        _ => (false, false),
    }
}

/// Step every modelled line by one tick, belts driven by their measured
/// speed tags, in config order.
#[expect(
    clippy::too_many_arguments,
    reason = "a system's parameters are its data access"
)]
pub fn physics(
    clock: Res<TickClock>,
    mut lines: ResMut<Lines>,
    mut pending: ResMut<PendingLineEvents>,
    tags: Query<(&TagValue, &TagQuality, &SourceTime)>,
    mut edges: Query<&mut EdgeLog>,
    mut speeds: Local<Vec<BeltSpeed>>,
    mut cycles: Local<Vec<Option<StationCycleTime>>>,
    mut rates: Local<Vec<Option<f64>>>,
    mut coils: Local<Vec<CoilInput>>,
    mut eyes: Local<Vec<EyeInput>>,
) {
    let (now, period) = (clock.now_ns(), clock.period_ns());
    let read = |e: Option<Entity>| e.and_then(|e| tags.get(e).ok()).map(|(v, q, _)| (v, q));
    for line in &mut lines.0 {
        speeds.clear();
        speeds.extend(line.speed_tags().iter().map(|e| belt_speed(read(*e))));
        cycles.clear();
        cycles.extend(
            line.cycle_tags()
                .iter()
                .map(|t| t.map(|e| station_cycle(read(e)))),
        );
        rates.clear();
        rates.extend(line.rate_tags().iter().map(|e| station_rate(read(*e))));
        coils.clear();
        coils.extend(line.coil_tags().iter().map(|e| pusher_coil(read(*e))));
        eyes.resize_with(line.eyes().len(), EyeInput::default);
        for (input, eye) in eyes.iter_mut().zip(line.eyes()) {
            input.edges.clear();
            input.known = false;
            let Some(e) = eye.entity() else { continue };
            if let Ok(mut log) = edges.get_mut(e) {
                input.edges.append(&mut log.0);
            }
            input.known = read(Some(e))
                .is_some_and(|(_, q)| matches!(q.quality, Quality::Good | Quality::Uncertain));
        }
        // The changeover comes first, so this tick's spawns are the new type.
        if let Some(e) = line.product_tag() {
            let value = tags.get(e).ok().and_then(|(v, q, _)| match q.quality {
                Quality::Good | Quality::Uncertain => v.0.as_ref(),
                Quality::Bad | Quality::Stale => None,
            });
            line.select_product(value);
        }
        let counter: CounterInput =
            line.counter_tag()
                .and_then(|e| tags.get(e).ok())
                .and_then(|(v, q, src)| match (&v.0, q.quality, src.0) {
                    (Some(Value::Num(n)), Quality::Good, Some(t)) if n.is_finite() => {
                        Some((*n, t, true))
                    }
                    _ => None,
                });
        line.tick(
            now,
            period,
            &speeds,
            &cycles,
            &rates,
            &coils,
            &mut eyes,
            counter,
            &mut pending.0,
        );
    }
}

/// Append the line events due this tick, after the tag events.
pub fn emit_lines(mut pending: ResMut<PendingLineEvents>, mut outbox: ResMut<Outbox>) {
    outbox.0.append(&mut pending.0);
}
