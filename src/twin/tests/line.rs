//! The modelled line: throughput, belt speeds, zones and product types.

use super::*;

fn line_core() -> Driver {
    driver("line-test.toml", LINE_CFG)
}

/// A feeder for [`drive`]: `speed(t)` as a fresh `belt.speed` sample on
/// every tick (see [`hand_over`]).
fn speed(speed: impl Fn(i64) -> Option<Option<f64>>) -> impl FnMut(i64, &mut Driver) {
    move |t, d| hand_over(d, TagId(0), t, speed(t).map(|v| v.map(Value::Num)))
}

/// The issue's check "steady-state throughput equals min(station rate, spawn
/// rate)"; without stations, the spawn rate: 60/min. At 0.5 m/s a product
/// spaced 0.5 m behind the last one always finds the infeed clear, crosses
/// the 3 m belt in about 5.8 s, and leaves.
#[test]
fn r4_line_throughput_equals_the_spawn_rate() {
    let mut c = line_core();
    let out = drive(&mut c, T0 + 90_000 * MS, speed(|_| Some(Some(0.5))));
    let ev = line_events(&out);
    assert_eq!(ev.len(), 90, "one line event per second");
    let last = &ev[89];
    assert_eq!(last["quality"], "good");
    let tp = last["throughput_per_min"].as_f64().unwrap_or_default();
    assert!((tp - 60.0).abs() <= 1.0, "throughput {tp}/min vs 60/min");
    // 90 spawned (one at 0 s … 89 s); those younger than the transit time
    // are still on the belt.
    let (wip, done) = (last["wip"].as_u64(), last["out"].as_u64());
    assert!(matches!(wip, Some(5..=7)), "wip {wip:?}");
    assert_eq!(wip.zip(done).map(|(w, o)| w + o), Some(90));
    assert_eq!(last["lost"], 0);
    let s = c.core().lines()[0].status;
    assert_eq!(s.infeed_blocked, 0);
    // The products on the belt are strung out along it, in order.
    let xs: Vec<f32> = c.core().lines()[0]
        .model()
        .product_positions()
        .iter()
        .map(|p| p.x)
        .collect();
    assert!(xs.windows(2).all(|w| w[0] > w[1] + 0.4), "{xs:?}");
}

/// A belt whose speed tag is bad, or stale, stops in the twin: products stay
/// where they are, nothing leaves, spawns are skipped at the occupied
/// infeed, and the line reports `uncertain`.
#[test]
fn r4_bad_or_stale_speed_tag_stops_the_belts() {
    let positions = |c: &Driver| c.core().lines()[0].model().product_positions();
    let mut c = line_core();
    // 10 s running, then the tag goes bad for 10 s.
    drive(&mut c, T0 + 10_000 * MS, speed(|_| Some(Some(0.5))));
    let out_before = c.core().lines()[0].status.out;
    assert!(out_before > 0, "products left while running");
    let bad = drive(&mut c, T0 + 11_000 * MS, speed(|_| Some(None)));
    let held = positions(&c);
    drive(&mut c, T0 + 20_000 * MS, speed(|_| Some(None)));
    let s = c.core().lines()[0].status;
    assert_eq!(s.out, out_before, "nothing leaves a stopped belt");
    assert!(s.uncertain && s.infeed_blocked >= 8, "{s:?}");
    let now = positions(&c);
    assert_eq!(now.len(), held.len(), "no spawn onto an occupied infeed");
    for (a, b) in held.iter().zip(&now) {
        assert!(
            (a.x - b.x).abs() < 1e-3,
            "moved on a bad tag: {a:?} → {b:?}"
        );
    }
    let ev = line_events(&bad);
    assert_eq!(ev[0]["quality"], "uncertain");
    assert_eq!(ev[0]["reason"], "speed_not_good");

    // Running again, then the source falls silent: the tag turns stale
    // after 1 s and the belt stops with it.
    let ok = drive(&mut c, T0 + 30_000 * MS, speed(|_| Some(Some(0.5))));
    assert!(c.core().lines()[0].status.out > out_before, "runs again");
    assert_eq!(
        line_events(&ok).last().map(|e| e["quality"].clone()),
        Some("good".into())
    );
    drive(&mut c, T0 + 32_000 * MS, |_, _| {});
    let held = positions(&c);
    let out_stale = c.core().lines()[0].status.out;
    drive(&mut c, T0 + 40_000 * MS, |_, _| {});
    assert_eq!(c.core().lines()[0].status.out, out_stale);
    for (a, b) in held.iter().zip(&positions(&c)) {
        assert!(
            (a.x - b.x).abs() < 1e-3,
            "moved on a stale tag: {a:?} → {b:?}"
        );
    }
}

/// The same speed samples (varying, with bad stretches) give a
/// byte-identical stream, line events included.
#[test]
fn r4_line_events_are_deterministic() {
    let speeds = |t: i64| {
        let s = (t - T0) / (1_000 * MS);
        match s % 13 {
            5 | 6 => Some(None),
            11 => None,
            _ => Some(Some(0.3 + 0.05 * (s % 5) as f64)),
        }
    };
    let run = || drive(&mut line_core(), T0 + 40_000 * MS, speed(speeds));
    let a = run();
    let ev = line_events(&a);
    assert_eq!(ev.len(), 40);
    assert!(ev.iter().any(|e| e["quality"] == "uncertain"));
    assert!(ev.last().and_then(|e| e["out"].as_u64()).unwrap_or(0) > 10);
    assert_eq!(a, run());
}

#[test]
fn line_event_has_the_documented_fields() {
    let mut c = line_core();
    let out = drive(&mut c, T0 + 1_000 * MS, speed(|_| Some(Some(0.5))));
    let text = String::from_utf8_lossy(&out);
    assert_eq!(
        text.lines().last().unwrap_or_default(),
        r#"{"v":1,"type":"line","t":"2027-01-15T08:00:01.000Z","line":"line1","wip":1,"out":0,"lost":0,"throughput_per_min":0.0,"quality":"good","zones":{"main":1}}"#
    );
}

#[test]
fn lines_without_geometry_are_not_modelled() {
    let c = super::tags::core();
    assert!(c.core().lines().is_empty());
}

/// A named zone counts the products on its stretch, in the same `zones`
/// object as the per-conveyor counts.
#[test]
fn r4_named_zones_count_their_stretch() {
    let cfg = LINE_CFG.to_string()
        + r#"
  [[lines.zones]]
  id = "first_half"
  conveyor = "main"
  from = 0.0
  to = 1.5
"#;
    let mut c = driver("zones-test.toml", &cfg);
    let out = drive(&mut c, T0 + 60_000 * MS, speed(|_| Some(Some(0.5))));
    let last = line_events(&out).pop().unwrap_or_default();
    // Products 0.5 m apart on a 3 m belt: three on its first half.
    let (half, main) = (
        last["zones"]["first_half"].as_u64(),
        last["zones"]["main"].as_u64(),
    );
    assert!(matches!(half, Some(2..=4)), "{last}");
    assert!(half <= main, "{last}");
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains(r#""zones":{"main":"#),
        "conveyors first, then named zones"
    );
}

const TYPES_CFG: &str = r#"
[plant]
name = "types"

[[sources.modbus]]
name = "plc"
address = "127.0.0.1:502"
registers = [
  { tag = "belt.speed", table = "input", address = 0, unit = "m/s" },
  { tag = "recipe", table = "holding", address = 1 },
]

[[machines]]
id = "belt"
kind = "conveyor"
tags = { speed = "belt.speed", recipe = "recipe" }

[[lines]]
id = "line1"
machines = ["belt"]
spawn_interval = "1s"
product_tag = "recipe"
  [[lines.conveyors]]
  id = "main"
  speed_tag = "belt.speed"
  width = 0.6
  segments = [{ length = 3.0 }]
  [[lines.products]]
  id = "small"
  length = 0.2
  width = 0.2
  height = 0.2
  mass = 1.0
  [[lines.products]]
  id = "large"
  code = 7
  length = 0.35
  width = 0.3
  height = 0.3
  mass = 3.0
"#;

/// A changeover in the twin: the product tag's value picks the type (a
/// number by code, text by id) before the tick's steps, and the products
/// spawned from then on are that type. A value that names no type, a
/// fractional code, or a bad sample keeps the last type.
#[test]
fn r4_product_tag_changes_the_type_and_unknown_values_keep_it() {
    let cfg = load_str(Path::new("types-test.toml"), TYPES_CFG).expect("test config is valid");
    let (speed, recipe) = (
        cfg.tags.id("belt.speed").expect("tag"),
        cfg.tags.id("recipe").expect("tag"),
    );
    let mut c = Driver::new(&cfg, T0);
    // Runs `ticks` ticks at 0.5 m/s, handing over `value` for the product
    // tag on the first (`None`: nothing, `Some(None)`: a bad sample).
    let run = |c: &mut Driver, ticks: u32, value: Option<Option<Value>>| {
        let end = c.clock().time_of(c.clock().tick() + u64::from(ticks));
        let mut first = Some(value);
        drive(c, end, |t, d| {
            d.push(Sample::good(speed, Value::Num(0.5), t, t));
            hand_over(d, recipe, t, first.take().flatten());
        });
    };
    // The newest product's length along the belt.
    let newest = |c: &Driver| {
        let sizes = c.core().lines()[0].model().product_sizes();
        sizes.last().expect("a product").0
    };
    let close = |a: f64, b: f64| (a - b).abs() < 1e-4;

    // No value yet: the first type.
    run(&mut c, 15, None);
    assert_eq!(c.core().lines()[0].product_type(), 0);
    assert!(close(newest(&c), 0.2), "{}", newest(&c));

    // Recipe 7 is "large"; the next spawn (within a second) is large, the
    // one before keeps its size.
    run(&mut c, 12, Some(Some(Value::Num(7.0))));
    assert_eq!(c.core().lines()[0].product_type(), 1);
    assert!(close(newest(&c), 0.35), "{}", newest(&c));
    let sizes: Vec<f64> = c.core().lines()[0]
        .model()
        .product_sizes()
        .iter()
        .map(|s| s.0)
        .collect();
    assert!(sizes.iter().any(|l| close(*l, 0.2)), "{sizes:?}");

    // Unknown code, fractional code, unknown id, a bad sample: still large.
    for v in [
        Some(Value::Num(99.0)),
        Some(Value::Num(7.5)),
        Some(Value::Text("jar".into())),
        Some(Value::Bool(true)),
        None,
    ] {
        run(&mut c, 12, Some(v.clone()));
        assert_eq!(c.core().lines()[0].product_type(), 1, "after {v:?}");
        assert!(close(newest(&c), 0.35), "after {v:?}: {}", newest(&c));
    }

    // Text names a type by id: back to "small".
    run(&mut c, 12, Some(Some(Value::Text("small".into()))));
    assert_eq!(c.core().lines()[0].product_type(), 0);
    assert!(close(newest(&c), 0.2), "{}", newest(&c));
    assert_eq!(c.core().lines()[0].status.lost, 0);
}
