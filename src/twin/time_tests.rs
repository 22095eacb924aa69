//! Core tests for time integrity: source times the core must not trust.

use super::*;
use crate::config::{TagId, load_str};
use crate::runtime::Driver;
use std::path::Path;

const CFG: &str = r#"
[plant]
name = "time-test"
tick = "100ms"
stale_after = "1s"

[[sources.mqtt]]
name = "sensors"
broker = "embedded"
  [[sources.mqtt.topics]]
  topic = "line/belt/temp"
  tag = "belt.temp"
"#;

const T0: i64 = 1_800_000_000_000_000_000;
const MS: i64 = 1_000_000;
const DAY: i64 = 86_400_000 * MS;
const TEMP: TagId = TagId(0);

fn core() -> Driver {
    let cfg = load_str(Path::new("time-test.toml"), CFG).expect("test config is valid");
    Driver::new(&cfg, T0)
}

fn temp(c: &mut Driver) -> TagState {
    c.core_mut().tag_states().remove(TEMP.index())
}

/// Advance to `until` (tick time), returning the tag's states on each tick.
fn advance_to(c: &mut Driver, until: i64) -> Vec<TagState> {
    let mut seen = Vec::new();
    while c.clock().now_ns() < until {
        c.step();
        seen.push(temp(c));
    }
    seen
}

#[test]
fn r9_future_sample_does_not_freeze_its_tag() {
    let mut c = core();
    c.push(Sample::good(TEMP, Value::Num(1.0), T0 + DAY, T0 + 50 * MS));
    c.step();
    let first = temp(&mut c);
    assert_eq!(first.value, Some(Value::Num(1.0)));
    // Bounded to its receive time, not a day ahead.
    assert_eq!(first.source_time_ns, Some(T0 + 50 * MS));

    // Normal samples after it, a bad one among them: the tag follows them all.
    for (k, v) in [2.0, 3.0, 4.0].into_iter().enumerate() {
        let r = T0 + (150 + 100 * k as i64) * MS;
        c.push(Sample::good(TEMP, Value::Num(v), r - 10 * MS, r));
        c.step();
        let s = temp(&mut c);
        assert_eq!(
            (s.value, s.quality, s.source_time_ns),
            (Some(Value::Num(v)), Quality::Good, Some(r - 10 * MS))
        );
    }
    c.push(Sample::bad(TEMP, Reason::Timeout, T0 + 460 * MS));
    c.step();
    assert_eq!(temp(&mut c).quality, Quality::Bad);
    c.push(Sample::good(
        TEMP,
        Value::Num(5.0),
        T0 + 550 * MS,
        T0 + 560 * MS,
    ));
    c.step();
    let s = temp(&mut c);
    assert_eq!((s.value, s.quality), (Some(Value::Num(5.0)), Quality::Good));
    let stats = c.core().stats();
    assert_eq!((stats.out_of_order, stats.future_source_time), (0, 1));

    // Staleness still fires, one stale_after (1 s) after the last sample.
    let states = advance_to(&mut c, T0 + 2_000 * MS);
    let stale_at = states
        .iter()
        .position(|s| s.quality == Quality::Stale)
        .map(|i| T0 + 600 * MS + 100 * MS * (i as i64 + 1));
    assert_eq!(stale_at, Some(T0 + 1_600 * MS));
    assert_eq!(temp(&mut c).reason, Some(Reason::NoUpdate));
}

#[test]
fn r9_a_lone_future_sample_goes_stale_from_its_receive_time() {
    // Without a later sample, the tag must still age: from when the sample
    // arrived, never from a source time in the future.
    let mut c = core();
    c.push(Sample::good(TEMP, Value::Num(1.0), T0 + DAY, T0 + 50 * MS));
    let states = advance_to(&mut c, T0 + 2_000 * MS);
    let first_stale = states.iter().position(|s| s.quality == Quality::Stale);
    // Received at 50 ms, 1 s stale_after: stale on the 1.1 s tick (index 10).
    assert_eq!(first_stale, Some(10));
    let s = temp(&mut c);
    assert_eq!(
        (s.value, s.reason, s.source_time_ns),
        (
            Some(Value::Num(1.0)),
            Some(Reason::NoUpdate),
            Some(T0 + 50 * MS)
        )
    );
}
