//! Line devices driven by tags: stations, reject pushers, diverters.

use super::*;

/// [`LINE_CFG`] with a station at 1.5 m on the 3 m belt, its cycle time
/// given by `cycle` (a `cycle_time = ...` or `cycle_time_tag = ...` line),
/// and two photo-eyes: `at_station` on the station's position and `after`
/// at 2.5 m. Tags: 0 `belt.speed`, 1 `station.cycle` (s), 2 `eye.at`,
/// 3 `eye.after`.
fn station_core(cycle: &str) -> Driver {
    let cfg = LINE_CFG.replace(
        r#"registers = [{ tag = "belt.speed", table = "input", address = 0, unit = "m/s" }]"#,
        r#"registers = [
  { tag = "belt.speed", table = "input", address = 0, unit = "m/s" },
  { tag = "station.cycle", table = "input", address = 1, unit = "s" },
  { tag = "eye.at", table = "discrete", address = 0 },
  { tag = "eye.after", table = "discrete", address = 1 },
]"#,
    ) + &format!(
        r#"
  [[lines.stations]]
  id = "filler"
  conveyor = "main"
  position = 1.5
  {cycle}
  [[lines.photo_eyes]]
  id = "at_station"
  conveyor = "main"
  position = 1.5
  tag = "eye.at"
  [[lines.photo_eyes]]
  id = "after"
  conveyor = "main"
  position = 2.5
  tag = "eye.after"
"#
    );
    let cfg = load_str(Path::new("station-test.toml"), &cfg).expect("test config is valid");
    Driver::new(&cfg, T0)
}

/// A feeder for [`drive`]: the belt at 0.5 m/s and `value(t)` for tag 1
/// (see [`hand_over`]) on every tick.
fn belt_and(value: impl Fn(i64) -> Option<Option<Value>>) -> impl FnMut(i64, &mut Driver) {
    move |t, d| {
        d.push(Sample::good(TagId(0), Value::Num(0.5), t, t));
        hand_over(d, TagId(1), t, value(t));
    }
}

/// [`belt_and`] with `cycle(t)` as the station's cycle time, s.
fn cycle_of(cycle: impl Fn(i64) -> Option<Option<f64>>) -> impl FnMut(i64, &mut Driver) {
    belt_and(move |t| cycle(t).map(|v| v.map(Value::Num)))
}

/// The issue's check "steady-state throughput equals min(station rate,
/// spawn rate)", station-bound: spawns every 1 s (60/min) into a station
/// with a fixed 2 s cycle (30/min). The queue behind the station backs up
/// to the infeed (spawns are then skipped), and the station releases one
/// product per cycle. Over the last 60 s window (t = 90…150 s, long after
/// the queue formed) the count is 30, ±1 for where the window's edges fall
/// between two departures.
#[test]
fn r4_station_bound_throughput_is_the_station_rate() {
    let mut c = station_core(r#"cycle_time = "2s""#);
    let out = drive(&mut c, T0 + 150_000 * MS, cycle_of(|_| None));
    let ev = line_events(&out);
    let last = &ev[ev.len() - 1];
    assert_eq!(last["quality"], "good");
    assert_eq!(last["lost"], 0);
    let tp = last["throughput_per_min"].as_f64().unwrap_or_default();
    assert!((tp - 30.0).abs() <= 1.0, "throughput {tp}/min vs 30/min");
    let line = &c.core().lines()[0];
    assert!(
        line.status.infeed_blocked > 0,
        "the queue reached the infeed"
    );
    // Queued products touch but never pass through the held one: in spawn
    // order, each is at least one product length (less contact slop)
    // behind the one ahead.
    let xs: Vec<f32> = line
        .model()
        .product_positions()
        .iter()
        .map(|p| p.x)
        .collect();
    assert!(xs.windows(2).all(|w| w[0] - w[1] > 0.19), "{xs:?}");
    assert!(line.model().stations()[0].holding());
}

/// Spawn-bound: a 0.5 s cycle (120/min) behind a 1 s spawn (60/min) gives
/// the spawn rate, ±1 as above; the cycle comes from its tag. A photo-eye
/// on the station sees the held (kinematic) product; the one after it
/// toggles once per product, so its rising edges count the products that
/// passed it. Then the cycle tag goes bad: the station holds its product
/// indefinitely, nothing more leaves, and the line is uncertain.
#[test]
fn r4_spawn_bound_throughput_and_photo_eyes() {
    let mut c = station_core(r#"cycle_time_tag = "station.cycle""#);
    let mut changes = 0u32;
    let mut last_blocked = false;
    let out = drive_each(
        &mut c,
        T0 + 90_000 * MS,
        cycle_of(|_| Some(Some(0.5))),
        |c| {
            let m = c.core().lines()[0].model();
            let eyes = m.photo_eyes();
            if m.stations()[0].holding() {
                assert!(eyes[0].blocked(), "the station eye sees the held product");
            }
            if eyes[1].blocked() != last_blocked {
                changes += 1;
                last_blocked = eyes[1].blocked();
            }
        },
    );
    let ev = line_events(&out);
    let last = &ev[ev.len() - 1];
    assert_eq!(last["quality"], "good");
    let tp = last["throughput_per_min"].as_f64().unwrap_or_default();
    assert!((tp - 60.0).abs() <= 1.0, "throughput {tp}/min vs 60/min");
    let line = &c.core().lines()[0];
    assert_eq!(line.status.infeed_blocked, 0, "the station keeps up");
    // Reached the eye at 2.5 m: everything out, and on the belt everything
    // whose front edge is past the beam's back face (2.495 m).
    let past = line
        .model()
        .product_positions()
        .iter()
        .filter(|p| p.x + 0.1 > 2.495)
        .count() as u64;
    let eye = &line.model().photo_eyes()[1];
    assert!(eye.rising_edges() > 80);
    assert_eq!(eye.rising_edges(), line.status.out + past);
    assert!(changes as u64 >= 2 * line.status.out, "toggles per product");

    // The cycle tag goes bad: the product at the station stays there.
    // 4 s: products already past the station (1.5 m at 0.5 m/s) leave.
    drive(&mut c, T0 + 94_000 * MS, cycle_of(|_| Some(None)));
    let out_held = c.core().lines()[0].status.out;
    let bad = drive(&mut c, T0 + 110_000 * MS, cycle_of(|_| Some(None)));
    let line = &c.core().lines()[0];
    assert!(line.model().stations()[0].holding());
    assert_eq!(line.status.out, out_held, "nothing passes a held station");
    assert!(
        line_events(&bad)
            .iter()
            .all(|e| e["quality"] == "uncertain" && e["reason"] == "cycle_time_not_good")
    );
}

/// The same inputs, with stations and photo-eyes in the line, give a
/// byte-identical stream and identical eye states.
#[test]
fn r4_station_line_is_deterministic() {
    let run = || {
        let mut c = station_core(r#"cycle_time_tag = "station.cycle""#);
        let cycle = |t: i64| {
            let s = (t - T0) / (1_000 * MS);
            match s % 11 {
                4 => Some(None),
                _ => Some(Some(0.4 + 0.5 * (s % 4) as f64)),
            }
        };
        let mut eyes = Vec::new();
        let out = drive_each(&mut c, T0 + 40_000 * MS, cycle_of(cycle), |c| {
            let m = c.core().lines()[0].model();
            eyes.extend(
                m.photo_eyes()
                    .iter()
                    .map(|e| (e.blocked(), e.rising_edges())),
            );
        });
        (out, eyes)
    };
    let a = run();
    assert!(
        line_events(&a.0)
            .iter()
            .any(|e| e["quality"] == "uncertain")
    );
    assert_eq!(a, run());
}

/// [`LINE_CFG`] with a reject pusher at 2.0 m on the 3 m belt, fired by
/// the PLC coil `reject.coil`. Tags: 0 `belt.speed`, 1 `reject.coil`.
fn pusher_core() -> Driver {
    let cfg = LINE_CFG.replace(
        r#"registers = [{ tag = "belt.speed", table = "input", address = 0, unit = "m/s" }]"#,
        r#"registers = [
  { tag = "belt.speed", table = "input", address = 0, unit = "m/s" },
  { tag = "reject.coil", table = "coil", address = 0 },
]"#,
    ) + r#"
  [[lines.pushers]]
  id = "reject"
  conveyor = "main"
  position = 2.0
  coil_tag = "reject.coil"
"#;
    let cfg = load_str(Path::new("pusher-test.toml"), &cfg).expect("test config is valid");
    assert_eq!(cfg.config.lines[0].pushers.len(), 1);
    Driver::new(&cfg, T0)
}

/// [`belt_and`] with the coil at `coil` on every tick: `Some(Some(level))`
/// a good sample, `Some(None)` a bad one, `None` no sample (the tag turns
/// stale after `stale_after`, 1 s, keeping its last value).
fn coil_at(coil: Option<Option<bool>>) -> impl FnMut(i64, &mut Driver) {
    belt_and(move |_| coil.map(|l| l.map(Value::Bool)))
}

/// The coil tag drives the pusher: held on, every product (one a second)
/// is pushed off at 2.0 m and none reaches the end. A coil that goes bad,
/// or stale (still holding `true`), leaves the pusher unfired: the twin
/// does not reject on a coil it cannot see, so products pass, as they do
/// with the coil good and off. Pushed products are never counted lost.
#[test]
fn r4_a_coil_tag_fires_the_pusher() {
    let status = |c: &Driver| c.core().lines()[0].status;
    let mut c = pusher_core();
    let good = drive(&mut c, T0 + 30_000 * MS, coil_at(Some(Some(true))));
    let s = status(&c);
    // The line event carries the count, and a good coil keeps it good.
    let events = line_events(&good);
    let last = events.last().expect("line events");
    assert_eq!(last["pushed"], s.pushed, "{last}");
    assert!(events.iter().all(|e| e["quality"] == "good"), "{events:?}");
    assert_eq!((s.out, s.lost), (0, 0), "{s:?}");
    // 30 spawned; those spawned in the last ~4 s have not reached 2.0 m
    // (1.9 m of travel at 0.5 m/s, plus the fall).
    assert!(s.pushed >= 24, "{s:?}");
    assert_eq!(s.pushed + s.wip, 30, "{s:?}");
    assert_eq!(
        c.core().lines()[0].model().pushers()[0].pushed(),
        s.pushed,
        "the pusher counts what the line counts"
    );

    // Bad: 1 s for what is in the air to land, then 20 s.
    drive(&mut c, T0 + 31_000 * MS, coil_at(Some(None)));
    let before = status(&c);
    let out = drive(&mut c, T0 + 51_000 * MS, coil_at(Some(None)));
    let s = status(&c);
    assert!(!c.core().lines()[0].model().pushers()[0].fired());
    assert_eq!(s.pushed, before.pushed, "pushed on a bad coil: {s:?}");
    assert!(s.out >= before.out + 15, "{before:?} → {s:?}");
    assert_eq!(s.lost, 0, "{s:?}");
    assert!(line_events(&out).iter().all(|e| e["lost"] == 0));
    // A bad coil makes the line's counts uncertain.
    assert!(
        line_events(&out)
            .iter()
            .all(|e| e["quality"] == "uncertain" && e["reason"] == "coil_not_good"),
        "{:?}",
        line_events(&out)
    );

    // Good and off: the same.
    drive(&mut c, T0 + 61_000 * MS, coil_at(Some(Some(false))));
    let off = status(&c);
    assert_eq!(off.pushed, s.pushed);
    assert!(off.out >= s.out + 8, "{s:?} → {off:?}");

    // On again for 10 s, then no more samples: after 1 s the coil is stale
    // (its last value, `true`, kept) and the pusher stops; 1 s more for
    // what it pushed to land.
    drive(&mut c, T0 + 71_000 * MS, coil_at(Some(Some(true))));
    let on = status(&c);
    assert!(on.pushed >= off.pushed + 8, "{off:?} → {on:?}");
    drive(&mut c, T0 + 73_000 * MS, coil_at(None));
    assert!(
        !c.core().lines()[0].model().pushers()[0].fired(),
        "fired while stale"
    );
    let stale = status(&c);
    drive(&mut c, T0 + 93_000 * MS, coil_at(None));
    let end = status(&c);
    assert_eq!(end.pushed, stale.pushed, "pushed on a stale coil: {end:?}");
    assert!(end.out >= stale.out + 15, "{stale:?} → {end:?}");
    assert_eq!(end.lost, 0, "{end:?}");
}

/// [`LINE_CFG`] with a 1.5 m, 0.4 m wide branch `lane` heading north from
/// the main belt's north edge at 2.0 m (driven by the same speed tag), and
/// a diverter at 2.0 m onto it, fired by the PLC coil `divert.coil`. Tags:
/// 0 `belt.speed`, 1 `divert.coil`.
fn diverter_core() -> Driver {
    let cfg = LINE_CFG
        .replace(
            r#"registers = [{ tag = "belt.speed", table = "input", address = 0, unit = "m/s" }]"#,
            r#"registers = [
  { tag = "belt.speed", table = "input", address = 0, unit = "m/s" },
  { tag = "divert.coil", table = "coil", address = 0 },
]"#,
        )
        .replace(
            "  [lines.product]",
            r#"  [[lines.conveyors]]
  id = "lane"
  speed_tag = "belt.speed"
  width = 0.4
  origin = [2.0, 0.3]
  segments = [{ length = 1.5, heading = 90 }]
  [lines.product]"#,
        )
        + r#"
  [[lines.diverters]]
  id = "gate"
  conveyor = "main"
  position = 2.0
  coil_tag = "divert.coil"
  to = "lane"
"#;
    let cfg = load_str(Path::new("diverter-test.toml"), &cfg).expect("test config is valid");
    assert_eq!(cfg.config.lines[0].diverters.len(), 1);
    Driver::new(&cfg, T0)
}

/// The coil tag drives the diverter, by the pusher's rule: held on, every
/// product (one a second) goes onto the lane and leaves at its end, counted
/// as diverted (in the status, the diverter and the `line` event), never
/// out or lost. A coil that goes bad leaves the diverter home and makes the
/// line `uncertain` (`coil_not_good`): products go out at the main end, as
/// they do with the coil good and off.
#[test]
fn r4_a_coil_tag_fires_the_diverter() {
    let status = |c: &Driver| c.core().lines()[0].status;
    let mut c = diverter_core();
    let good = drive(&mut c, T0 + 20_000 * MS, coil_at(Some(Some(true))));
    let s = status(&c);
    let events = line_events(&good);
    let last = events.last().expect("line events");
    assert_eq!(last["diverted"], s.diverted, "{last}");
    assert!(last.get("pushed").is_none(), "no pushers: {last}");
    assert!(events.iter().all(|e| e["quality"] == "good"), "{events:?}");
    assert_eq!((s.out, s.lost, s.pushed), (0, 0, 0), "{s:?}");
    // 20 spawned; a product takes about 3.8 s to the diverter and 3.4 s
    // more to the lane's end.
    assert!(s.diverted >= 10, "{s:?}");
    assert_eq!(s.diverted + s.wip, 20, "{s:?}");
    assert_eq!(
        c.core().lines()[0].model().diverters()[0].diverted(),
        s.diverted,
        "the diverter counts what the line counts"
    );

    // Bad: 5 s for what is on the lane to leave it, then 15 s.
    drive(&mut c, T0 + 25_000 * MS, coil_at(Some(None)));
    let before = status(&c);
    let out = drive(&mut c, T0 + 40_000 * MS, coil_at(Some(None)));
    let s = status(&c);
    assert!(!c.core().lines()[0].model().diverters()[0].fired());
    assert_eq!(s.diverted, before.diverted, "diverted on a bad coil: {s:?}");
    assert!(s.out >= before.out + 12, "{before:?} → {s:?}");
    assert_eq!(s.lost, 0, "{s:?}");
    assert!(
        line_events(&out)
            .iter()
            .all(|e| e["quality"] == "uncertain" && e["reason"] == "coil_not_good"),
        "{:?}",
        line_events(&out)
    );

    // Good and off: the same, and good again.
    let out = drive(&mut c, T0 + 50_000 * MS, coil_at(Some(Some(false))));
    let off = status(&c);
    assert_eq!(off.diverted, s.diverted);
    assert!(off.out >= s.out + 8, "{s:?} → {off:?}");
    assert_eq!(off.lost, 0, "{off:?}");
    assert!(
        line_events(&out)
            .iter()
            .skip(1)
            .all(|e| e["quality"] == "good")
    );
}
