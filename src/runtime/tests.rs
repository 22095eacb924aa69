//! The driver's clamp and fan-out, and live pacing against a manual clock.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::config::{LoadedConfig, TagId, load_str};
use crate::sinks::{Sink, SinkError, TickOutput};
use crate::twin::{Quality, Sample, TwinEvent, Value};
use crate::wallclock::RunClock;

const CFG: &str = r#"
[plant]
name = "driver-test"
tick = "100ms"
stale_after = "1s"

[[sources.modbus]]
name = "plc"
address = "127.0.0.1:502"
registers = [{ tag = "belt.speed", table = "holding", address = 0 }]
"#;

const T0: i64 = 1_800_000_000_000_000_000;
const MS: i64 = 1_000_000;
const SPEED: TagId = TagId(0);

fn cfg() -> LoadedConfig {
    load_str(Path::new("driver-test.toml"), CFG).expect("test config is valid")
}

fn good(v: f64, recv: i64) -> Sample {
    Sample::good(SPEED, Value::Num(v), recv, recv)
}

/// The tick on which the value `v` of the speed tag was first seen.
fn applied_on(d: &mut Driver, v: f64, ticks: u32) -> Option<u64> {
    for _ in 0..ticks {
        let step = d.step();
        let seen = step
            .events
            .iter()
            .any(|e| matches!(e, TwinEvent::Tag(t) if t.value == Some(Value::Num(v))));
        if seen {
            return Some(step.tick);
        }
    }
    None
}

#[test]
fn r9_a_sample_late_for_its_tick_is_received_right_after_it() {
    let mut d = Driver::new(&cfg(), T0);
    d.step();
    d.step(); // tick 2, at T0 + 200 ms, has run
    // Stamped during tick 2's period, delivered after it ran.
    d.push(good(1.0, T0 + 150 * MS));
    assert_eq!(d.stats().clamped, 1);
    assert_eq!(applied_on(&mut d, 1.0, 3), Some(3));
    // What the core was given is what a recorder keeps: replaying it on a
    // fresh driver, up front, applies it on the same tick.
    let mut replay = Driver::new(&cfg(), T0);
    replay.push(good(1.0, T0 + 200 * MS + 1));
    assert_eq!(applied_on(&mut replay, 1.0, 5), Some(3));
}

#[test]
fn r9_a_sample_on_a_tick_boundary_is_clamped_only_if_that_tick_ran() {
    let mut d = Driver::new(&cfg(), T0);
    d.step(); // tick 1 at T0 + 100 ms
    // Exactly on the tick that ran: after it.
    d.push(good(1.0, T0 + 100 * MS));
    // Exactly on the next tick: on it, unclamped.
    d.push(good(2.0, T0 + 200 * MS));
    assert_eq!(d.stats().clamped, 1);
    assert_eq!(d.core_mut().tag_states()[0].value, None);
    d.step();
    // Both due on tick 2; the later one wins.
    assert_eq!(
        d.core_mut().tag_states()[0].value,
        Some(Value::Num(2.0)),
        "both applied on tick 2"
    );
    // A sample one ns after the tick that ran is left alone.
    d.push(good(3.0, T0 + 200 * MS + 1));
    assert_eq!(d.stats().clamped, 1);
}

#[test]
fn r9_a_batch_is_clamped_sample_by_sample_and_keeps_its_order() {
    let mut d = Driver::new(&cfg(), T0);
    for _ in 0..3 {
        d.step(); // tick 3 at T0 + 300 ms has run
    }
    d.push_batch(vec![
        good(1.0, T0 + 120 * MS),
        good(2.0, T0 + 310 * MS),
        good(3.0, T0 + 250 * MS),
        good(4.0, T0 + 450 * MS),
    ]);
    assert_eq!(d.stats().clamped, 2);
    assert_eq!(d.stats().samples, 4);
    // 1 (clamped), 2 and 3 (clamped) are due on tick 4, in batch order. The
    // clamp moves receive times only: 3 was measured before 2, so the core
    // keeps 2 and counts 3 out of order. 4 waits for tick 5.
    d.step();
    assert_eq!(d.core_mut().tag_states()[0].value, Some(Value::Num(2.0)));
    assert_eq!(d.core().stats().out_of_order, 1);
    d.step();
    assert_eq!(d.core_mut().tag_states()[0].value, Some(Value::Num(4.0)));
}

#[test]
fn r9_the_epoch_is_tick_zero_aligned_to_the_period() {
    let d = Driver::new(&cfg(), T0 + 1_234_567);
    assert_eq!(d.epoch_ns(), T0);
    assert_eq!(d.next_tick_ns(), T0 + 100 * MS);
}

/// (tick, events, JSONL bytes) per tick a sink saw.
type Seen = Arc<Mutex<Vec<(u64, usize, usize)>>>;

/// A sink that records what it saw; `fail_after` ticks, it fails.
struct Probe {
    seen: Seen,
    fail_after: Option<u64>,
    finished: Arc<Mutex<bool>>,
}

impl Sink for Probe {
    fn write_tick(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        if self.fail_after.is_some_and(|n| out.tick > n) {
            return Err(SinkError::Closed {
                sink: "probe",
                target: "-".into(),
            });
        }
        if let Ok(mut s) = self.seen.lock() {
            s.push((out.tick, out.events.len(), out.jsonl.len()));
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if let Ok(mut f) = self.finished.lock() {
            *f = true;
        }
        Ok(())
    }
}

fn probe(fail_after: Option<u64>) -> (Probe, Seen, Arc<Mutex<bool>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let finished = Arc::new(Mutex::new(false));
    (
        Probe {
            seen: seen.clone(),
            fail_after,
            finished: finished.clone(),
        },
        seen,
        finished,
    )
}

#[test]
fn r9_every_sink_sees_every_tick_and_a_failing_one_leaves_the_others() {
    let mut d = Driver::new(&cfg(), T0);
    let (a, seen_a, fin_a) = probe(None);
    let (b, seen_b, fin_b) = probe(Some(2));
    d.add_sink(Box::new(a)).unwrap();
    d.add_sink(Box::new(b)).unwrap();
    d.push(good(1.0, T0 + 50 * MS));
    let first_len = d.step().jsonl.len();
    assert_eq!(d.advance_to(T0 + 500 * MS), 4);
    let seen_a = seen_a.lock().map(|s| s.clone()).unwrap_or_default();
    assert_eq!(
        seen_a.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    // Tick 1 reports the tag, encoded once for every sink.
    assert_eq!(seen_a[0], (1, 1, first_len));
    assert_eq!(seen_b.lock().map(|s| s.len()).unwrap_or_default(), 2);
    let failures = d.take_failures();
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(d.take_failures().is_empty(), "taken once");
    assert!(d.finish().is_empty());
    assert_eq!(fin_a.lock().map(|f| *f).ok(), Some(true));
    assert_eq!(
        fin_b.lock().map(|f| *f).ok(),
        Some(false),
        "a failed sink is not finished"
    );
}

// Pacing on the run clock. The manual clock stands in for the machine's: the
// test moves its monotonic time and steps its system clock by hand.

/// A driver started on `clock`, with one good sample received at the start.
fn paced(clock: &RunClock) -> (Driver, Pacer) {
    let mut d = Driver::new(&cfg(), clock.now_ns());
    d.push(good(1.0, clock.now_ns() + MS));
    (d, Pacer::new(clock.clone()))
}

fn quality(d: &mut Driver) -> Quality {
    d.core_mut().tag_states()[0].quality
}

/// Wakes every 100 ms for `secs`, as the live loop's timer does; returns the
/// ticks run.
fn tick_along(d: &mut Driver, p: &mut Pacer, hand: &crate::wallclock::ClockHand, ms: u64) -> u64 {
    let mut ticks = 0;
    for _ in 0..ms / 100 {
        hand.advance(Duration::from_millis(100));
        ticks += u64::from(p.wake(d).ticks);
    }
    ticks
}

#[test]
fn r9_a_clock_step_back_keeps_ticks_on_pace_and_staleness_checked() {
    let (clock, hand) = RunClock::manual(T0);
    let (mut d, mut p) = paced(&clock);
    assert_eq!(tick_along(&mut d, &mut p, &hand, 500), 5);
    assert_eq!(quality(&mut d), Quality::Good);
    // NTP steps the system clock back an hour. Paced on the wall clock, the
    // loop would sleep for that hour and never check staleness.
    hand.step_system(-3_600_000 * MS);
    assert_eq!(tick_along(&mut d, &mut p, &hand, 1_000), 10);
    assert_eq!(
        d.clock().tick(),
        15,
        "one tick per 100 ms of monotonic time"
    );
    // No sample for 1.5 s > stale_after (1 s).
    assert_eq!(quality(&mut d), Quality::Stale);
    assert_eq!(p.clock_steps(), 1, "the step was noticed");
    assert_eq!(p.clock_offset_ns(), -3_600_000 * MS);
    // Stamps keep the run clock: a sample now is not an hour old.
    d.push(good(2.0, clock.now_ns()));
    tick_along(&mut d, &mut p, &hand, 100);
    assert_eq!(quality(&mut d), Quality::Good);
}

#[test]
fn r9_a_clock_step_forward_runs_no_extra_ticks() {
    let (clock, hand) = RunClock::manual(T0);
    let (mut d, mut p) = paced(&clock);
    assert_eq!(tick_along(&mut d, &mut p, &hand, 300), 3);
    // An hour forward: paced on the wall clock, 36,000 ticks would be due at
    // once and the tag would turn stale on the spot.
    hand.step_system(3_600_000 * MS);
    hand.advance(Duration::from_millis(50));
    assert_eq!(p.wake(&mut d).ticks, 0);
    assert_eq!(tick_along(&mut d, &mut p, &hand, 400), 4);
    assert_eq!(d.clock().tick(), 7);
    assert_eq!(p.clock_steps(), 1);
    assert_eq!(quality(&mut d), Quality::Good, "0.7 s old, not an hour");
}

#[test]
fn r9_catch_up_after_a_stall_is_bounded_per_wake_up() {
    let (clock, hand) = RunClock::manual(T0);
    let (mut d, mut p) = paced(&clock);
    tick_along(&mut d, &mut p, &hand, 200);
    // The process stalls for 10 s of monotonic time (100 ticks).
    hand.advance(Duration::from_secs(10));
    let first = p.wake(&mut d);
    assert_eq!(first.ticks, pacing::MAX_TICKS_PER_WAKE);
    assert!(first.due);
    assert!(first.behind_ns >= 9_900 * MS, "{first:?}");
    let mut wakes = 1;
    loop {
        wakes += 1;
        assert!(wakes < 10, "catch-up does not end");
        if !p.wake(&mut d).due {
            break;
        }
    }
    // Every missed tick ran (staleness was checked on each), in bursts.
    assert_eq!(d.clock().tick(), 102);
    assert_eq!(wakes, 100 / pacing::MAX_TICKS_PER_WAKE);
    assert_eq!(quality(&mut d), Quality::Stale);
    assert!(p.max_behind() >= Duration::from_millis(9_900));
    assert_eq!(p.clock_steps(), 0, "a stall is not a clock step");
}

// The live runner's side of the sinks: what `RunOptions::sinks` gets, and
// what a failing sink does to the run. No sources, a 10 ms tick.

fn sourceless() -> LoadedConfig {
    load_str(
        Path::new("live-test.toml"),
        "[plant]\nname = \"live-test\"\ntick = \"10ms\"\n",
    )
    .expect("test config is valid")
}

async fn live(opts: RunOptions) -> Result<RunSummary, RunError> {
    run_live(
        &sourceless(),
        &crate::endpoints::Endpoints::default(),
        opts,
        tokio_util::sync::CancellationToken::new(),
    )
    .await
}

#[tokio::test]
async fn r9_a_live_run_fans_every_tick_out_to_its_sinks_and_finishes_them() {
    let (probe, seen, finished) = probe(None);
    let mut opts = RunOptions::new(Some(Duration::from_millis(200)));
    opts.sinks.push(Box::new(probe));
    let summary = live(opts).await.expect("the run ends cleanly");
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    assert!(summary.ticks >= 1, "{summary:?}");
    // Paced: never more ticks than the duration holds.
    assert!(summary.ticks <= 20, "{summary:?}");
    assert_eq!(seen.len() as u64, summary.ticks);
    assert!(seen.windows(2).all(|w| w[1].0 == w[0].0 + 1), "{seen:?}");
    assert_eq!(finished.lock().map(|f| *f).ok(), Some(true));
    assert_eq!(summary.clock_steps, 0);
}

#[tokio::test]
async fn r9_a_sink_whose_reader_went_away_ends_the_run_normally() {
    let (probe, seen, _) = probe(Some(3));
    let mut opts = RunOptions::new(Some(Duration::from_secs(60)));
    opts.sinks.push(Box::new(probe));
    let summary = live(opts).await.expect("a gone reader is a normal end");
    assert_eq!(summary.ticks, 4, "stopped on the tick the sink failed");
    assert_eq!(seen.lock().map(|s| s.len()).unwrap_or_default(), 3);
}

/// A sink that cannot write.
struct Broken;

impl Sink for Broken {
    fn write_tick(&mut self, _: &TickOutput<'_>) -> Result<(), SinkError> {
        Err(SinkError::Io {
            sink: "event stream",
            target: "ev.jsonl".into(),
            source: std::io::Error::from_raw_os_error(28),
        })
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[tokio::test]
async fn r9_a_sink_that_cannot_write_fails_the_run() {
    let mut opts = RunOptions::new(Some(Duration::from_secs(60)));
    opts.sinks.push(Box::new(Broken));
    let e = live(opts).await.expect_err("a write error fails the run");
    assert!(
        e.to_string()
            .starts_with("cannot write the event stream to ev.jsonl"),
        "{e}"
    );
}
