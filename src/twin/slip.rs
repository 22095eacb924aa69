//! Belt slip: estimated per stretch of belt between photo-eyes, and fed
//! back into the twin's own model so a diagnosed slip stops alarming.
//!
//! Data flow per tick: each eye's surplus integral (`EyeTrack::integrate`:
//! how many more products the plant has passed it than the twin, over
//! time) → per stretch, the integral of the difference between its two
//! ends, which is how many more products the plant holds on the stretch
//! than the twin, over time → once per second, a per-second bucket. Over
//! the last [`WINDOW_S`] buckets, Little's law gives the extra time each
//! product spends on the stretch: held product·seconds / products.
//!
//! Decisions:
//! - **Counts, not pairs.** The pairing of expected with measured edges
//!   matches by time, so once products are later than the time between
//!   them it pairs each with a neighbour (the shipped outfeed slip is 4 s
//!   late at one bottle a second). Counting needs no product identity, so
//!   the estimate holds for any slip. Its limit is the other way round: a
//!   product lost between two eyes reads as one more held product until the
//!   eyes' pairing restarts (it also shows as a `missing` residual).
//! - **Stations stay in.** A stretch runs from one eye to the next on the
//!   same belt, stations between them included: the twin holds each
//!   product at a station for the same cycle as the plant does, so the
//!   dwell is in both transits and cancels; what is left is belt time.
//!   (A station the plant runs slower than the twin thinks shows up here
//!   too, as slip of its belt.)
//! - **Feedback.** Once a stretch's estimate is steady (its two half
//!   windows agree) and differs from the slip the model runs by
//!   [`APPLY_STEP`] for [`STEADY_FOR`] reports, the twin runs that belt at `drive × (1 − slip)`, so
//!   its expected edges follow the plant and a diagnosed slip does not keep
//!   raising `late` residuals. Below [`APPLY_MIN`] nothing is applied: the
//!   healthy demo line's ±0.5 % noise never moves its model. While the
//!   model settles onto the new speed (the products on the stretch were
//!   half at the old speed), the eyes it moves are not compared; then their
//!   pairing restarts, as after a jam.

use std::collections::VecDeque;

/// Seconds of buckets a stretch's estimate is over.
pub const WINDOW_S: usize = 20;

/// Buckets and products a stretch needs before it has an estimate.
pub const MIN_BUCKETS: usize = 10;
pub const MIN_PRODUCTS: u64 = 8;

/// Smallest slip the twin applies to its model, and the smallest change
/// of it worth re-fitting the model for.
pub const APPLY_MIN: f64 = 0.03;
pub const APPLY_STEP: f64 = 0.01;

/// Line reports in a row an estimate must be steady before it is applied:
/// a change upstream passes through a stretch as a swell that can look
/// steady for a second or two.
pub const STEADY_FOR: u32 = 5;

/// How far apart, as slip, the two half windows may be and still count
/// as steady: this, or a tenth of the change the estimate asks for (a
/// large change need not be exact to be worth making; the next refines
/// it).
pub const STEADY_TOL: f64 = 0.015;

/// A steady estimate below minus this is no belt: a belt does not carry
/// faster than its drive by that much. It is the downstream eye's count
/// starting one product off, which happens when the plant is already more
/// than the time between products minus the tolerance behind the twin
/// where the count starts (a slip present when the twin starts, or when an
/// eye comes back): the eye's count is moved by one product.
pub const RECOUNT_BELOW: f64 = -0.1;

/// Largest slip applied: beyond it the belt hardly carries, which is a
/// stopped belt or a jam, not slip.
pub const APPLY_MAX: f64 = 0.9;

/// A stretch of one belt between two places the twin counts products at:
/// an eye and the next eye on the same belt, or the infeed (where the
/// counter makes the twin and the plant agree) and the first eye.
#[derive(Debug, Clone)]
pub struct Stretch {
    pub conveyor: usize,
    /// Upstream eye (model order), `None` for the infeed counter.
    pub from: Option<usize>,
    pub to: usize,
    pub over_m: f64,
    /// The eyes' generations the buckets were counted in.
    generations: (u32, u32),
    /// The downstream eye's expected total at the last tick.
    last_expected: u64,
    /// Per second: held product·seconds and products that reached `to`.
    buckets: VecDeque<(f64, u64)>,
    current: (f64, u64),
}

impl Stretch {
    pub fn new(conveyor: usize, from: Option<usize>, to: usize, over_m: f64) -> Self {
        Stretch {
            conveyor,
            from,
            to,
            over_m,
            generations: (0, 0),
            last_expected: 0,
            buckets: VecDeque::with_capacity(WINDOW_S + 1),
            current: (0.0, 0),
        }
    }

    /// Forgets what was counted: the counts restarted, the belt stopped,
    /// or the model's slip changed.
    pub fn clear(&mut self) {
        self.buckets.clear();
        self.current = (0.0, 0);
    }

    /// Adds one tick: `area_ns` is the integral of the products the plant
    /// holds on the stretch beyond the twin's (product·ns), `generations`
    /// and `expected_total` those of the two ends now. A new generation at
    /// either end means its counts restarted: what was counted is void.
    pub fn add(&mut self, area_ns: i128, generations: (u32, u32), expected_total: u64) {
        let arrived = expected_total.saturating_sub(self.last_expected);
        self.last_expected = expected_total;
        if generations != self.generations {
            self.generations = generations;
            self.clear();
            return;
        }
        self.current.0 += area_ns as f64 / 1e9;
        self.current.1 += arrived;
    }

    /// Closes the current second.
    pub fn roll(&mut self) {
        self.buckets.push_back(std::mem::take(&mut self.current));
        while self.buckets.len() > WINDOW_S {
            self.buckets.pop_front();
        }
    }

    /// Extra seconds each product spends on the stretch in the plant
    /// compared with the twin, over the window, once there is enough.
    pub fn extra_s(&self) -> Option<f64> {
        Self::mean(self.buckets.iter())
            .filter(|_| self.buckets.len() >= MIN_BUCKETS)
            .filter(|&(_, n)| n >= MIN_PRODUCTS)
            .map(|(e, _)| e)
    }

    /// Whether the older and the newer half of a full window agree, as
    /// slip (`slip_of` maps an extra time to it), to within `tol`: the
    /// condition is steady, not still building up or fading.
    pub fn steady(&self, slip_of: impl Fn(f64) -> f64, tol: f64) -> bool {
        if self.buckets.len() < WINDOW_S {
            return false;
        }
        let half = self.buckets.len() / 2;
        let old = Self::mean(self.buckets.iter().take(half));
        let new = Self::mean(self.buckets.iter().skip(half));
        match (old, new) {
            (Some((a, na)), Some((b, nb))) => {
                na >= MIN_PRODUCTS / 2
                    && nb >= MIN_PRODUCTS / 2
                    && (slip_of(a) - slip_of(b)).abs() <= tol
            }
            _ => false,
        }
    }

    fn mean<'a>(it: impl Iterator<Item = &'a (f64, u64)>) -> Option<(f64, u64)> {
        let (area, n) = it.fold((0.0, 0u64), |(a, n), (ba, bn)| (a + ba, n + bn));
        (n > 0).then(|| (area / n as f64, n))
    }
}

/// Slip from a stretch's figures: the twin moves products at
/// `drive × (1 − applied)`, and they spend `extra_s` longer than that on
/// the stretch in the plant. Returns (transit at the drive speed, transit
/// measured, slip against the drive speed).
pub fn slip_of(over_m: f64, drive: f64, applied: f64, extra_s: f64) -> Option<(f64, f64, f64)> {
    if over_m <= 0.0 || drive <= 0.01 {
        return None;
    }
    let at_drive = over_m / drive;
    let measured = over_m / (drive * (1.0 - applied)) + extra_s;
    (measured > 0.0).then(|| (at_drive, measured, 1.0 - at_drive / measured))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn little_s_law_gives_the_extra_time_per_product() {
        let mut s = Stretch::new(0, Some(0), 1, 1.5);
        // One product a second, each held 0.25 s longer in the plant: a
        // quarter of a product more on the stretch, on average.
        let mut expected = 0;
        for _ in 0..WINDOW_S {
            for k in 0..10 {
                if k == 0 {
                    expected += 1;
                }
                s.add(25_000_000, (0, 0), expected);
            }
            s.roll();
        }
        let extra = s.extra_s().expect("an estimate");
        assert!((extra - 0.25).abs() < 1e-9, "{extra}");
        assert!(s.steady(|e| e, STEADY_TOL));
        // A delay still building up is not steady.
        let mut ramp = Stretch::new(0, Some(0), 1, 1.5);
        for k in 0..WINDOW_S {
            for _ in 0..10 {
                ramp.add(k as i128 * 10_000_000, (0, 0), k as u64 + 1);
            }
            ramp.roll();
        }
        assert!(ramp.extra_s().is_some());
        assert!(!ramp.steady(|e| e, STEADY_TOL));
        // The counts at one end restarted: nothing is known.
        s.add(0, (0, 1), expected);
        s.roll();
        assert_eq!(s.extra_s(), None);
    }

    #[test]
    fn slip_is_against_the_drive_speed_whatever_the_model_runs() {
        // 1.5 m at 0.5 m/s is 3 s; 5 % slip makes it 3.158 s.
        let (at_drive, measured, slip) = slip_of(1.5, 0.5, 0.0, 0.158).expect("figures");
        assert!((at_drive - 3.0).abs() < 1e-9);
        assert!((measured - 3.158).abs() < 1e-9);
        assert!((slip - 0.05).abs() < 0.001, "{slip}");
        // The model already runs 5 % slow and the plant agrees with it.
        let (_, _, slip) = slip_of(1.5, 0.5, 0.05, 0.0).expect("figures");
        assert!((slip - 0.05).abs() < 1e-9, "{slip}");
        assert_eq!(slip_of(1.5, 0.0, 0.0, 0.1), None);
    }
}
