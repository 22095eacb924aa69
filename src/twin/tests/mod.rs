//! Core tests: synthetic sample sequences in, events out, through the run
//! driver (`runtime::Driver`), as every run drives the core.
//!
//! - [`tags`]: ingest, quality, staleness and the tag event.
//! - [`line`]: the modelled line: throughput, belt speeds, zones, product
//!   types.
//! - [`devices`]: stations, reject pushers and diverters driven by tags.
//! - [`eyes`]: photo-eyes against a truth model: residuals, jams, stuck eyes.

mod devices;
mod eyes;
mod line;
mod tags;

use super::*;
use crate::config::load_str;
use crate::runtime::Driver;
use std::path::Path;
use std::time::Duration;

const T0: i64 = 1_800_000_000_000_000_000;
const MS: i64 = 1_000_000;

/// A driver of a fresh core for the config text `cfg` (named `name` in
/// diagnostics), tick 0 at [`T0`].
fn driver(name: &str, cfg: &str) -> Driver {
    let cfg = load_str(Path::new(name), cfg).expect("test config is valid");
    Driver::new(&cfg, T0)
}

/// The drive loop of every test here: tick by tick until the tick time
/// reaches `end`, `feed(t, driver)` hands over the tick's samples, stamped
/// `t` (1 ms before the tick), and `each(driver)` looks at the state after
/// it. Returns the encoded stream.
fn drive_each(
    d: &mut Driver,
    end: i64,
    mut feed: impl FnMut(i64, &mut Driver),
    mut each: impl FnMut(&Driver),
) -> Vec<u8> {
    let mut out = Vec::new();
    while d.clock().now_ns() < end {
        let t = d.next_tick_ns() - MS;
        feed(t, d);
        out.extend_from_slice(d.step().jsonl);
        each(d);
    }
    out
}

/// [`drive_each`] without looking.
fn drive(d: &mut Driver, end: i64, feed: impl FnMut(i64, &mut Driver)) -> Vec<u8> {
    drive_each(d, end, feed, |_| {})
}

/// Hand over `value` for `tag` at `t`: `Some(Some(v))` a good sample,
/// `Some(None)` a bad one (`timeout`), `None` nothing.
fn hand_over(d: &mut Driver, tag: TagId, t: i64, value: Option<Option<Value>>) {
    match value {
        Some(Some(v)) => d.push(Sample::good(tag, v, t, t)),
        Some(None) => d.push(Sample::bad(tag, Reason::Timeout, t)),
        None => {}
    }
}

fn lines(out: &[u8]) -> Vec<serde_json::Value> {
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("every line is JSON"))
        .collect()
}

fn line_events(out: &[u8]) -> Vec<serde_json::Value> {
    lines(out)
        .into_iter()
        .filter(|l| l["type"] == "line")
        .collect()
}

/// A plant with one modelled line: a 3 m belt whose measured speed is
/// `belt.speed`, and a 0.2 m product spawned every second.
const LINE_CFG: &str = r#"
[plant]
name = "line-test"
tick = "100ms"
stale_after = "1s"

[[sources.modbus]]
name = "plc"
address = "127.0.0.1:502"
registers = [{ tag = "belt.speed", table = "input", address = 0, unit = "m/s" }]

[[machines]]
id = "belt"
kind = "conveyor"
tags = { speed = "belt.speed" }

[[lines]]
id = "line1"
machines = ["belt"]
  [[lines.conveyors]]
  id = "main"
  speed_tag = "belt.speed"
  width = 0.6
  segments = [{ length = 3.0 }]
  [lines.product]
  length = 0.2
  width = 0.2
  height = 0.2
  mass = 1.0
  spawn_interval = "1s"
"#;
