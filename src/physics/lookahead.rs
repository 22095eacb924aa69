//! What-if lookahead: the line's next minutes under candidate setpoints.
//!
//! Data flow: the twin's current [`LineModel`] (products where they are now,
//! stations mid-cycle) is cloned, the candidate belt speeds, station cycle
//! times and arrival rate are applied to the copy, and the copy is stepped
//! over the horizon as fast as the machine allows. The original is not
//! touched. The optimiser and the write-back guard ask it "what happens if";
//! engineers ask through `twin whatif`.
//!
//! Decisions:
//! - **Belts as a drive, not as contacts.** The copy runs on the analytical
//!   belt drive (`drive.rs`, [`BeltDrive::Analytical`]), which the live
//!   model of a line without pushers or diverters runs on too: the twin
//!   moves products along the belts itself and freezes standing queues, so
//!   on the demo line the forecast went from 565× to about 1,780× real
//!   time when the line flows, and from 41× to about 6,200× with a standing
//!   queue of 50 bottles (docs/benchmarks.md). The contact model
//!   ([`BeltDrive::Contacts`]) is the reference the copy is checked against
//!   (`the_forecast_agrees_with_the_live_model`,
//!   `a_queue_does_not_slip_past_a_slow_station`).
//! - **Coarser step, same solver.** The copy steps at [`LOOKAHEAD_DT`]
//!   (25 ms, five times the contact model's 5 ms) with rapier's default four
//!   solver iterations, and without its photo-eye sensors. Stations size
//!   their catch window to the step ([`LineModel::fit_catch_windows`]), so
//!   a product cannot cross a station between two steps.
//!   The step was chosen by measurement against the live model's 5 ms on
//!   the demo line over three minutes with a slow filler (a standing queue
//!   of 30 bottles): 25 ms / 4 iterations releases what 5 ms releases at
//!   every station, within one bottle. Coarser settings let bottles slip
//!   past the filler beside or behind the held one, which over-forecasts
//!   throughput: 20 ms / 2 iterations with belt contacts (used before) put
//!   137 bottles through the capper against 120 through the filler; 40 ms
//!   and 50 ms leak with the analytical drive too. Physical guide-rail
//!   colliders were tried as the lane (docs/physics.md): square products
//!   yawed and wedged between them, and they halved the speed.
//! - **Jam risk** is a number in [0, 1] with a plain meaning: the larger of
//!   the share of arrivals that found the infeed blocked (the line could not
//!   take them) and the longest standing queue as a share of the line's belt
//!   length (how close a backlog came to filling the line). 0 is a line that
//!   keeps up with room to spare; 1 is a line that is full.

use std::time::Duration;

use super::drive::BeltDrive;
use super::{LineModel, PhysicsError};
use crate::config::knob::Knob;

/// Step length of the lookahead's copy of the line.
pub const LOOKAHEAD_DT: Duration = Duration::from_millis(25);

/// Solver iterations per lookahead step: rapier's default, as in the live
/// model. Fewer let a long queue buckle sideways and products slip past a
/// station (see the module's decisions).
pub const LOOKAHEAD_SOLVER_ITERATIONS: usize = 4;

/// How often (simulated) finished products are removed and the WIP and
/// queues sampled: as often as the core's tick.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Candidate {
    /// (conveyor index, drive speed in m/s).
    pub belt_speeds: Vec<(usize, f32)>,
    /// (station index, cycle time).
    pub station_cycles: Vec<(usize, Duration)>,
    /// Time between arrivals at the infeed; `None`: no arrivals.
    pub arrival_interval: Option<Duration>,
}

impl Candidate {
    /// Sets `knob` to `value` (m/s for a belt, seconds for a station's
    /// cycle), replacing what the candidate had for it. A cycle too long
    /// for a `Duration` holds the station.
    pub fn set(&mut self, knob: Knob, value: f64) {
        match knob {
            Knob::Belt(i) => {
                self.belt_speeds.retain(|(k, _)| *k != i);
                self.belt_speeds.push((i, value as f32));
            }
            Knob::Station(i) => {
                self.station_cycles.retain(|(k, _)| *k != i);
                self.station_cycles.push((
                    i,
                    Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX),
                ));
            }
        }
    }
}

/// What the line would do over the horizon.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Forecast {
    pub horizon: Duration,
    /// Arrivals due at the infeed, and those that found it blocked.
    pub arrivals: u64,
    pub infeed_blocked: u64,
    /// Products that left the end, and that fell off.
    pub out: u64,
    pub lost: u64,
    /// Products pushers pushed off. Pushers stay home in a forecast (a
    /// reject follows an inspection the forecast cannot see), so only a
    /// product already on its way off counts here.
    pub pushed: u64,
    /// Products that left the end of a diverter's branch. Diverters stay
    /// home in a forecast like pushers, so only products already sent to a
    /// branch count here.
    pub diverted: u64,
    /// `out` per minute of the horizon.
    pub throughput_per_min: f64,
    pub wip_start: u64,
    pub wip_end: u64,
    pub wip_max: u64,
    /// Most products standing in queues at any sample.
    pub max_standing: u64,
    pub jam_risk: f64,
}

impl LineModel {
    /// Simulates the next `horizon` on a copy of the line under `candidate`.
    pub fn lookahead(
        &self,
        candidate: &Candidate,
        horizon: Duration,
    ) -> Result<Forecast, PhysicsError> {
        self.lookahead_state(candidate, horizon).map(|(_, f)| f)
    }

    /// [`LineModel::lookahead`], also returning the copy as it is at the end
    /// of the horizon (to forecast from a warmed-up line, or chain
    /// forecasts).
    pub fn lookahead_state(
        &self,
        candidate: &Candidate,
        horizon: Duration,
    ) -> Result<(LineModel, Forecast), PhysicsError> {
        let mut m = self.clone();
        m.set_dt(LOOKAHEAD_DT);
        // Arrivals come from the candidate; a copy with the model's own
        // spawner on would spawn twice.
        m.spawn_every = None;
        m.world.integration_parameters.num_solver_iterations = LOOKAHEAD_SOLVER_ITERATIONS;
        m.set_belt_drive(BeltDrive::Analytical);
        // The forecast counts products, it does not compare eyes: the
        // sensors would only cost intersection tests.
        for e in &m.photo_eyes {
            if let Some(c) = m.world.colliders.get_mut(e.collider) {
                c.set_enabled(false);
            }
        }
        for &(i, v) in &candidate.belt_speeds {
            m.set_belt_speed_at(i, v)?;
        }
        for &(i, c) in &candidate.station_cycles {
            m.set_station_cycle_at(i, Some(c));
        }
        m.fit_catch_windows();
        for i in 0..m.pushers().len() {
            m.set_pusher_at(i, false);
        }
        for i in 0..m.diverters().len() {
            m.set_diverter_at(i, false);
        }
        let dt_ns = LOOKAHEAD_DT.as_nanos();
        let steps = horizon.as_nanos().div_ceil(dt_ns);
        let sample_every = (SAMPLE_EVERY.as_nanos() / dt_ns).max(1);
        let interval = candidate.arrival_interval.map(|i| i.as_nanos().max(dt_ns));
        let belt_length: f64 = m
            .geometry
            .iter()
            .flat_map(|l| &l.pieces)
            .map(|p| p.length)
            .sum();
        // The queue share counts standing products as the active type's
        // length each: the forecast spawns that type.
        let product_length = m.active_type().map_or(0.0, |p| p.length);
        let wip_start = m.products.len() as u64;
        let mut f = Forecast {
            horizon,
            wip_start,
            wip_end: wip_start,
            wip_max: wip_start,
            ..Forecast::default()
        };
        let mut next_arrival: u128 = 0;
        for k in 0..steps {
            let t = k * dt_ns;
            if let Some(iv) = interval
                && t >= next_arrival
            {
                next_arrival += iv;
                f.arrivals += 1;
                if m.infeed_clear() {
                    m.spawn_product()?;
                } else {
                    f.infeed_blocked += 1;
                }
            }
            m.step()?;
            if (k + 1) % sample_every == 0 || k + 1 == steps {
                let done = m.remove_finished();
                f.out += done.out as u64;
                f.lost += done.lost as u64;
                f.pushed += done.pushed as u64;
                f.diverted += done.diverted as u64;
                let wip = m.products.len() as u64;
                f.wip_max = f.wip_max.max(wip);
                f.max_standing = f.max_standing.max(m.standing() as u64);
            }
        }
        f.wip_end = m.products.len() as u64;
        let minutes = horizon.as_secs_f64() / 60.0;
        f.throughput_per_min = if minutes > 0.0 {
            f.out as f64 / minutes
        } else {
            0.0
        };
        let blocked_share = if f.arrivals > 0 {
            f.infeed_blocked as f64 / f.arrivals as f64
        } else {
            0.0
        };
        let queue_share = if belt_length > 0.0 {
            f.max_standing as f64 * product_length / belt_length
        } else {
            0.0
        };
        f.jam_risk = blocked_share.max(queue_share).clamp(0.0, 1.0);
        Ok((m, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Line, Station, StationCycle};
    use crate::physics::fixtures::{self, loc};

    /// A 6 m belt with a station at 3 m (cycle `cycle`), 0.2 m products.
    fn line(cycle: Duration) -> Line {
        let mut l = fixtures::line(
            vec![fixtures::belt("belt", 0.6, [0.0, 0.0], &[(6.0, 0.0)])],
            Some(fixtures::cube()),
        );
        l.stations = vec![Station {
            id: loc("st".into()),
            conveyor: loc("belt".into()),
            position: loc(3.0),
            cycle: StationCycle::Fixed(cycle),
            commissioned: None,
            rate_tag: None,
        }];
        l
    }

    fn running(cycle: Duration) -> LineModel {
        let mut m = LineModel::new(&line(cycle), Duration::from_millis(5));
        m.set_belt_speed_at(0, 0.5).expect("belt");
        m
    }

    const SECOND: Duration = Duration::from_secs(1);

    /// Steady-state throughput is min(station rate, arrival rate), in the
    /// forecast as in the model: arrivals every second, a 0.5 s station →
    /// 60/min; a 2 s station → 30/min, with the infeed blocking.
    #[test]
    fn forecast_throughput_is_the_bottleneck_rate() {
        let warm = |m: &LineModel, c: &Candidate| {
            // Past the first products' transit, then a clean two minutes.
            let w = m.lookahead(c, Duration::from_secs(150)).expect("runs");
            let s = m.lookahead(c, Duration::from_secs(30)).expect("runs");
            (w.out - s.out) as f64 / 2.0
        };
        let c = Candidate {
            arrival_interval: Some(SECOND),
            ..Candidate::default()
        };
        let fast = running(Duration::from_millis(500));
        let tp = warm(&fast, &c);
        assert!((tp - 60.0).abs() <= 1.0, "{tp}");
        let slow = running(2 * SECOND);
        let tp = warm(&slow, &c);
        assert!((tp - 30.0).abs() <= 1.0, "{tp}");
        let f = slow.lookahead(&c, Duration::from_secs(120)).expect("runs");
        assert!(f.infeed_blocked > 0 && f.jam_risk > 0.3, "{f:?}");
        let f = fast.lookahead(&c, Duration::from_secs(120)).expect("runs");
        assert!(f.infeed_blocked == 0 && f.jam_risk < 0.1, "{f:?}");
    }

    /// A candidate changes the copy only: the same model forecasts the
    /// same twice, and a faster station clears a slow line's backlog.
    #[test]
    fn candidates_change_the_copy_not_the_model() {
        let mut m = running(2 * SECOND);
        for k in 0..(200 * 40) {
            if k % 200 == 0 && m.infeed_clear() {
                m.spawn_product().expect("product");
            }
            m.step().expect("step");
        }
        let positions = m.product_positions();
        let keep = Candidate {
            arrival_interval: Some(SECOND),
            ..Candidate::default()
        };
        let a = m.lookahead(&keep, Duration::from_secs(60)).expect("runs");
        assert_eq!(
            a,
            m.lookahead(&keep, Duration::from_secs(60)).expect("runs")
        );
        assert_eq!(positions, m.product_positions(), "the model did not move");
        let faster = Candidate {
            station_cycles: vec![(0, Duration::from_millis(600))],
            ..keep.clone()
        };
        let b = m.lookahead(&faster, Duration::from_secs(60)).expect("runs");
        assert!(b.out > a.out + 20, "{a:?} vs {b:?}");
        assert!(b.jam_risk < a.jam_risk, "{a:?} vs {b:?}");
        let stopped = Candidate {
            belt_speeds: vec![(0, 0.0)],
            ..keep
        };
        let c = m
            .lookahead(&stopped, Duration::from_secs(60))
            .expect("runs");
        // At most a product already over the end leaves.
        assert!(c.out <= 1, "{c:?}");
        assert!(
            m.lookahead(
                &Candidate {
                    belt_speeds: vec![(3, 1.0)],
                    ..Candidate::default()
                },
                SECOND
            )
            .is_err()
        );
    }

    /// A model whose own spawner is on (built from a line with a
    /// `spawn_interval`) must not spawn in the forecast: arrivals come from
    /// the candidate only.
    #[test]
    fn the_forecast_spawns_only_the_candidates_arrivals() {
        let mut l = line(Duration::from_millis(500));
        if let Some(p) = l.product.as_mut() {
            p.spawn_interval = Some(SECOND);
        }
        let mut m = LineModel::new(&l, Duration::from_millis(5));
        m.set_belt_speed_at(0, 0.5).expect("belt");
        let c = Candidate {
            arrival_interval: Some(SECOND),
            ..Candidate::default()
        };
        let f = m.lookahead(&c, Duration::from_secs(30)).expect("runs");
        assert_eq!(f.arrivals, 30);
        assert_eq!(f.out + f.wip_end + f.lost, 30, "{f:?}");
    }

    /// The demo line with a filler slower than the arrivals (1.5 s against
    /// 1 s) builds a standing queue of about 30 bottles in front of it. No
    /// bottle may slip past the filler beside the held one: over three
    /// minutes the capper releases no more than the filler did plus the
    /// bottles already between them, and the line's output settles at the
    /// filler's 40/min. (With 20 ms steps and two solver iterations the
    /// queue buckled and the capper released 137 against the filler's 120.)
    #[test]
    fn a_queue_does_not_slip_past_a_slow_station() {
        let text = include_str!("../../plant-configs/packaging-line.toml");
        let cfg = crate::config::load_str(std::path::Path::new("packaging-line.toml"), text)
            .expect("demo config is valid");
        let line = &cfg.config.lines[0];
        let nominal = Candidate {
            belt_speeds: vec![(0, 0.6), (1, 0.6)],
            arrival_interval: Some(SECOND),
            ..Candidate::default()
        };
        let (warm, _) = LineModel::new(line, Duration::from_millis(5))
            .lookahead_state(&nominal, Duration::from_secs(60))
            .expect("warm-up runs");
        let pos = |id: &str| {
            let s = line
                .stations
                .iter()
                .find(|s| s.id.value == id)
                .expect("station");
            let c = line
                .conveyors
                .iter()
                .position(|c| c.id.value == s.conveyor.value)
                .expect("conveyor");
            (c, s.position.value)
        };
        let between = warm.products_between(pos("filler"), pos("capper")) as u64;
        let slow = Candidate {
            station_cycles: vec![(0, Duration::from_millis(1500))],
            ..nominal
        };
        let (end, f) = warm
            .lookahead_state(&slow, Duration::from_secs(180))
            .expect("forecast runs");
        let released = |m: &LineModel, i: usize| m.stations()[i].releases();
        let filler = released(&end, 0) - released(&warm, 0);
        let capper = released(&end, 1) - released(&warm, 1);
        assert!((118..=121).contains(&filler), "filler {filler}, {f:?}");
        assert!(
            capper <= filler + between,
            "capper {capper} > filler {filler} + {between} between them"
        );
        assert_eq!(f.lost, 0, "{f:?}");
        // 120 through the filler plus what was already past it.
        assert!(f.out <= 120 + f.wip_start, "{f:?}");
        assert!(f.max_standing >= 20, "a queue formed: {f:?}");
    }

    /// The copy's analytical belt drive against the live model's rapier
    /// belt contacts (5 ms steps): the same warm line, the infeed at
    /// 0.6 m/s and the outfeed (with its 90° corner) at 0.4 m/s, for a
    /// minute, with a 1.5 s filler (a queue forms) and with a 0.8 s one
    /// (dense flow through the corner). Releases at every station within
    /// one, output and WIP within two. (docs/benchmarks.md has a
    /// three-minute table over seven candidates.) Before the follower rule
    /// looked sideways, a bottle waited at the corner until the one in
    /// front had left the line, and the dense case failed.
    #[test]
    fn the_forecast_agrees_with_the_live_model() {
        let text = include_str!("../../plant-configs/packaging-line.toml")
            .replace("spawn_interval = \"1s\"", "");
        let cfg = crate::config::load_str(std::path::Path::new("packaging-line.toml"), &text)
            .expect("demo config is valid");
        let mut live = LineModel::new(&cfg.config.lines[0], Duration::from_millis(5));
        let run = |m: &mut LineModel, steps: u64, f: &mut Forecast| {
            for k in 0..steps {
                if k % 200 == 0 {
                    f.arrivals += 1;
                    if m.infeed_clear() {
                        m.spawn_product().expect("product");
                    } else {
                        f.infeed_blocked += 1;
                    }
                }
                m.step().expect("step");
                if k % 20 == 19 {
                    let done = m.remove_finished();
                    f.out += done.out as u64;
                    f.lost += done.lost as u64;
                }
            }
        };
        for c in 0..2 {
            live.set_belt_speed_at(c, 0.6).expect("belt");
        }
        run(&mut live, 200 * 60, &mut Forecast::default());
        // Filler-bound (a queue forms), then at the arrival rate (dense flow
        // through the corner).
        for filler in [1500, 800] {
            let cycle = Duration::from_millis(filler);
            let candidate = Candidate {
                belt_speeds: vec![(0, 0.6), (1, 0.4)],
                station_cycles: vec![(0, cycle)],
                arrival_interval: Some(SECOND),
            };
            let (copy, forecast) = live
                .lookahead_state(&candidate, Duration::from_secs(60))
                .expect("forecast runs");
            let mut truth_model = live.clone();
            truth_model.set_belt_speed_at(0, 0.6).expect("belt");
            truth_model.set_belt_speed_at(1, 0.4).expect("belt");
            truth_model.set_station_cycle_at(0, Some(cycle));
            let mut truth = Forecast::default();
            run(&mut truth_model, 200 * 60, &mut truth);
            for (i, s) in live.stations().iter().enumerate() {
                let b = s.releases();
                let (l, c) = (
                    truth_model.stations()[i].releases() - b,
                    copy.stations()[i].releases() - b,
                );
                assert!(
                    l.abs_diff(c) <= 1,
                    "{filler} ms, station {i}: live {l}, forecast {c}"
                );
            }
            assert!(
                truth.out.abs_diff(forecast.out) <= 2,
                "{filler} ms: {truth:?} vs {forecast:?}"
            );
            assert!(
                (truth_model.product_count() as u64).abs_diff(forecast.wip_end) <= 2,
                "{filler} ms: {} vs {forecast:?}",
                truth_model.product_count()
            );
            assert_eq!((truth.lost, forecast.lost), (0, 0));
        }
    }
}
