//! The model lays its belts out and places products exactly where the one
//! layout walk (`config::layout`) says, wherever the line is drawn.

use proptest::prelude::*;

use super::fixtures::{self, DT, loc};
use super::*;
use crate::config::layout::tests::unfolded_conveyors;
use crate::config::layout::{Layout, PlanXy};
use crate::config::{Line, PhotoEye};

fn line_of(c: crate::config::Conveyor, eyes: &[f64]) -> Line {
    let mut line = fixtures::line(vec![c], Some(fixtures::product((0.1, 0.1, 0.1), 0.5)));
    line.photo_eyes = eyes
        .iter()
        .enumerate()
        .map(|(k, &position)| PhotoEye {
            id: loc(format!("e{k}")),
            conveyor: loc("c".into()),
            position: loc(position),
            tag: loc(format!("e{k}.blocked")),
        })
        .collect();
    line
}

fn off(p: PlanPoint, q: PlanXy) -> f64 {
    (f64::from(p.x) - q[0]).hypot(f64::from(p.y) - q[1])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every product placed along the belt, every eye and every belt piece
    /// is where the layout walk puts it: exactly (to f32 in the line's own
    /// frame) as offsets, and to f32 at the plan's size as plan positions;
    /// and a placed product's place along the line reads back as the
    /// position it was placed at, across every chord joint.
    #[test]
    fn every_product_placement_agrees_with_the_chord_layout(
        c in unfolded_conveyors(),
        at in proptest::collection::vec(0.0f64..1.0, 1..6),
    ) {
        let layout = Layout::of(&c);
        let length = layout.length();
        let positions: Vec<f64> = at.iter().map(|a| a * length).collect();
        let mut m = LineModel::new(&line_of(c.clone(), &positions), DT);
        prop_assert_eq!(m.frame().origin(), c.origin);
        prop_assert_eq!(m.belt_count(), layout.pieces.len());
        // f32 in the frame: the line's own extent sets the rounding.
        let local_tol = 1e-6 * (1.0 + length);
        let plan_tol = local_tol + 1e-6 * c.origin[0].abs().max(c.origin[1].abs());
        for (s, p) in m.segment_views().iter().zip(&layout.pieces) {
            prop_assert!(off(s.start, p.start) <= plan_tol);
            prop_assert_eq!(s.heading_deg, p.heading);
            prop_assert_eq!(s.length, p.length);
        }
        for (e, &pos) in m.photo_eye_views().iter().zip(&positions) {
            prop_assert!(off(e.at, layout.at(pos).0) <= plan_tol, "eye at {pos}");
        }
        for &pos in &positions {
            let h = m.spawn_product_at(0, pos).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let (want, _) = layout.at(pos);
            let o = m.product_offsets().pop().unwrap_or(PlanPoint { x: f32::NAN, y: 0.0, z: 0.0 });
            let local = [want[0] - c.origin[0], want[1] - c.origin[1]];
            prop_assert!(off(o, local) <= local_tol, "offset {o:?} vs {local:?} at {pos}");
            let p = m.product_positions().pop().unwrap_or(o);
            prop_assert!(off(p, want) <= plan_tol, "plan {p:?} vs {want:?} at {pos}");
            let (ci, along) = m.line_place(h).ok_or_else(|| {
                TestCaseError::fail(format!("no place along the line at {pos} m of {length}"))
            })?;
            prop_assert_eq!(ci, 0);
            prop_assert!((f64::from(along) - pos).abs() <= local_tol, "{along} vs {pos}");
        }
    }
}

/// Issue 9: the demo line drawn at site-grid coordinates (`origin` around
/// [1e5, 1e5], where f32 positions are 8 mm apart) forecast 0/min with jam
/// risk 1.00, since no product could move a step. In its local frame it
/// forecasts exactly what it does at the origin, warm-up and all.
#[test]
fn r9_the_demo_line_far_from_the_origin_forecasts_as_at_the_origin() {
    use super::lookahead::{Candidate, LOOKAHEAD_DT};
    use std::time::Duration;
    let cfg = crate::config::load_file(std::path::Path::new("plant-configs/packaging-line.toml"))
        .expect("the demo config loads");
    let near = cfg.config.lines[0].clone();
    let mut far = near.clone();
    for c in &mut far.conveyors {
        c.origin = [c.origin[0] + 1e5, c.origin[1] + 1e5];
    }
    let base = Candidate {
        belt_speeds: vec![(0, 0.6), (1, 0.6)],
        arrival_interval: Some(Duration::from_secs(1)),
        ..Candidate::default()
    };
    let forecast = |line: &Line| {
        let (warm, _) = LineModel::new(line, LOOKAHEAD_DT)
            .lookahead_state(&base, Duration::from_secs(120))
            .expect("the warm-up runs");
        warm.lookahead(&base, Duration::from_secs(60))
            .expect("the forecast runs")
    };
    let at_origin = forecast(&near);
    assert!(
        at_origin.throughput_per_min >= 50.0 && at_origin.jam_risk < 0.5,
        "{at_origin:?}"
    );
    assert_eq!(forecast(&far), at_origin);
}
