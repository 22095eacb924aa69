//! Reject pushers bound to coil tags (issue 4): what a pusher rejects, and
//! that what it pushed off is counted as pushed, not lost.

use super::fixtures::{self, DT, STEPS_PER_S, Tally, loc};
use super::*;
use crate::config::Line;
use crate::config::Pusher;
use rapier3d::prelude::Vector;

/// Belt speed of the checks, m/s.
const SPEED: f32 = 0.5;

/// Where the pusher stands along the 6 m belt, metres.
const AT: f32 = 3.0;

/// A straight 6 m belt heading east, 0.6 m wide, its surface 0.8 m up, and
/// a 0.2 m cube product of 1 kg.
fn line() -> Line {
    fixtures::line(
        vec![fixtures::belt("belt", 0.6, [0.0, 0.0], &[(6.0, 0.0)])],
        Some(fixtures::cube()),
    )
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

/// [`fixtures::run_with_coils`] on [`model`] for 30 s at most, the
/// coil set from `coil(m, step)` before each step.
fn run(n: usize, mut coil: impl FnMut(&LineModel, u32) -> bool) -> (LineModel, Tally) {
    fixtures::run_with_coils(model(), n, 30, |m, step| {
        let fired = coil(m, step);
        m.set_pusher_at(0, fired);
    })
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
            pushed: 6,
            diverted: 0,
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
            pushed: 0,
            diverted: 0,
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
            pushed: 1,
            diverted: 0,
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
            pushed: 0,
            diverted: 0,
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
