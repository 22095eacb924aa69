//! Reject pushers bound to coil tags (issue 4): what a pusher rejects, and
//! that what it pushed off is counted as pushed, not lost.

use std::time::Duration;

use super::*;
use crate::config::{Conveyor, Loc, Pusher, Segment};

/// 240 Hz, as the other physics checks.
const DT: Duration = Duration::from_nanos(4_166_667);
const STEPS_PER_S: u32 = 240;

/// Belt speed of the checks, m/s.
const SPEED: f32 = 0.5;

/// Where the pusher stands along the 6 m belt, metres.
const AT: f32 = 3.0;

fn loc<T>(v: T) -> Loc<T> {
    Loc::new(v, 0..0)
}

/// A straight 6 m belt heading east, 0.6 m wide, its surface 0.8 m up, and
/// a 0.2 m cube product of 1 kg.
fn line() -> Line {
    Line {
        id: loc("l1".into()),
        name: None,
        machines: Vec::new(),
        conveyors: vec![Conveyor {
            id: loc("belt".into()),
            speed_tag: loc("belt.speed".into()),
            width: loc(0.6),
            height: 0.8,
            origin: [0.0, 0.0],
            segments: vec![Segment {
                length: loc(6.0),
                heading: 0.0,
                curve: None,
            }],
            accumulation_zone: None,
        }],
        product: Some(Product {
            length: 0.2,
            width: 0.2,
            height: 0.2,
            mass: 1.0,
            friction: 0.6,
            spawn_interval: None,
            infeed_counter_tag: None,
        }),
        products: Vec::new(),
        product_tag: None,
        products_listed: false,
        stations: Vec::new(),
        photo_eyes: Vec::new(),
        pushers: Vec::new(),
        diverters: Vec::new(),
        zones: Vec::new(),
        residual_tolerance: None,
        jam_after: None,
    }
}

fn pusher() -> Pusher {
    Pusher {
        id: loc("reject".into()),
        conveyor: loc("belt".into()),
        position: loc(f64::from(AT)),
        coil_tag: loc("reject.coil".into()),
    }
}

/// The line with the pusher, belt running.
fn model() -> LineModel {
    let mut l = line();
    l.pushers.push(pusher());
    let mut m = LineModel::new(&l, DT);
    m.set_belt_speed_at(0, SPEED).expect("belt");
    m
}

/// What a run removed, summed over every step.
#[derive(Debug, Default, PartialEq, Eq)]
struct Tally {
    out: usize,
    lost: usize,
    pushed: usize,
}

impl Tally {
    fn add(&mut self, f: Finished) {
        assert_eq!(f.diverted, 0, "a line without diverters diverted");
        self.out += f.out;
        self.lost += f.lost;
        self.pushed += f.pushed;
    }
}

/// Spawns `n` products at the belt's start 2 s apart (1 m at 0.5 m/s) and
/// runs until every one is gone or 30 s have passed, calling `coil(m,
/// step)` before each step to set the coil, and removing finished products
/// after each.
fn run(n: usize, mut coil: impl FnMut(&LineModel, u32) -> bool) -> (LineModel, Tally) {
    let mut m = model();
    let mut tally = Tally::default();
    let mut spawned = 0;
    for step in 0..(30 * STEPS_PER_S) {
        if spawned < n && step % (2 * STEPS_PER_S) == 0 {
            m.spawn_product().expect("product");
            spawned += 1;
        }
        let fired = coil(&m, step);
        m.set_pusher_at(0, fired);
        m.step().expect("step");
        tally.add(m.remove_finished());
        if spawned == n && m.product_count() == 0 {
            break;
        }
    }
    assert_eq!(spawned, n, "every product spawned");
    assert_eq!(m.product_count(), 0, "products left on the line");
    (m, tally)
}

#[test]
fn r4_a_line_without_pushers_has_none() {
    let m = LineModel::new(&line(), DT);
    assert!(m.pushers().is_empty());
    let m = model();
    assert_eq!(m.pushers().len(), 1);
    assert_eq!(m.pushers()[0].coil_tag, "reject.coil");
    assert!(!m.pushers()[0].fired() && !m.pushers()[0].extended());
}

/// A coil held on from the start: the pusher keeps stroking and every
/// product that reaches it goes off the belt into the reject bin; none
/// reaches the end, and none is counted lost.
#[test]
fn r4_a_pusher_held_fired_rejects_every_product() {
    let (m, tally) = run(6, |_, _| true);
    assert_eq!(
        tally,
        Tally {
            out: 0,
            lost: 0,
            pushed: 6
        }
    );
    assert_eq!(m.pushers()[0].pushed(), 6);
}

/// A coil never on: the paddle stays home and every product rides past it
/// to the end.
#[test]
fn r4_a_pusher_never_fired_lets_every_product_pass() {
    let (m, tally) = run(6, |m, _| {
        assert!(!m.pushers()[0].extended(), "the paddle left home unfired");
        false
    });
    assert_eq!(
        tally,
        Tally {
            out: 6,
            lost: 0,
            pushed: 0
        }
    );
    assert_eq!(m.pushers()[0].pushed(), 0);
}

/// The coil fires once, when the third of five products (1 m apart) is
/// half a product short of the pusher, for one stroke (the belt's width
/// plus the clearance at the stroke speed, with a step to spare), as a PLC
/// times a reject from the product's position. Exactly that product goes:
/// right after the stroke it is off the belt's far (north) side while the
/// others are on the centre line, and in the end four leave the end and
/// one is pushed.
#[test]
fn r4_firing_for_one_product_removes_exactly_that_one() {
    let stroke_s = (0.6 + PUSHER_CLEARANCE) / PUSHER_STROKE_SPEED;
    let stroke_steps = (stroke_s * STEPS_PER_S as f32).ceil() as u32 + 1;
    let mut fired_at: Option<u32> = None;
    let mut checked = false;
    let (m, tally) = run(5, |m, step| {
        let xs = m.product_positions();
        if fired_at.is_none() && xs.len() == 3 && xs[2].x >= AT - 0.1 {
            fired_at = Some(step);
        }
        let Some(at) = fired_at else { return false };
        if step == at + stroke_steps + 1 && !checked {
            checked = true;
            assert_eq!(xs.len(), 3, "{xs:?}");
            assert!(xs[2].y > 0.3 + 0.1, "third product not off: {xs:?}");
            assert!(
                xs[0].y.abs() < 0.05 && xs[1].y.abs() < 0.05,
                "others disturbed: {xs:?}"
            );
        }
        step < at + stroke_steps
    });
    assert!(fired_at.is_some() && checked, "the fire never happened");
    assert_eq!(
        tally,
        Tally {
            out: 4,
            lost: 0,
            pushed: 1
        }
    );
    assert_eq!(m.pushers()[0].pushed(), 1);
}

/// A product knocked off the belt elsewhere is still lost, not pushed: the
/// pusher only claims what it put off within its window.
#[test]
fn r4_a_product_lost_away_from_the_pusher_is_lost() {
    let mut m = model();
    m.set_pusher_at(0, true);
    // On a 0.6 m belt, a product whose centre is 0.45 m off the centre line
    // at 1 m has nothing under it.
    let h = m.spawn_product_at(0, 1.0).expect("product");
    let pos = m.world.bodies[h].translation() + Vector::new(0.0, 0.0, -0.45);
    m.world.bodies[h].set_translation(pos, true);
    let mut tally = Tally::default();
    for _ in 0..(2 * STEPS_PER_S) {
        m.step().expect("step");
        tally.add(m.remove_finished());
    }
    assert_eq!(
        tally,
        Tally {
            out: 0,
            lost: 1,
            pushed: 0
        }
    );
    assert_eq!(m.pushers()[0].pushed(), 0);
}

/// What the lookahead relies on, with a pusher mid-stroke: a clone steps
/// bit-identically to the original.
#[test]
fn r4_a_clone_with_a_stroking_pusher_steps_like_the_original() {
    let mut m = model();
    m.spawn_product_at(0, f64::from(AT) - 0.3).expect("product");
    m.set_pusher_at(0, true);
    for _ in 0..(STEPS_PER_S / 4) {
        m.step().expect("step");
    }
    assert!(m.pushers()[0].extended(), "mid-stroke");
    let mut c = m.clone();
    for _ in 0..STEPS_PER_S {
        m.step().expect("step");
        c.step().expect("step");
    }
    assert_eq!(m.product_positions(), c.product_positions());
    assert_eq!(m.remove_finished(), c.remove_finished());
}
