//! Tags: ingest, quality, staleness and the tag event.

use super::*;

const CFG: &str = r#"
[plant]
name = "core-test"
tick = "100ms"
stale_after = "1s"

[[sources.modbus]]
name = "plc"
address = "127.0.0.1:502"
  [[sources.modbus.registers]]
  tag = "belt.speed"
  table = "holding"
  address = 0
  unit = "m/s"
  [[sources.modbus.registers]]
  tag = "belt.running"
  table = "coil"
  address = 0

[[sources.mqtt]]
name = "sensors"
broker = "embedded"
  [[sources.mqtt.topics]]
  topic = "line/belt/temp"
  tag = "belt.temp"
  unit = "degC"

[[machines]]
id = "belt"
kind = "conveyor"
tags = { speed = "belt.speed", running = "belt.running", temperature = "belt.temp" }
"#;

/// A driver of the tag-only plant [`CFG`]: three tags, no line.
pub(super) fn core() -> Driver {
    driver("core-test.toml", CFG)
}

/// A deterministic pseudo-random sample sequence (xorshift), including bad
/// samples, booleans, out-of-order and non-finite values.
fn sequence(n: usize) -> Vec<Sample> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut t = T0;
    (0..n)
        .map(|_| {
            let r = next();
            t += (r % 70) as i64 * MS;
            let tag = TagId((r >> 8) as u32 % 3);
            match (r >> 16) % 20 {
                0 => Sample::bad(tag, Reason::Timeout, t),
                1 => Sample::good(tag, Value::Num(f64::NAN), t, t),
                2 => Sample::good(tag, Value::Num(1.0), t - 500 * MS, t),
                _ if tag.0 == 1 => Sample::good(tag, Value::Bool(r & 1 == 1), t, t),
                _ => Sample::good(tag, Value::Num(((r >> 24) % 1000) as f64 / 10.0), t, t),
            }
        })
        .collect()
}

fn run(samples: &[Sample]) -> Vec<u8> {
    let end = samples.last().map(|s| s.recv_time_ns).unwrap_or(T0) + 3_000 * MS;
    let mut it = samples.iter().peekable();
    drive(&mut core(), end, |_, d| {
        // Hand over what has arrived by the next tick, as a live run would.
        let next_tick = d.next_tick_ns();
        while let Some(s) = it.next_if(|s| s.recv_time_ns <= next_tick) {
            d.push(s.clone());
        }
    })
}

#[test]
fn same_samples_give_byte_identical_events() {
    let seq = sequence(5_000);
    let a = run(&seq);
    let b = run(&seq);
    assert!(
        a.len() > 10_000,
        "expected a substantial stream, got {} bytes",
        a.len()
    );
    assert_eq!(a, b);
}

#[test]
fn batching_does_not_change_the_output() {
    // Pushing everything up front must give the same stream as pushing tick
    // by tick: application is decided by receive time, not delivery time.
    let seq = sequence(2_000);
    let a = run(&seq);
    let mut c = core();
    for s in &seq {
        c.push(s.clone());
    }
    let end = seq.last().map(|s| s.recv_time_ns).unwrap_or(T0) + 3_000 * MS;
    let b = drive(&mut c, end, |_, _| {});
    assert_eq!(a, b);
}

#[test]
fn tag_event_has_the_documented_fields() {
    let mut c = core();
    c.push(Sample::good(
        TagId(0),
        Value::Num(1.25),
        T0 + 50 * MS,
        T0 + 50 * MS,
    ));
    let out = c.step().jsonl.to_vec();
    // The first tick reports every tag once; the other two have no data yet.
    let l = lines(&out);
    assert_eq!(l.len(), 3);
    assert_eq!(l[1]["quality"], "bad");
    assert_eq!(l[1]["reason"], "no_data");
    let text = String::from_utf8_lossy(&out);
    assert_eq!(
        text.lines().next().unwrap_or_default(),
        r#"{"v":1,"type":"tag","t":"2027-01-15T08:00:00.100Z","tag":"belt.speed","machine":"belt","value":1.25,"quality":"good","unit":"m/s","src_t":"2027-01-15T08:00:00.050Z"}"#
    );
}

#[test]
fn tag_goes_stale_after_its_age_and_recovers() {
    let mut c = core();
    c.push(Sample::good(TagId(2), Value::Num(40.0), T0, T0));
    let mut stale_at = None;
    for _ in 0..30 {
        for e in c.step().events {
            let TwinEvent::Tag(e) = e else { continue };
            if e.tag == TagId(2) && e.quality == Quality::Stale {
                stale_at = Some(e.t_ns);
                assert_eq!(
                    e.value,
                    Some(Value::Num(40.0)),
                    "stale keeps the last value"
                );
            }
        }
    }
    // stale_after = 1s: stale on the first tick where age > 1s, i.e. 1.1s.
    assert_eq!(stale_at, Some(T0 + 1_100 * MS));
    let t = c.clock().now_ns();
    c.push(Sample::good(TagId(2), Value::Num(41.0), t + MS, t + MS));
    let ev = c.step().events;
    assert!(
        matches!(ev, [TwinEvent::Tag(e)] if e.quality == Quality::Good && e.value == Some(Value::Num(41.0)))
    );
}

#[test]
fn bad_sample_clears_the_value_and_names_the_reason() {
    let mut c = core();
    c.push(Sample::good(TagId(0), Value::Num(2.0), T0, T0));
    c.step();
    c.push(Sample::bad(
        TagId(0),
        Reason::ConnectionRefused,
        T0 + 150 * MS,
    ));
    let mut out = c.step().jsonl.to_vec();
    out.extend_from_slice(c.step().jsonl);
    let l = lines(&out);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["quality"], "bad");
    assert_eq!(l[0]["reason"], "connection_refused");
    assert!(l[0]["value"].is_null());
}

#[test]
fn older_samples_never_roll_a_tag_back() {
    let mut c = core();
    c.push(Sample::good(
        TagId(0),
        Value::Num(5.0),
        T0 + 20 * MS,
        T0 + 20 * MS,
    ));
    c.push(Sample::good(
        TagId(0),
        Value::Num(4.0),
        T0 + 10 * MS,
        T0 + 30 * MS,
    ));
    c.step();
    let states = c.core_mut().tag_states();
    assert_eq!(states[0].value, Some(Value::Num(5.0)));
    assert_eq!(c.core().stats().out_of_order, 1);
}

#[test]
fn non_finite_values_become_bad() {
    let mut c = core();
    c.push(Sample::good(TagId(0), Value::Num(f64::INFINITY), T0, T0));
    c.step();
    let s = &c.core_mut().tag_states()[0];
    assert_eq!(
        (s.quality, s.reason, s.value.clone()),
        (Quality::Bad, Some(Reason::NonFinite), None)
    );
}

#[test]
fn unchanged_values_emit_nothing() {
    let mut c = core();
    let mut n = 0;
    for i in 0..5 {
        let t = T0 + i * 100 * MS;
        c.push(Sample::good(TagId(0), Value::Num(3.0), t, t));
        n += c
            .step()
            .events
            .iter()
            .filter(|e| matches!(e, TwinEvent::Tag(t) if t.tag == TagId(0)))
            .count();
    }
    assert_eq!(
        n, 1,
        "report by exception: only the first sample changes anything"
    );
}

#[test]
fn a_change_undone_within_a_tick_emits_nothing() {
    let mut c = core();
    c.push(Sample::good(TagId(0), Value::Num(3.0), T0, T0));
    c.step();
    let t = T0 + 120 * MS;
    c.push(Sample::good(TagId(0), Value::Num(4.0), t, t));
    c.push(Sample::good(TagId(0), Value::Num(3.0), t + MS, t + MS));
    assert!(c.step().events.is_empty());
}

#[test]
fn a_stale_sample_without_value_keeps_the_last_value() {
    let mut c = core();
    c.push(Sample::good(TagId(2), Value::Num(40.0), T0, T0));
    c.step();
    let t = T0 + 150 * MS;
    c.push(Sample {
        tag: TagId(2),
        value: None,
        quality: Quality::Stale,
        reason: Some(Reason::NodeDeath),
        source_time_ns: t,
        recv_time_ns: t,
    });
    c.step();
    c.step();
    let s = &c.core_mut().tag_states()[2];
    assert_eq!(
        (s.quality, s.reason, s.value.clone()),
        (
            Quality::Stale,
            Some(Reason::NodeDeath),
            Some(Value::Num(40.0))
        )
    );
}

#[test]
fn samples_wait_for_their_tick() {
    let mut c = core();
    c.push(Sample::good(
        TagId(0),
        Value::Num(7.0),
        T0 + 250 * MS,
        T0 + 250 * MS,
    ));
    c.step(); // 100 ms
    c.step(); // 200 ms
    assert_eq!(c.core_mut().tag_states()[0].value, None);
    c.step(); // 300 ms
    assert_eq!(c.core_mut().tag_states()[0].value, Some(Value::Num(7.0)));
}
