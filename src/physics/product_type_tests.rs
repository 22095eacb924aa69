//! Several product types on a line, and changeovers between them (issue 4:
//! "Product types: size, mass, friction").

use std::path::Path;
use std::time::Duration;

use super::fixtures::{self, DT, loc};
use super::lookahead::Candidate;
use super::*;
use crate::config::Line;
use crate::config::{ProductType, Station, StationCycle, load_str};

fn kind(id: &str, code: i64, size: (f64, f64, f64), mass: f64, friction: f64) -> ProductType {
    ProductType {
        id: loc(id.into()),
        code: loc(code),
        length: size.0,
        width: size.1,
        height: size.2,
        mass,
        friction,
    }
}

/// A 6 m belt, 0.6 m wide, with two types: "small", a 0.2 m cube of 1 kg,
/// and "large", 0.35 m long, 0.3 m wide, 0.3 m high, 3 kg, friction 0.4.
fn line() -> Line {
    let small = kind("small", 1, (0.2, 0.2, 0.2), 1.0, 0.6);
    let large = kind("large", 7, (0.35, 0.3, 0.3), 3.0, 0.4);
    let mut l = fixtures::line(
        vec![fixtures::belt("belt", 0.6, [0.0, 0.0], &[(6.0, 0.0)])],
        Some(fixtures::cube()),
    );
    l.products = vec![small, large];
    l.products_listed = true;
    l
}

fn close(a: f32, b: f64) -> bool {
    (f64::from(a) - b).abs() < 1e-4
}

/// `[[lines.products]]` decodes into every type, in order, with codes that
/// default to the 1-based position; `product` is the first type with the
/// line-level arrival keys; a single `[lines.product]` is one type.
#[test]
fn r4_product_types_decode_and_normalise() {
    let cfg = load_str(
        Path::new("types.toml"),
        r#"
[plant]
name = "t"
[[sources.modbus]]
name = "plc"
address = "127.0.0.1:502"
registers = [
  { tag = "belt.speed", table = "input", address = 0 },
  { tag = "recipe", table = "holding", address = 1 },
]
[[machines]]
id = "belt"
kind = "conveyor"
tags = { speed = "belt.speed", recipe = "recipe" }
[[lines]]
id = "l1"
machines = ["belt"]
spawn_interval = "1500ms"
product_tag = "recipe"
  [[lines.conveyors]]
  id = "main"
  speed_tag = "belt.speed"
  width = 0.5
  segments = [{ length = 4.0 }]
  [[lines.products]]
  id = "small"
  length = 0.1
  width = 0.1
  height = 0.2
  mass = 0.5
  [[lines.products]]
  id = "large"
  code = 12
  length = 0.3
  width = 0.25
  height = 0.3
  mass = 2.0
  friction = 0.3
  [[lines.products]]
  id = "medium"
  length = 0.2
  width = 0.2
  height = 0.2
  mass = 1.0
[[lines]]
id = "l2"
  [[lines.conveyors]]
  id = "main"
  speed_tag = "belt.speed"
  width = 0.5
  segments = [{ length = 4.0 }]
  [lines.product]
  length = 0.1
  width = 0.1
  height = 0.2
  mass = 0.5
  spawn_interval = "2s"
"#,
    )
    .expect("valid");
    let l1 = &cfg.config.lines[0];
    let ids: Vec<(&str, i64)> = l1
        .products
        .iter()
        .map(|p| (p.id.value.as_str(), p.code.value))
        .collect();
    assert_eq!(ids, vec![("small", 1), ("large", 12), ("medium", 3)]);
    assert!(l1.products_listed);
    assert_eq!(
        l1.product_tag.as_ref().map(|t| t.value.as_str()),
        Some("recipe")
    );
    let p = l1.product.as_ref().expect("first type as product");
    assert_eq!((p.length, p.mass), (0.1, 0.5));
    assert_eq!(p.spawn_interval, Some(Duration::from_millis(1500)));
    assert_eq!(l1.products[1].friction, 0.3);
    assert_eq!(l1.product_envelope(), Some((0.3, 0.25, 0.3)));

    let l2 = &cfg.config.lines[1];
    assert!(!l2.products_listed);
    assert_eq!(l2.products.len(), 1);
    assert_eq!(
        (l2.products[0].id.value.as_str(), l2.products[0].code.value),
        ("product", 1)
    );
    assert_eq!(
        l2.product.as_ref().and_then(|p| p.spawn_interval),
        Some(Duration::from_secs(2))
    );

    // The model starts with the first type and knows all three.
    let m = LineModel::new(l1, DT);
    assert_eq!((m.product_type(), m.product_types().len()), (0, 3));
    assert_eq!(m.product_types()[1].spawn_interval, p.spawn_interval);
}

/// After a changeover new products have the new type's size, mass and
/// friction; the ones already on the line keep theirs. An index past the
/// types keeps the type.
#[test]
fn r4_changeover_spawns_the_new_type_and_old_products_keep_theirs() {
    let mut m = LineModel::new(&line(), DT);
    m.set_belt_speed_at(0, 0.5).expect("belt");
    let first = m.spawn_product().expect("small");
    for _ in 0..240 {
        m.step().expect("step");
    }
    m.set_product_type_at(1);
    assert_eq!(m.product_type(), 1);
    m.set_product_type_at(2);
    assert_eq!(m.product_type(), 1, "no type 2: the type stays");
    let second = m.spawn_product().expect("large");
    for _ in 0..240 {
        m.step().expect("step");
    }
    let (a, b) = (
        m.product_size_of(first).expect("a product"),
        m.product_size_of(second).expect("a product"),
    );
    assert!(
        close(a.length, 0.2) && close(a.width, 0.2) && close(a.height, 0.2),
        "{a:?}"
    );
    assert!(
        close(b.length, 0.35) && close(b.width, 0.3) && close(b.height, 0.3),
        "{b:?}"
    );
    // Mass as the type's mass over its box volume (the rounded edges take
    // a little of the box, for every type alike).
    let collider = |h: RigidBodyHandle| &m.world.colliders[m.world.bodies[h].colliders()[0]];
    let density = |h: RigidBodyHandle| collider(h).density();
    assert!(close(density(first), 1.0 / 0.008), "{}", density(first));
    assert!(
        close(density(second), 3.0 / (0.35 * 0.3 * 0.3)),
        "{}",
        density(second)
    );
    let mass = |h: RigidBodyHandle| m.world.bodies[h].mass();
    assert!(
        mass(second) > 2.5 * mass(first),
        "{} {}",
        mass(first),
        mass(second)
    );
    let friction = |h: RigidBodyHandle| collider(h).friction();
    assert_eq!((friction(first), friction(second)), (0.6, 0.4));
    // Each rests on the belt at its own height (centre half its height up).
    let z = |h: RigidBodyHandle| m.world.bodies[h].translation().y;
    assert!((z(first) - 0.9).abs() < 0.01, "{}", z(first));
    assert!((z(second) - 0.95).abs() < 0.01, "{}", z(second));
    // Back to the first type: the next one is small again.
    m.set_product_type_at(0);
    let third = m.spawn_product().expect("small");
    let c = m.product_size_of(third).expect("a product");
    assert!(close(c.length, 0.2), "{c:?}");
}

/// A station holds products of both types where they reach it, closes its
/// gate at each held product's own back, and the queue behind it never
/// passes through; every product leaves, none is lost, and the station
/// runs at its rate.
#[test]
fn r4_station_holds_and_gates_both_types() {
    let mut l = line();
    l.stations.push(Station {
        id: loc("st".into()),
        conveyor: loc("belt".into()),
        position: loc(2.0),
        cycle: StationCycle::Fixed(Duration::from_millis(1500)),
        commissioned: None,
        rate_tag: None,
    });
    let mut m = LineModel::new(&l, DT);
    m.set_belt_speed_at(0, 0.5).expect("belt");
    let (mut spawned, mut out, mut lost) = (0usize, 0usize, 0usize);
    let mut held_seen = [0u32; 2];
    let mut was_held = None;
    for step in 0..(240 * 60) {
        // A changeover every 10 s; a new product whenever the infeed is
        // clear, so a queue stands before the station.
        m.set_product_type_at((step / 2400) % 2);
        if m.infeed_clear() {
            m.spawn_product().expect("product");
            spawned += 1;
        }
        m.step().expect("step");
        let done = m.remove_finished();
        (out, lost) = (out + done.out, lost + done.lost);
        let s = &m.stations()[0];
        let held = s.held.map(|(h, _)| h);
        if let Some(h) = held
            && was_held != Some(h)
        {
            let size = m.product_size_of(h).expect("a product");
            let k = usize::from(close(size.length, 0.35));
            held_seen[k] += 1;
            let at = s.place.along(m.world.bodies[h].translation());
            let at = at.expect("held over the belt");
            // Caught within the catch window past the station.
            assert!(
                (0.0..s.catch_len + 0.01).contains(&at),
                "held {at} m past the station"
            );
            // The gate stands 3 mm inside the held product's own back.
            let gate = m.world.colliders[s.gate].translation();
            let gate_at = s.place.dir.dot(gate - s.place.point);
            let back = at - size.length / 2.0;
            assert!(
                (gate_at - (back + 0.003)).abs() < 1e-3,
                "gate at {gate_at}, product back at {back} (length {})",
                size.length
            );
        }
        was_held = held;
        // Single file: each product stays behind the one in front, by at
        // least (almost) the two half lengths.
        let hs = &m.products;
        for w in hs.windows(2) {
            let (a, b) = (w[0], w[1]);
            let (la, lb) = (
                m.product_size_of(a).map_or(0.0, |z| z.length),
                m.product_size_of(b).map_or(0.0, |z| z.length),
            );
            let (pa, pb) = (
                m.world.bodies[a].translation(),
                m.world.bodies[b].translation(),
            );
            assert!(
                pa.x - pb.x > (la + lb) / 2.0 - 0.01,
                "passed through at step {step}: {pa:?} {pb:?}"
            );
        }
    }
    assert!(
        held_seen[0] >= 5 && held_seen[1] >= 5,
        "both types held: {held_seen:?}"
    );
    assert_eq!(lost, 0);
    assert_eq!(out + m.product_count(), spawned);
    // 60 s at one product per 1.5 s: the station's rate bounds the output,
    // and a fed station keeps close to it (the first product reaches it
    // after about 4 s, and the last ones are still between it and the end).
    assert!((30..=40).contains(&out), "out {out} of {spawned}");
    assert!(m.stations()[0].releases >= out as u64);
}

/// The lookahead's analytical drive keeps a queue of mixed types single
/// file, each product's gap taken from its own length and the one's in
/// front: a forecast from a line that changed over mid-queue loses
/// nothing, lets nothing through the queue, and runs at the station's rate.
#[test]
fn r4_lookahead_queues_mixed_types_by_their_own_lengths() {
    let mut l = line();
    l.stations.push(Station {
        id: loc("st".into()),
        conveyor: loc("belt".into()),
        position: loc(4.0),
        cycle: StationCycle::Fixed(Duration::from_secs(2)),
        commissioned: None,
        rate_tag: None,
    });
    let mut m = LineModel::new(&l, Duration::from_millis(5));
    m.set_belt_speed_at(0, 0.5).expect("belt");
    // 20 s live, changing over every 4 s: a queue of both types stands.
    for step in 0..4000 {
        m.set_product_type_at((step / 800) % 2);
        if m.infeed_clear() {
            m.spawn_product().expect("product");
        }
        m.step().expect("step");
        m.remove_finished();
    }
    let sizes: Vec<f32> = m
        .products
        .iter()
        .filter_map(|h| m.product_size_of(*h).map(|z| z.length))
        .collect();
    assert!(
        sizes.iter().any(|l| close(*l, 0.2)) && sizes.iter().any(|l| close(*l, 0.35)),
        "{sizes:?}"
    );
    let c = Candidate {
        arrival_interval: Some(Duration::from_secs(1)),
        ..Candidate::default()
    };
    let (end, f) = m
        .lookahead_state(&c, Duration::from_secs(60))
        .expect("runs");
    assert_eq!(f.lost, 0, "{f:?}");
    assert_eq!(
        f.out + f.wip_end,
        f.wip_start + f.arrivals - f.infeed_blocked,
        "{f:?}"
    );
    // One release per 2 s: 30 a minute at most, and a fed station close.
    assert!((26.0..=31.0).contains(&f.throughput_per_min), "{f:?}");
    for w in end.products.windows(2) {
        let (a, b) = (w[0], w[1]);
        let la = end.product_size_of(a).map_or(0.0, |z| z.length);
        let lb = end.product_size_of(b).map_or(0.0, |z| z.length);
        let (pa, pb) = (
            end.world.bodies[a].translation(),
            end.world.bodies[b].translation(),
        );
        if pa.y > 0.0 && pb.y > 0.0 {
            assert!(
                pa.x - pb.x > (la + lb) / 2.0 - 0.02,
                "overlap in the forecast: {pa:?} ({la}) {pb:?} ({lb})"
            );
        }
    }
}
