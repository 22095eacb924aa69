//! Diverters bound to coil tags, routing products to a branch conveyor
//! (issue 4): what a diverter sends to its branch, that products leave at
//! the branch's end counted as diverted (not out, not lost), and that the
//! what-if copy carries a diverted product along the branch too.

use std::time::Duration;

use super::fixtures::{self, DT, STEPS_PER_S, Tally, loc};
use super::lookahead::Candidate;
use super::*;
use crate::config::Diverter;
use crate::config::Line;

/// Belt speed of the checks, m/s, on both belts.
const SPEED: f32 = 0.5;

/// Where the diverter stands along the 6 m main belt, metres.
const AT: f32 = 3.0;

/// A straight 6 m main belt heading east, 0.6 m wide, and a 2 m, 0.4 m
/// wide branch heading north from the main belt's north edge at 3 m (the
/// reject lane), listed last; a 0.2 m cube product of 1 kg; the diverter
/// at 3 m.
fn line() -> Line {
    let mut l = fixtures::line(
        vec![
            fixtures::belt("main", 0.6, [0.0, 0.0], &[(6.0, 0.0)]),
            fixtures::belt("lane", 0.4, [f64::from(AT), 0.3], &[(2.0, 90.0)]),
        ],
        Some(fixtures::cube()),
    );
    l.diverters = vec![Diverter {
        id: loc("gate".into()),
        conveyor: loc("main".into()),
        position: loc(f64::from(AT)),
        coil_tag: loc("gate.coil".into()),
        to: loc("lane".into()),
    }];
    l
}

/// The line with both belts running.
fn model() -> LineModel {
    let mut m = LineModel::new(&line(), DT);
    m.set_belt_speed_at(0, SPEED).expect("main");
    m.set_belt_speed_at(1, SPEED).expect("lane");
    m
}

/// [`fixtures::run_with_coils`] on [`model`] for 40 s at most, the
/// coil set from `coil(m, step)` before each step.
fn run(n: usize, mut coil: impl FnMut(&LineModel, u32) -> bool) -> (LineModel, Tally) {
    fixtures::run_with_coils(model(), n, 40, |m, step| {
        let fired = coil(m, step);
        m.set_diverter_at(0, fired);
    })
}

#[test]
fn r4_a_line_has_its_diverters() {
    let mut l = line();
    l.diverters.clear();
    assert!(LineModel::new(&l, DT).diverters().is_empty());
    let m = model();
    assert_eq!(m.diverters().len(), 1);
    let d = &m.diverters()[0];
    assert_eq!(
        (d.id.as_str(), d.coil_tag.as_str(), d.conveyor, d.branch),
        ("gate", "gate.coil", 0, 1)
    );
    assert!(!d.fired());
    // A diverter onto its own conveyor, or onto an unknown one, is not
    // modelled (validation refuses both).
    let mut l = line();
    l.diverters[0].to = loc("main".into());
    assert!(LineModel::new(&l, DT).diverters().is_empty());
    l.diverters[0].to = loc("nowhere".into());
    assert!(LineModel::new(&l, DT).diverters().is_empty());
}

/// A coil held on from the start: every product that reaches the diverter
/// goes onto the lane and leaves at the lane's end; none reaches the main
/// belt's end (although the lane is listed last, the main belt's end stays
/// the line's main outfeed), and none is lost.
#[test]
fn r4_a_diverter_held_fired_sends_every_product_to_the_branch() {
    let mut on_lane = false;
    let (m, tally) = run(5, |m, _| {
        // Seen on the lane while it runs, not only counted at its end.
        on_lane |= m.zone_counts()[1] > 0;
        true
    });
    assert!(on_lane, "no product was ever on the lane");
    assert_eq!(
        tally,
        Tally {
            out: 0,
            lost: 0,
            diverted: 5,
            pushed: 0,
        }
    );
    assert_eq!(m.diverters()[0].diverted(), 5);
}

/// A coil never on: every product rides past the diverter to the main
/// belt's end; none goes onto the lane.
#[test]
fn r4_a_diverter_never_fired_lets_every_product_pass() {
    let (m, tally) = run(5, |m, _| {
        assert_eq!(m.zone_counts()[1], 0, "a product on the lane unfired");
        false
    });
    assert_eq!(
        tally,
        Tally {
            out: 5,
            lost: 0,
            diverted: 0,
            pushed: 0,
        }
    );
    assert_eq!(m.diverters()[0].diverted(), 0);
}

/// The coil fires when the third of five products (1 m apart) is half a
/// product short of the diverter, and drops once that product's centre is
/// on the lane, as a PLC times a divert from a product's position. Exactly
/// that product goes to the lane: four leave the main end, one the lane's.
#[test]
fn r4_firing_for_one_product_diverts_exactly_that_one() {
    let mut fired_at: Option<u32> = None;
    let mut released = false;
    let (m, tally) = run(5, |m, step| {
        let xs = m.product_positions();
        if fired_at.is_none() && xs.len() >= 3 && xs[2].x >= AT - 0.2 {
            fired_at = Some(step);
        }
        if fired_at.is_none() || released {
            return false;
        }
        // The lane's belt starts at y = 0.3; past a product's half width
        // the product is wholly on it.
        if xs.get(2).is_some_and(|p| p.y > 0.3 + 0.1) {
            released = true;
            assert!(
                xs.iter()
                    .enumerate()
                    .all(|(i, p)| i == 2 || p.y.abs() < 0.05),
                "others disturbed: {xs:?}"
            );
            return false;
        }
        true
    });
    assert!(fired_at.is_some() && released, "the divert never happened");
    assert_eq!(
        tally,
        Tally {
            out: 4,
            lost: 0,
            diverted: 1,
            pushed: 0,
        }
    );
    assert_eq!(m.diverters()[0].diverted(), 1);
}

/// A product a diverter sent to the lane is still on its way in the
/// what-if copy (where diverters stay home): the copy carries it along the
/// lane on the analytical belt drive, and counts it as diverted at the
/// lane's end, not as lost or out; the products behind it, past an unfired
/// diverter, go out at the main end.
#[test]
fn r4_the_forecast_carries_a_diverted_product_along_the_branch() {
    let mut m = model();
    m.spawn_product_at(0, f64::from(AT) - 0.5).expect("product");
    m.spawn_product_at(0, 1.0).expect("product");
    m.set_diverter_at(0, true);
    // Until the first product is wholly on the lane.
    for _ in 0..(10 * STEPS_PER_S) {
        m.step().expect("step");
        if m.product_positions()[0].y > 0.45 {
            break;
        }
    }
    let at = m.product_positions();
    assert!(at[0].y > 0.45 && at[1].y.abs() < 0.05, "{at:?}");
    let (end, f) = m
        .lookahead_state(&Candidate::default(), Duration::from_secs(20))
        .expect("forecast runs");
    assert_eq!((f.diverted, f.out, f.lost), (1, 1, 0), "{f:?}");
    assert_eq!(end.diverters()[0].diverted(), 1);
    assert!(
        !end.diverters()[0].fired(),
        "the copy kept the diverter home"
    );
    assert!(m.diverters()[0].fired(), "the model itself is untouched");
}

/// What the lookahead relies on, with a product mid-divert: a clone steps
/// bit-identically to the original.
#[test]
fn r4_a_clone_mid_divert_steps_like_the_original() {
    let mut m = model();
    m.spawn_product_at(0, f64::from(AT) - 0.3).expect("product");
    m.set_diverter_at(0, true);
    for _ in 0..STEPS_PER_S {
        m.step().expect("step");
    }
    let y = m.product_positions()[0].y;
    assert!(y > 0.01 && y < 0.4, "mid-divert: {y}");
    let mut c = m.clone();
    for _ in 0..(3 * STEPS_PER_S) {
        m.step().expect("step");
        c.step().expect("step");
    }
    assert_eq!(m.product_positions(), c.product_positions());
    assert_eq!(m.remove_finished(), c.remove_finished());
}

/// The line's main outfeed is not the last conveyor listed (the branch
/// is): in a forecast, bottles (7 cm) still leave at the main belt's end
/// and are counted out, none lost, as they are in the live model.
#[test]
fn r4_the_forecast_counts_the_main_outfeed_when_a_branch_is_listed_last() {
    let mut l = line();
    l.product = Some(Product {
        length: 0.07,
        width: 0.07,
        height: 0.2,
        mass: 0.5,
        friction: 0.6,
        spawn_interval: None,
        infeed_counter_tag: None,
    });
    let m = LineModel::new(&l, DT);
    let c = Candidate {
        belt_speeds: vec![(0, 1.0), (1, 1.0)],
        arrival_interval: Some(Duration::from_secs(1)),
        ..Candidate::default()
    };
    let f = m
        .lookahead(&c, Duration::from_secs(30))
        .expect("forecast runs");
    assert_eq!((f.lost, f.diverted), (0, 0), "{f:?}");
    // 6 m at 1 m/s: the first arrives after about 6 s.
    assert!(f.out >= 20, "{f:?}");
    assert_eq!(f.out + f.wip_end, f.arrivals - f.infeed_blocked, "{f:?}");
}
