//! Issue 4's determinism test: the same config and the same input samples
//! give bit-identical state, physics included.
//!
//! The demo plant (`plant-configs/packaging-line.toml`, whose line has
//! geometry, stations and photo-eyes) is driven for three minutes of tick
//! time by a fixed synthetic input: belt speeds that change, stop and go
//! backwards, an infeed counter, photo-eye inputs, noisy machine tags, bad
//! samples and gaps long enough to turn tags stale. Each run hashes every
//! encoded event byte and, at the end, the bit patterns of every product's
//! position on every line. Two independent runs must agree, and a run whose
//! input differs in one belt speed must not (so the hash does see the
//! physics).
//!
//! The hash is FNV-1a (64 bit): unlike std's `DefaultHasher` it is fixed
//! by its definition, so the values can be compared across Rust versions
//! and machines (docs/benchmarks.md, "Determinism test"). They are pinned in
//! [`GOLDEN`] for the default build (`enhanced-determinism` on): drift
//! across machines or dependency upgrades fails the test. After a
//! deliberate change to the core's behaviour or the event format, re-bless:
//!
//! TWIN_BLESS=1 cargo test --test it determinism

use std::time::Duration;

use twin::config::{LoadedConfig, TagId, load_file};
use twin::runtime::Driver;
use twin::twin::{Reason, Sample, TwinEvent, Value};

use crate::util::root;

/// The pinned hashes, relative to the repository root.
const GOLDEN: &str = "tests/golden/determinism.txt";

const T0: i64 = 1_800_000_000_000_000_000;
/// Three minutes of 100 ms ticks.
const TICKS: i64 = 1_800;

/// FNV-1a, 64 bit.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// What one run produced.
#[derive(Debug, PartialEq)]
struct Run {
    events_hash: u64,
    event_bytes: usize,
    positions_hash: u64,
    line_events: usize,
    products: usize,
    out: u64,
}

/// A small deterministic generator (xorshift64), so the input is fixed by
/// the seed and not by any library's choice of algorithm.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn config() -> LoadedConfig {
    load_file(&root().join("plant-configs/packaging-line.toml")).expect("demo config is valid")
}

fn tag(cfg: &LoadedConfig, name: &str) -> TagId {
    cfg.tags
        .id(name)
        .unwrap_or_else(|| panic!("the demo plant has tag {name}"))
}

/// A belt speed schedule in m/s over tick time: runs, changes, stops, runs
/// backwards for a while and comes back. `tweak` shifts one step of it.
fn belt_speed(t_s: f64, phase: f64, tweak: f64) -> f64 {
    let s = (t_s + phase) % 120.0;
    match s {
        s if s < 30.0 => 0.5,
        s if s < 50.0 => 0.62 + tweak,
        s if s < 58.0 => 0.0,
        s if s < 62.0 => -0.1,
        s if s < 90.0 => 0.35 + 0.1 * (s / 7.0).sin(),
        _ => 0.55,
    }
}

/// One run of the demo plant over [`TICKS`] with input seed `seed`.
fn run(cfg: &LoadedConfig, seed: u64, tweak: f64) -> Run {
    let period_ns = i64::try_from(cfg.config.plant.tick.as_nanos()).expect("tick fits i64");
    // The demo's fault model runs too: its predictions are part of the
    // stream that must come out the same.
    let mut driver = Driver::new(cfg, T0)
        .with_models(cfg)
        .expect("the demo's models load");
    let t0 = driver.epoch_ns();
    let infeed_speed = tag(cfg, "infeed.speed");
    let outfeed_speed = tag(cfg, "outfeed.speed");
    let infeed_count = tag(cfg, "infeed.count");
    // The filler's cycle setpoint (its station follows it): polled with
    // the belts, at its commissioned 0.8 s.
    let filler_cycle = tag(cfg, "filler.cycle_sp");
    let eyes = [
        tag(cfg, "infeed.eye_entry"),
        tag(cfg, "infeed.eye_filler"),
        tag(cfg, "outfeed.eye_transfer"),
        tag(cfg, "outfeed.eye_exit"),
    ];
    let noisy = [
        tag(cfg, "filler.speed"),
        tag(cfg, "filler.vibration"),
        tag(cfg, "capper.torque"),
        tag(cfg, "infeed.motor_current"),
    ];

    let mut rng = Rng(seed | 1);
    let mut count = 0u32;
    let mut next_count_s = 0.5;
    let mut eye_state = [false; 4];
    let mut hash = Fnv::new();
    let (mut bytes, mut line_events) = (0usize, 0usize);
    for k in 1..=TICKS {
        // Samples received during the tick that ends at tick `k`.
        let end = t0 + k * period_ns;
        let at = |frac: f64| end - period_ns + (frac * period_ns as f64) as i64;
        let t_s = (k * period_ns) as f64 / 1e9;
        let mut batch = Vec::new();

        // Belt speeds every 200 ms, except: the infeed's source drops out
        // (bad) for 2 s every 100 s, and the outfeed's goes silent for 5 s
        // (longer than `stale_after`, 3 s) every 70 s.
        if k % 2 == 0 {
            let r = at(rng.unit());
            if (t_s % 100.0) >= 40.0 && (t_s % 100.0) < 42.0 {
                batch.push(Sample::bad(infeed_speed, Reason::Timeout, r));
            } else {
                let v = belt_speed(t_s, 0.0, tweak) + 0.002 * (rng.unit() - 0.5);
                batch.push(Sample::good(infeed_speed, Value::Num(v), r - 1_000_000, r));
            }
            let r = at(rng.unit());
            batch.push(Sample::good(filler_cycle, Value::Num(0.8), r, r));
            if !((t_s % 70.0) >= 20.0 && (t_s % 70.0) < 25.0) {
                let r = at(rng.unit());
                let v = belt_speed(t_s, 17.0, 0.0) + 0.002 * (rng.unit() - 0.5);
                batch.push(Sample::good(outfeed_speed, Value::Num(v), r - 1_000_000, r));
            }
        }
        // The infeed counter: a bottle every 0.7–1.5 s.
        if t_s >= next_count_s {
            count += 1;
            next_count_s += 0.7 + 0.8 * rng.unit();
            let r = at(rng.unit());
            batch.push(Sample::good(
                infeed_count,
                Value::Num(f64::from(count)),
                r,
                r,
            ));
        }
        // Photo-eye inputs flip now and then (the twin compares them with
        // what it expects); one eye reports bad for a while.
        for (i, e) in eyes.iter().enumerate() {
            if rng.unit() < 0.08 {
                eye_state[i] = !eye_state[i];
                let r = at(rng.unit());
                if i == 3 && (t_s % 90.0) >= 60.0 && (t_s % 90.0) < 63.0 {
                    batch.push(Sample::bad(*e, Reason::IllegalDataAddress, r));
                } else {
                    batch.push(Sample::good(*e, Value::Bool(eye_state[i]), r, r));
                }
            }
        }
        // Noise on machine tags, including a NaN now and then.
        for t in noisy {
            if rng.unit() < 0.3 {
                let r = at(rng.unit());
                let v = if rng.unit() < 0.01 {
                    f64::NAN
                } else {
                    100.0 * rng.unit()
                };
                batch.push(Sample::good(t, Value::Num(v), r, r));
            }
        }
        // Arrival order within a tick is by receive time, as a live driver
        // would deliver them.
        batch.sort_by_key(|s| s.recv_time_ns);
        driver.push_batch(batch);
        let step = driver.step();
        line_events += step
            .events
            .iter()
            .filter(|e| matches!(e, TwinEvent::Line(_)))
            .count();
        hash.write(step.jsonl);
        bytes += step.jsonl.len();
    }

    let mut positions = Fnv::new();
    let (mut products, mut out) = (0, 0);
    for line in driver.core().lines() {
        positions.write(line.id.as_bytes());
        let ps = line.model().product_positions();
        products += ps.len();
        out += line.status.out;
        positions.write(&(ps.len() as u64).to_le_bytes());
        for p in ps {
            for v in [p.x, p.y, p.z] {
                positions.write(&v.to_bits().to_le_bytes());
            }
        }
    }
    Run {
        events_hash: hash.0,
        event_bytes: bytes,
        positions_hash: positions.0,
        line_events,
        products,
        out,
    }
}

#[test]
fn r4_same_inputs_give_bit_identical_state() {
    let cfg = config();
    assert_eq!(
        cfg.config.plant.tick,
        Duration::from_millis(100),
        "the tick counts below assume the demo's 100 ms tick"
    );
    let a = run(&cfg, 4, 0.0);
    let b = run(&cfg, 4, 0.0);
    eprintln!(
        "determinism: events fnv1a64 {:016x} ({} bytes, {} line events), \
         positions fnv1a64 {:016x} ({} products on the line, {} out)",
        a.events_hash, a.event_bytes, a.line_events, a.positions_hash, a.products, a.out
    );
    // The run must exercise what it claims to check.
    assert!(cfg.config.lines.iter().any(|l| !l.conveyors.is_empty()));
    // One line event per second of tick time.
    assert!(
        a.line_events as i64 >= TICKS / 10 - 1,
        "too few line events: {a:?}"
    );
    assert!(a.out > 0, "no product left the line: {a:?}");
    assert!(a.products > 0, "no product on the line at the end: {a:?}");
    assert_eq!(a, b, "two runs with the same inputs differ");

    // One belt speed step 0.001 m/s different: the hashes must see it.
    let c = run(&cfg, 4, 0.001);
    assert_ne!(
        a.positions_hash, c.positions_hash,
        "a different belt speed left the positions unchanged"
    );
    assert_ne!(a.events_hash, c.events_hash);

    check_golden(&a);
}

impl Run {
    /// The pinned form: one `key = value` line per figure.
    fn golden(&self) -> String {
        format!(
            "events_fnv1a64 = {:016x}\nevent_bytes = {}\nline_events = {}\n\
             positions_fnv1a64 = {:016x}\nproducts_on_line = {}\nout = {}\n",
            self.events_hash,
            self.event_bytes,
            self.line_events,
            self.positions_hash,
            self.products,
            self.out
        )
    }
}

const GOLDEN_HEADER: &str = "\
# Golden figures of tests/it/determinism.rs for the default build
# (`enhanced-determinism` on). A change fails the test. If the change is
# deliberate (the core's behaviour or the event format changed on purpose),
# re-bless and commit this file with the change:
#   TWIN_BLESS=1 cargo test --test it determinism
";

/// Compare with the pinned figures, or write them with `TWIN_BLESS=1`.
fn check_golden(run: &Run) {
    if !cfg!(feature = "enhanced-determinism") {
        // Without libm maths in rapier the figures are the platform's own;
        // only the two-run comparison above applies.
        eprintln!("determinism: golden figures are pinned for the default build only");
        return;
    }
    let path = root().join(GOLDEN);
    let got = run.golden();
    if std::env::var_os("TWIN_BLESS").is_some_and(|v| v == "1") {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create tests/golden");
        }
        std::fs::write(&path, format!("{GOLDEN_HEADER}{got}")).expect("write the golden file");
        return;
    }
    let pinned = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!("cannot read {GOLDEN} ({e}); create it with TWIN_BLESS=1 cargo test --test it determinism")
    });
    let pinned: String = pinned
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(
        pinned == got,
        "the demo line's events or product positions differ from {GOLDEN}.\n\
         pinned:\n{pinned}\nthis build:\n{got}\n\
         If the change is deliberate, re-bless with \
         `TWIN_BLESS=1 cargo test --test it determinism` and commit {GOLDEN}; \
         otherwise this build is not bit-identical to the pinned one \
         (a platform maths or dependency difference)."
    );
}
