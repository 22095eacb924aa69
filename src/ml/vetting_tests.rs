use super::*;
use crate::config::layout::Layout;
use crate::physics::LineModel;

fn belt(i: usize, min: f64, max: f64, step: Option<f64>) -> Variable {
    Variable {
        tag: format!("belt{i}.speed"),
        knob: Knob::Belt(i),
        min,
        max,
        max_step: step,
    }
}

#[test]
fn r11_legalise_clamps_to_the_bounds_and_to_max_step_from_the_current_value() {
    let v = belt(0, 0.1, 1.2, Some(0.1));
    // Within the step: as proposed.
    assert_eq!(legalise(&v, 0.6, 0.65), 0.65);
    // Beyond the step either way: one step.
    assert!((legalise(&v, 0.6, 0.95) - 0.7).abs() < 1e-12);
    assert!((legalise(&v, 0.6, 0.2) - 0.5).abs() < 1e-12);
    // The bound is nearer than the step.
    assert_eq!(legalise(&v, 1.15, 2.0), 1.2);
    assert_eq!(legalise(&v, 0.12, -1.0), 0.1);
    // Without max_step, only the bounds.
    let free = belt(0, 0.1, 1.2, None);
    assert_eq!(legalise(&free, 0.6, 1.1), 1.1);
    assert_eq!(legalise(&free, 0.6, 5.0), 1.2);
    // Current far outside the bounds: the bounds win, the step check vetoes.
    let x = legalise(&v, 1.5, 1.5);
    assert_eq!(x, 1.2);
    assert_eq!(check(&v, 1.5, x), Err(Veto::Step));
}

#[test]
fn r11_check_vetoes_values_outside_the_bounds_or_beyond_one_step() {
    let v = belt(0, 0.1, 1.2, Some(0.1));
    assert_eq!(check(&v, 0.6, 0.7), Ok(()));
    assert_eq!(check(&v, 0.6, 0.75), Err(Veto::Step));
    assert_eq!(check(&v, 1.2, 1.3), Err(Veto::Bounds));
    assert_eq!(check(&v, 0.1, 0.05), Err(Veto::Bounds));
    // An f32 read back is within the slack.
    assert_eq!(check(&v, 0.6, f64::from(1.2_f32)), Err(Veto::Step));
    assert_eq!(check(&v, 1.1, f64::from(1.2_f32)), Ok(()));
}

#[test]
fn r11_candidates_are_the_baseline_the_legal_proposal_and_neighbours_inside_the_bounds() {
    let vars = [belt(0, 0.1, 1.2, Some(0.1)), belt(1, 0.1, 0.7, Some(0.1))];
    let c = candidates(&vars, &[0.6, 0.7], &[0.95, 0.4], 2);
    let got: Vec<(Origin, Vec<f64>)> = c
        .trials
        .iter()
        .map(|t| {
            let r = t.values.iter().map(|x| (x * 1000.0).round() / 1000.0);
            (t.origin, r.collect())
        })
        .collect();
    assert_eq!(
        got,
        [
            (Origin::Baseline, vec![0.6, 0.7]),
            (Origin::Model, vec![0.7, 0.6]),
            (Origin::Neighbour, vec![0.55, 0.7]),
            (Origin::Neighbour, vec![0.65, 0.7]),
            (Origin::Neighbour, vec![0.5, 0.7]),
            (Origin::Neighbour, vec![0.7, 0.7]),
            (Origin::Neighbour, vec![0.6, 0.65]),
            (Origin::Neighbour, vec![0.6, 0.6]),
        ]
    );
    // 0.75 and 0.8 on the second belt are above its 0.7 maximum.
    assert_eq!(c.vetoed.get(Veto::Bounds), 2);
    assert_eq!(c.vetoed.total(), 2);
}

#[test]
fn r11_a_proposal_equal_to_the_current_setpoints_is_not_tried_twice() {
    let vars = [belt(0, 0.1, 1.2, Some(0.1))];
    let c = candidates(&vars, &[0.6], &[0.6], 1);
    let origins: Vec<Origin> = c.trials.iter().map(|t| t.origin).collect();
    assert_eq!(
        origins,
        [Origin::Baseline, Origin::Neighbour, Origin::Neighbour]
    );
    // A proposal one step up is the +1 neighbour: tried once, as the model's.
    let c = candidates(&vars, &[0.6], &[0.9], 1);
    let origins: Vec<Origin> = c.trials.iter().map(|t| t.origin).collect();
    assert_eq!(
        origins,
        [Origin::Baseline, Origin::Model, Origin::Neighbour]
    );
}

/// The demo line warmed up for a minute at 0.6 m/s and 60 bottles/min.
fn warm_demo() -> (LineModel, Rules, crate::config::LoadedConfig) {
    let text = include_str!("../../plant-configs/packaging-line.toml");
    let cfg = crate::config::load_str(std::path::Path::new("packaging-line.toml"), text)
        .expect("demo config is valid");
    let line = &cfg.config.lines[0];
    let rules = Rules {
        horizon: Duration::from_secs(60),
        max_jam_risk: 0.5,
        energy_weight: 0.0,
        min_gain: 1.0,
        arrival_interval: Some(Duration::from_secs(1)),
        belt_lengths: line
            .conveyors
            .iter()
            .map(|c| Layout::of(c).length())
            .collect(),
    };
    let nominal = Candidate {
        belt_speeds: vec![(0, 0.6), (1, 0.6)],
        arrival_interval: rules.arrival_interval,
        ..Candidate::default()
    };
    let (warm, _) = LineModel::new(line, Duration::from_millis(5))
        .lookahead_state(&nominal, Duration::from_secs(60))
        .expect("warm-up runs");
    (warm, rules, cfg)
}

#[test]
fn r11_a_candidate_that_throws_bottles_off_the_corner_is_vetoed_lost_product() {
    let (line, rules, _) = warm_demo();
    // The outfeed (with its 90° corner) at 0.95 m/s loses bottles; the
    // bounds and step allow it here so that only the physics can say no.
    let vars = [belt(1, 0.1, 1.2, None)];
    let c = Candidates {
        trials: vec![
            Trial {
                origin: Origin::Baseline,
                values: vec![0.6],
            },
            Trial {
                origin: Origin::Model,
                values: vec![0.95],
            },
        ],
        vetoed: Vetoes::default(),
        scales: vec![1.0],
    };
    let round = vet(&line, &vars, &c, &rules).expect("forecasts run");
    assert_eq!(round.baseline.forecast.lost, 0, "{round:?}");
    assert_eq!(round.vetoed.get(Veto::LostProduct), 1, "{round:?}");
    assert_eq!((round.tried, round.passed), (1, 0));
    assert!(round.best.is_none());
    assert!(round.gain().is_none());
}

#[test]
fn r11_the_best_vetted_candidate_beats_the_baseline_and_slower_belts_save_energy() {
    let (line, mut rules, _) = warm_demo();
    let vars = [belt(0, 0.1, 1.2, Some(0.1)), belt(1, 0.1, 1.2, Some(0.1))];
    // At 60 arrivals/min the line keeps up at 0.6 m/s: no belt speed gives
    // more throughput, so nothing beats the baseline by a bottle a minute.
    let c = candidates(&vars, &[0.6, 0.6], &[0.6, 0.6], 1);
    let round = vet(&line, &vars, &c, &rules).expect("forecasts run");
    assert_eq!(round.tried, 4);
    assert!(round.best.is_none(), "{round:?}");
    assert_eq!(round.vetoed.get(Veto::NoGain), 4, "{round:?}");
    // With energy in the objective, the same throughput at a slower belt
    // is a gain: the proposal slows a belt.
    rules.energy_weight = 5.0;
    rules.min_gain = 0.5;
    let round = vet(&line, &vars, &c, &rules).expect("forecasts run");
    let (origin, best) = round.best.clone().expect("a proposal");
    assert_eq!(origin, Origin::Neighbour);
    assert!(best.values.iter().sum::<f64>() < 1.2 - 0.05, "{best:?}");
    assert!(best.energy < round.baseline.energy);
    assert!(round.gain().expect("gain") >= 0.5);
    assert_eq!(best.forecast.lost, 0);
}

/// A station that runs slower than its setpoint (a worn filler: its
/// measured rate says 1.25 × its cycle setpoint) is forecast at the scaled
/// cycle: setpoint 0.8 s at scale 1.25 forecasts as a 1.0 s cycle does,
/// and slower than 0.8 s at scale 1.
#[test]
fn r12_a_station_variable_is_forecast_at_its_setpoint_times_its_scale() {
    let (line, mut rules, _) = warm_demo();
    rules.arrival_interval = Some(Duration::from_millis(700));
    let filler = Variable {
        tag: "filler.cycle_sp".into(),
        knob: Knob::Station(0),
        min: 0.5,
        max: 1.5,
        max_step: None,
    };
    let round = |value: f64, scale: f64| {
        let c = Candidates {
            trials: vec![Trial {
                origin: Origin::Baseline,
                values: vec![value],
            }],
            vetoed: Vetoes::default(),
            scales: vec![scale],
        };
        vet(&line, std::slice::from_ref(&filler), &c, &rules)
            .expect("forecasts run")
            .baseline
            .forecast
    };
    let worn = round(0.8, 1.25);
    assert_eq!(worn, round(1.0, 1.0));
    assert!(
        worn.throughput_per_min < round(0.8, 1.0).throughput_per_min,
        "{worn:?}"
    );
}
