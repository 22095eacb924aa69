//! The guard's tests: the plant, the setpoint and the forecaster they
//! share; the rules one by one, table-driven (`rules.rs`), and the flows
//! over ticks: advisory expiry, approval re-checks, read-back mismatch →
//! lock → reset, rate limits, the optimiser's hand-over, and carrying
//! decisions out (`flows.rs`).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::audit::{Actor, AuditLog, Decision};
use super::decide::{
    Context, Forecast, Forecaster, Globals, InFlight, Proposal, Purpose, SetpointState, TagSnap,
    Verdict, View, decide,
};
use super::events::{SetpointDecision, SetpointEvent};
use super::rules::RuleId;
use super::state::{GuardState, Link, WriteIntent, WriteOutcome};
use super::{SetpointWriter, carry_out};
use crate::config::{LoadedConfig, TagId, load_str};
use crate::twin::{Quality, Value};

const PLANT: &str = r#"
[plant]
name = "g"
tick = "100ms"
stale_after = "3s"

[[sources.modbus]]
name = "plc"
address = "127.0.0.1:502"
registers = [
  { tag = "speed", table = "holding", address = 0, type = "u16", scale = 0.01 },
  { tag = "echo", table = "input", address = 1, type = "u16", scale = 0.01 },
  { tag = "running", table = "coil", address = 0 },
  { tag = "kill", table = "coil", address = 1 },
  { tag = "temp", table = "input", address = 2 },
]

[[machines]]
id = "m"
kind = "generic"
tags = { a = "speed", b = "echo", c = "running", d = "kill", e = "temp" }

[guard]
kill_tag = "kill"
advisory_expiry = "1s"
"#;

/// The setpoint every case starts from; a case replaces a line of it.
const SETPOINT: &str = r#"
[[setpoints]]
tag = "speed"
min = 0.0
max = 1.0
max_step = 0.2
mode = "closed_loop"
out_of_range = "reject"
max_rate = 1.0
min_interval = "1s"
deadband = 0.01
max_input_age = "2s"
max_proposal_age = "2s"
interlocks = ["running"]
readback = "echo"
readback_timeout = "500ms"
readback_tolerance = 0.005
"#;

fn config(setpoint: &str) -> LoadedConfig {
    match load_str(Path::new("g.toml"), &format!("{PLANT}{setpoint}")) {
        Ok(c) => c,
        Err(r) => panic!(
            "should be valid: {:#?}",
            r.errors().map(|d| d.message.clone()).collect::<Vec<_>>()
        ),
    }
}

fn id(cfg: &LoadedConfig, name: &str) -> TagId {
    cfg.tags.id(name).expect("known tag")
}

const PERIOD: i64 = 100_000_000;
const TICK: u64 = 1000;

/// The tags at tick 1000 (100 s): all good and 100 ms old; speed 0.5,
/// running, not killed.
struct Plant {
    cfg: LoadedConfig,
    snaps: Vec<TagSnap>,
    tick: u64,
}

impl Plant {
    fn new(cfg: LoadedConfig) -> Plant {
        let mut p = Plant {
            snaps: vec![TagSnap::default(); cfg.tags.len()],
            cfg,
            tick: TICK,
        };
        p.set("speed", Value::Num(0.5));
        p.set("echo", Value::Num(0.5));
        p.set("running", Value::Bool(true));
        p.set("kill", Value::Bool(false));
        p.set("temp", Value::Num(20.0));
        p
    }

    fn now(&self) -> i64 {
        self.tick as i64 * PERIOD
    }

    fn set(&mut self, tag: &str, v: Value) {
        let now = self.now();
        let i = id(&self.cfg, tag).index();
        self.snaps[i] = TagSnap {
            value: Some(v),
            quality: Quality::Good,
            source_time_ns: Some(now - PERIOD),
        };
    }

    fn snap(&mut self, tag: &str) -> &mut TagSnap {
        let i = id(&self.cfg, tag).index();
        &mut self.snaps[i]
    }

    fn view(&self) -> View<'_> {
        View {
            now_ns: self.now(),
            tick: self.tick,
            period_ns: PERIOD,
            tags: &self.snaps,
            table: &self.cfg.tags,
        }
    }

    /// `n` ticks later; every good tag refreshed (100 ms old again).
    fn skip(&mut self, n: u64) {
        self.tick += n - 1;
        self.next();
    }

    /// One tick later; every good tag refreshed (100 ms old again).
    fn next(&mut self) {
        self.tick += 1;
        let now = self.now();
        for s in &mut self.snaps {
            if s.quality == Quality::Good {
                s.source_time_ns = Some(now - PERIOD);
            }
        }
    }
}

fn forecast(lost: u64, jam_risk: f64) -> Forecast {
    Forecast {
        lost,
        jam_risk,
        max_jam_risk: 0.5,
        json: serde_json::json!({"lost": lost, "jam_risk": jam_risk}),
    }
}

/// A forecaster that always says the same.
struct Fixed(Result<Option<Forecast>, String>);

impl Forecaster for Fixed {
    fn forecast(&mut self, _: TagId, _: f64) -> Result<Option<Forecast>, String> {
        self.0.clone()
    }
}

mod flows;
mod rules;
