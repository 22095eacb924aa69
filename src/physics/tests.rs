//! Analytical and determinism checks of the line model (issue 4).

use std::time::Duration;

use super::fixtures::{self, DT, loc};
use super::*;
use crate::config::Line;
use crate::config::Segment;
use rapier3d::prelude::Vector;

/// A line with one 0.6 m wide conveyor made of `(length, heading)`
/// segments and a 0.2 × 0.2 × 0.2 m, 1 kg product.
fn line(segments: &[(f64, f64)]) -> Line {
    fixtures::line(
        vec![fixtures::belt("belt", 0.6, [0.0, 0.0], segments)],
        Some(fixtures::cube()),
    )
}

/// The issue's check "transit time equals length divided by speed, within
/// 2 %". The product starts with its back edge on the belt's start (centre
/// at L/2 = 0.1 m) and arrives when its centre crosses the end (5 m), so it
/// travels 5 − 0.1 = 4.9 m; at 0.5 m/s that takes 9.8 s. The time includes
/// the product's start from rest on the moving belt: that is what a
/// photo-eye at the end would see.
#[test]
fn r4_transit_time_is_length_over_speed() {
    let mut m = LineModel::new(&line(&[(5.0, 0.0)]), DT);
    m.set_belt_speed("belt", 0.5).expect("belt");
    m.spawn_product().expect("product");
    let start = m.product_positions()[0];
    assert!((start.x - 0.1).abs() < 1e-6, "{start:?}");
    let dt = m.world.integration_parameters.dt;
    let mut steps = 0u32;
    while m.product_positions()[0].x < 5.0 {
        m.step().expect("step");
        steps += 1;
        assert!(
            steps < 240 * 30,
            "product never arrived: {:?}",
            m.product_positions()
        );
    }
    let measured = steps as f32 * dt;
    let expected = (5.0 - 0.1) / 0.5;
    let error = (measured - expected) / expected;
    let p = m.product_positions()[0];
    eprintln!(
        "transit {measured:.4} s, expected {expected} s, error {:.3} %",
        error * 100.0
    );
    assert!(error.abs() < 0.02, "transit {measured} s vs {expected} s");
    // It rode the belt, not tumbled along it.
    assert!(p.y.abs() < 0.01 && (p.z - 0.9).abs() < 0.01, "{p:?}");
}

#[test]
fn r4_product_turns_onto_the_next_segment() {
    // 3 m east, then 3 m north.
    let mut m = LineModel::new(&line(&[(3.0, 0.0), (3.0, 90.0)]), DT);
    assert_eq!(m.belt_count(), 2);
    m.set_belt_speed("belt", 0.5).expect("belt");
    m.spawn_product().expect("product");
    for _ in 0..(240 * 9) {
        m.step().expect("step");
    }
    let p = m.product_positions()[0];
    // After 9 s at 0.5 m/s (4.5 m of belt) it is well into the second
    // segment: near x = 3, north of the corner, still on the belt.
    assert!((p.x - 3.0).abs() < 0.3, "{p:?}");
    assert!(p.y > 0.5 && p.y < 3.0, "{p:?}");
    assert!((p.z - 0.9).abs() < 0.02, "fell off: {p:?}");
}

#[test]
fn r4_stopped_belt_holds_and_reverse_belt_runs_back() {
    let mut m = LineModel::new(&line(&[(5.0, 0.0)]), DT);
    m.spawn_product().expect("product");
    for _ in 0..240 {
        m.step().expect("step");
    }
    let p = m.product_positions()[0];
    assert!((p.x - 0.1).abs() < 1e-3, "moved on a stopped belt: {p:?}");
    m.set_belt_speed_at(0, -0.5).expect("belt");
    for _ in 0..240 {
        m.step().expect("step");
    }
    assert!(m.product_positions()[0].x < p.x - 0.3);
}

#[test]
fn r4_same_inputs_give_bit_identical_positions() {
    let run = || {
        let mut l = line(&[(4.0, 0.0), (2.0, 45.0)]);
        if let Some(p) = l.product.as_mut() {
            p.spawn_interval = Some(Duration::from_millis(700));
        }
        let mut m = LineModel::new(&l, DT);
        for i in 0..(240 * 6) {
            // A speed that changes over time, as a measured tag would.
            let speed = 0.4 + 0.1 * ((i / 240) % 3) as f32;
            m.set_belt_speed_at(0, speed).expect("belt");
            m.step().expect("step");
        }
        m.product_positions()
            .iter()
            .flat_map(|p| [p.x.to_bits(), p.y.to_bits(), p.z.to_bits()])
            .collect::<Vec<u32>>()
    };
    let a = run();
    assert_eq!(a.len(), 3 * 9, "one product per 700 ms over 6 s");
    assert_eq!(a, run());
}

#[test]
fn unknown_conveyor_and_bad_speed_are_errors() {
    let mut m = LineModel::new(&line(&[(1.0, 0.0)]), DT);
    assert_eq!(
        m.set_belt_speed("nope", 1.0),
        Err(PhysicsError::UnknownConveyor("nope".into()))
    );
    assert_eq!(
        m.set_belt_speed_at(0, f32::NAN).map_err(|e| e.to_string()),
        Err("belt speed NaN is not a finite number".into())
    );
}

/// The config shape end to end: defaults filled in, segments chained, and
/// the spawn interval counted in steps.
#[test]
fn model_builds_from_a_plant_file() {
    let cfg = crate::config::load_str(
        std::path::Path::new("line.toml"),
        r#"
[plant]
name = "p"
[[sources.modbus]]
name = "plc"
address = "127.0.0.1:502"
registers = [{ tag = "belt.speed", table = "input", address = 0 }]
[[machines]]
id = "belt"
kind = "conveyor"
tags = { speed = "belt.speed" }
[[lines]]
id = "l1"
machines = ["belt"]
  [[lines.conveyors]]
  id = "main"
  speed_tag = "belt.speed"
  width = 0.5
  segments = [{ length = 2.0 }, { length = 1.0, heading = 90 }]
  [lines.product]
  length = 0.1
  width = 0.1
  height = 0.2
  mass = 0.5
  spawn_interval = "1s"
"#,
    )
    .expect("valid");
    let line = &cfg.config.lines[0];
    let c = &line.conveyors[0];
    assert_eq!(
        (c.height, c.origin, c.segments[0].heading),
        (0.8, [0.0, 0.0], 0.0)
    );
    assert_eq!(line.product.as_ref().map(|p| p.friction), Some(0.6));

    let mut m = LineModel::new(line, Duration::from_millis(5));
    assert_eq!(m.belt_count(), 2);
    assert_eq!(m.conveyors()[0].speed_tag, "belt.speed");
    // Spawns at step 0, 200 and 400: three products by 2.005 s.
    for _ in 0..401 {
        m.step().expect("step");
    }
    assert_eq!(m.elapsed(), Duration::from_millis(2005));
    assert_eq!(m.product_positions().len(), 3);
}

/// rapier orders a contact pair by insertion, so a product that exists
/// before its belt is the pair's first collider and the hook takes its other
/// branch: the belt must still push it forwards.
#[test]
fn belt_pushes_a_product_inserted_before_it() {
    use rapier3d::prelude::{ActiveHooks, ColliderBuilder, RigidBodyBuilder};
    let mut world = PhysicsWorld::new();
    world.integration_parameters.dt = 1.0 / 240.0;
    let body = RigidBodyBuilder::dynamic()
        .translation(Vector::new(0.5, 0.102, 0.0))
        .can_sleep(false);
    let (product, _) = world.insert(body, ColliderBuilder::cuboid(0.1, 0.1, 0.1));
    let belt = ColliderBuilder::cuboid(2.0, 0.025, 0.3)
        .translation(Vector::new(1.0, -0.025, 0.0))
        .active_hooks(ActiveHooks::MODIFY_SOLVER_CONTACTS)
        .user_data(1);
    world.insert_collider(belt, None);
    let hooks = BeltHooks {
        segments: vec![(0, Vector::X, Vector::new(-1.0, 0.0, 0.0))],
        speeds: vec![0.5],
        ..BeltHooks::default()
    };
    for _ in 0..240 {
        world.step_with_events(&hooks, &());
    }
    let x = world.bodies[product].translation().x;
    // 1 s at 0.5 m/s, less the start from rest.
    assert!(x > 0.9 && x < 1.01, "x = {x}");
}

/// A product that rides off the end is counted out and its body removed; the
/// infeed is occupied right after a spawn and clear once the product moved
/// on.
#[test]
fn r4_products_leave_the_end_and_clear_the_infeed() {
    let mut m = LineModel::new(&line(&[(1.0, 0.0)]), DT);
    assert!(m.infeed_clear(), "empty line");
    m.set_belt_speed("belt", 0.5).expect("belt");
    m.spawn_product().expect("product");
    assert!(!m.infeed_clear(), "product still on the spawn spot");
    let mut out = 0;
    for step in 0..(240 * 4) {
        m.step().expect("step");
        if step == 240 {
            assert!(m.infeed_clear(), "0.5 m on, the infeed is free");
        }
        let done = m.remove_finished();
        assert_eq!(done.lost, 0);
        out += done.out;
    }
    assert_eq!((out, m.product_count()), (1, 0));
    assert_eq!(m.world.bodies.len(), 0, "body removed");
}

/// A starved station holds its product for the whole cycle, exactly where
/// it caught it, then lets it ride on; a second product placed behind it
/// queues against it without passing through, and, being queued at the
/// release, is released one cycle after the first (the station's period).
#[test]
fn r4_station_holds_for_its_cycle_and_products_queue() {
    use crate::config::{Station, StationCycle};
    let mut l = line(&[(5.0, 0.0)]);
    l.stations.push(Station {
        id: loc("st".into()),
        conveyor: loc("belt".into()),
        position: loc(1.0),
        cycle: StationCycle::Fixed(Duration::from_secs(3)),
        commissioned: None,
        rate_tag: None,
    });
    let mut m = LineModel::new(&l, DT);
    m.set_belt_speed("belt", 0.5).expect("belt");
    m.spawn_product().expect("product");
    let mut caught_at = None;
    let mut released_at = None;
    let mut releases = Vec::new();
    let mut was_holding = false;
    let mut spawned_second = false;
    for step in 0..(240 * 10) {
        m.step().expect("step");
        let holding = m.stations()[0].holding();
        if was_holding && !holding {
            releases.push(step);
        }
        was_holding = holding;
        if holding && caught_at.is_none() {
            caught_at = Some(step);
            let x = m.product_positions()[0].x;
            assert!((x - 1.0).abs() < 0.01, "caught at {x}");
        }
        if caught_at.is_some() && !holding && released_at.is_none() {
            released_at = Some(step);
        }
        // Once the first is held and the infeed is clear, a second one.
        if holding && !spawned_second && m.infeed_clear() {
            m.spawn_product().expect("product");
            spawned_second = true;
        }
        let xs = m.product_positions();
        if xs.len() == 2 {
            assert!(xs[0].x - xs[1].x > 0.19, "passed through: {xs:?}");
        }
    }
    let held = released_at.zip(caught_at).map(|(r, c)| r - c);
    // 3 s at 240 Hz, to the step.
    assert_eq!(held, Some(720), "held {held:?} steps");
    assert!(spawned_second);
    assert_eq!(releases.len(), 2, "{releases:?}");
    assert_eq!(releases[1] - releases[0], 720, "{releases:?}");
}

/// What the lookahead relies on: a clone steps bit-identically to the
/// original, from the middle of a run with contacts and a held product.
#[test]
fn r4_a_clone_steps_exactly_like_the_original() {
    let mut l = line(&[(4.0, 0.0), (2.0, 45.0)]);
    if let Some(p) = l.product.as_mut() {
        p.spawn_interval = Some(Duration::from_millis(500));
    }
    let mut a = LineModel::new(&l, DT);
    a.set_belt_speed_at(0, 0.5).expect("belt");
    for _ in 0..(240 * 3) {
        a.step().expect("step");
    }
    let mut b = a.clone();
    for _ in 0..(240 * 3) {
        a.step().expect("step");
        b.step().expect("step");
    }
    let bits = |m: &LineModel| {
        m.product_positions()
            .iter()
            .flat_map(|p| [p.x.to_bits(), p.y.to_bits(), p.z.to_bits()])
            .collect::<Vec<u32>>()
    };
    // One spawn every 119 steps (500 ms / dt, rounded down) over 1440.
    assert_eq!(a.product_count(), 13);
    assert_eq!(bits(&a), bits(&b));
}

#[test]
fn r4_slip_slows_the_surface_and_an_obstacle_jams_the_belt() {
    let run = |slip: f32| {
        let mut m = LineModel::new(&line(&[(5.0, 0.0)]), DT);
        m.set_belt_speed_at(0, 0.5).expect("belt");
        m.set_belt_slip_at(0, slip).expect("slip");
        m.spawn_product_at(0, 1.0).expect("product");
        for _ in 0..(240 * 4) {
            m.step().expect("step");
        }
        m.product_positions()[0].x - 1.0
    };
    let (full, slipping) = (run(0.0), run(0.5));
    assert!((full - 2.0).abs() < 0.1, "{full}");
    assert!((slipping - 1.0).abs() < 0.1, "{slipping}");
    assert!(
        LineModel::new(&line(&[(5.0, 0.0)]), DT)
            .set_belt_slip_at(0, 1.5)
            .is_err()
    );

    let mut m = LineModel::new(&line(&[(5.0, 0.0)]), DT);
    m.set_belt_speed_at(0, 0.5).expect("belt");
    let wall = m.block_at(0, 2.0).expect("wall");
    m.spawn_product_at(0, 1.0).expect("product");
    for _ in 0..(240 * 4) {
        m.step().expect("step");
    }
    let x = m.product_positions()[0].x;
    // Stopped with its front face (0.1 m ahead of its centre) on the wall.
    assert!((x - 1.89).abs() < 0.03, "{x}");
    m.unblock(wall);
    for _ in 0..(240 * 2) {
        m.step().expect("step");
    }
    assert!(m.product_positions()[0].x > 2.5);
}

/// A curved belt: 2 m east, a 90° left curve of 0.6 m radius, 1 m north.
/// The product follows the arc (its centre stays within 5 cm of the
/// centre-line radius round the curve's centre, (2.0, 0.6)), leaves the
/// curve heading north on the centre line, and its transit over the whole
/// centre line (3 m + 0.6 π/2 m) at 0.5 m/s is length over speed within
/// 3 %. (Measured: 2.7 % slow, against 0.5 % on a straight belt: the
/// 0.2 m product spans two or three 8 cm chords at a time, each driving it
/// along its own direction, and rides over twelve chord seams. With 15°
/// chords it is 2.1 %, at twice the deviation from the arc.)
#[test]
fn r4_a_product_follows_a_curve() {
    let mut l = line(&[(2.0, 0.0)]);
    let c = &mut l.conveyors[0];
    c.segments.push(Segment {
        length: loc(0.6 * std::f64::consts::FRAC_PI_2),
        heading: 0.0,
        curve: Some(crate::config::Curve {
            radius: 0.6,
            turn: 90.0,
        }),
    });
    c.segments.push(Segment {
        length: loc(1.0),
        heading: 90.0,
        curve: None,
    });
    let mut m = LineModel::new(&l, DT);
    // 12 chords of 7.5°, between the two straight segments.
    assert_eq!(m.belt_count(), 14);
    m.set_belt_speed("belt", 0.5).expect("belt");
    m.spawn_product().expect("product");
    let dt = m.world.integration_parameters.dt;
    let mut steps = 0u32;
    let mut worst: f32 = 0.0;
    loop {
        let p = m.product_positions()[0];
        if p.y >= 1.6 {
            break;
        }
        if p.x > 2.0 && p.y < 0.6 {
            let r = ((p.x - 2.0).powi(2) + (p.y - 0.6).powi(2)).sqrt();
            worst = worst.max((r - 0.6).abs());
        }
        m.step().expect("step");
        steps += 1;
        assert!(steps < 240 * 30, "product never arrived: {p:?}");
    }
    assert!(worst < 0.05, "{worst} m off the curve's centre line");
    let p = m.product_positions()[0];
    assert!(
        (p.x - 2.6).abs() < 0.02,
        "left the curve off the line: {p:?}"
    );
    let measured = steps as f32 * dt;
    let expected = ((3.0 + 0.6 * std::f64::consts::FRAC_PI_2 - 0.1) / 0.5) as f32;
    let error = (measured - expected) / expected;
    assert!(error.abs() < 0.03, "transit {measured} s vs {expected} s");
}

/// A 6 m belt blocked at 5.5 m, a 0.2 m product arriving every second at
/// 0.5 m/s for 27 s, then 3 s to settle: where the products stand, and the
/// smallest gap between two neighbours (centre distance less a product
/// length).
fn accumulate(zone: Option<f64>) -> (LineModel, Obstacle, Vec<f32>, f32) {
    let mut l = line(&[(6.0, 0.0)]);
    l.conveyors[0].accumulation_zone = zone.map(loc);
    let mut m = LineModel::new(&l, DT);
    m.set_belt_speed("belt", 0.5).expect("belt");
    let wall = m.block_at(0, 5.5).expect("wall");
    for k in 0..(240 * 30) {
        if k % 240 == 0 && k < 240 * 27 && m.infeed_clear() {
            m.spawn_product().expect("product");
        }
        m.step().expect("step");
    }
    // The first zone may hold a second product, dropped in by the infeed
    // while the zone was already stopped: the spacing starts past it.
    let xs: Vec<f32> = m
        .product_positions()
        .iter()
        .map(|p| p.x)
        .filter(|x| *x > 0.5)
        .collect();
    let gap = xs
        .windows(2)
        .map(|w| w[0] - w[1] - 0.2)
        .fold(f32::INFINITY, f32::min);
    (m, wall, xs, gap)
}

/// A zero-pressure accumulation conveyor (0.5 m zones) queues one product
/// per zone without contact, where a plain belt packs them nose to tail
/// and so holds more.
#[test]
fn r4_an_accumulation_conveyor_queues_one_product_per_zone() {
    let (_, _, plain, plain_gap) = accumulate(None);
    assert!(plain_gap < 0.01, "plain belt: gap {plain_gap} in {plain:?}");
    let (mut m, wall, zpa, zpa_gap) = accumulate(Some(0.5));
    // 0.5 m zones, 0.2 m products: at least 0.3 m apart, less the last
    // step's travel and contact slack.
    assert!(zpa_gap > 0.25, "ZPA: gap {zpa_gap} in {zpa:?}");
    // Each standing product's front is at its zone's end (its eye).
    for x in zpa.iter().filter(|x| **x < 5.0) {
        let front = x + 0.1;
        let into = front - (front / 0.5).floor() * 0.5;
        assert!(
            !(0.05..=0.45).contains(&into),
            "front {front} mid-zone in {zpa:?}"
        );
    }
    assert!(zpa.len() >= 9, "{zpa:?}");
    assert!(plain.len() > zpa.len(), "{plain:?} vs {zpa:?}");
    // Cleared, the zones release front first and the queue leaves.
    m.unblock(wall);
    let mut out = 0;
    for _ in 0..(240 * 20) {
        m.step().expect("step");
        out += m.remove_finished().out;
    }
    assert_eq!(m.product_count(), 0, "{:?}", m.product_positions());
    assert!(out > zpa.len(), "{out}");
}
