//! Expected against measured photo-eyes: the twin's residuals.
//!
//! Data flow: the physics model says when each eye *should* see a product
//! arrive (its expected rising edges, in tick time, at 5 ms resolution); the
//! eye's digital input says when it *did* (measured rising edges, in source
//! time, taken from every sample, not from the tick-level value, so a beam
//! interruption shorter than a tick is not lost). [`EyeTrack`] pairs the
//! two streams in order and classifies what does not pair:
//!
//! - **late**: a measured edge that pairs with an expected one but comes more
//!   than the tolerance after it;
//! - **missing**: an expected edge with no measured edge within the late
//!   window (the product never showed up, or the eye did not see it);
//! - **extra**: a measured edge that no expected edge can pair with (a
//!   product the twin does not know of, or a flickering eye).
//!
//! Early edges within the tolerance pair normally: the twin's arrival times
//! carry the latency of the infeed counter's poll, so it is as often early
//! as late.
//!
//! The pairing is greedy and in order, which is right for products on a
//! belt (they cannot overtake each other), with one exception: a measured
//! edge that would be late against the oldest expected edge but is on time
//! against a later one pairs with the later one, and the older is missing.
//! Without it, one product the twin expected and the plant never showed
//! (lost, or passed while the eye was blind) would shift every later pair
//! by one product for good: a `late` stream inside the late window that
//! never resynchronises. Lags of paired edges are kept ([`EyeTrack::mean_lag`]);
//! belt slip is estimated from the eyes' counts instead ([`EyeTrack::integrate`],
//! `twin::slip`), which need no pairing and so hold however late products are.
//!
//! Products already on the line when the twin starts are not in its model;
//! until an eye has expected its first product, what it measures is not
//! compared (it would all be "extra").

use std::collections::VecDeque;

/// How many recent lags an eye keeps.
pub const LAG_WINDOW: usize = 20;

/// One unpaired or late edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// Expected at `expected_ns`, never measured.
    Missing { expected_ns: i64 },
    /// Measured at `measured_ns`, never expected.
    Extra { measured_ns: i64 },
    /// Measured `measured_ns - expected_ns` after it was expected.
    Late { expected_ns: i64, measured_ns: i64 },
}

impl Mismatch {
    pub fn kind(&self) -> &'static str {
        match self {
            Mismatch::Missing { .. } => "missing",
            Mismatch::Extra { .. } => "extra",
            Mismatch::Late { .. } => "late",
        }
    }
}

/// Counters of an eye's pairing since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EyeCounts {
    pub matched: u64,
    pub late: u64,
    pub missing: u64,
    pub extra: u64,
    /// Measured edges before the eye expected anything (not compared).
    pub before_start: u64,
}

/// The pairing state of one photo-eye.
#[derive(Debug, Clone)]
pub struct EyeTrack {
    tol_ns: i64,
    late_ns: i64,
    expected: VecDeque<i64>,
    measured: VecDeque<i64>,
    lags: VecDeque<i64>,
    /// The first expected edge since the start or the last reset.
    first_expected: Option<i64>,
    pub counts: EyeCounts,
    /// Expected edges in a row with no measured partner.
    pub consecutive_missing: u32,
    /// Measured minus expected edges since the last reset, as of the last
    /// [`EyeTrack::integrate`] (measured edges from before the comparison
    /// started excluded): how many more products the plant has passed the
    /// eye than the twin. Unlike the pairing it needs no product identity,
    /// so it holds however late products are (see `twin::slip`).
    surplus: i64,
    /// Edges since the last `integrate`: +1 per measured, −1 per expected,
    /// and the same signs on their times, to integrate the surplus exactly
    /// in source and physics time rather than at tick resolution.
    pend_n: i64,
    pend_sum: i128,
    /// Bumped by every reset: the surplus counts restarted.
    generation: u32,
    /// The first expected edge since the surplus counts restarted: measured
    /// edges well before it are products the twin never had.
    surplus_first: Option<i64>,
}

impl EyeTrack {
    /// `tol_ns`: how far a measured edge may be from its expected one and
    /// still be on time; `late_ns` (≥ `tol_ns`): how late it may come and
    /// still pair (as `late`).
    pub fn new(tol_ns: i64, late_ns: i64) -> Self {
        EyeTrack {
            tol_ns,
            late_ns: late_ns.max(tol_ns),
            expected: VecDeque::new(),
            measured: VecDeque::new(),
            lags: VecDeque::with_capacity(LAG_WINDOW),
            first_expected: None,
            counts: EyeCounts::default(),
            consecutive_missing: 0,
            surplus: 0,
            pend_n: 0,
            pend_sum: 0,
            generation: 0,
            surplus_first: None,
        }
    }

    pub fn expect(&mut self, t_ns: i64) {
        self.first_expected.get_or_insert(t_ns);
        self.surplus_first.get_or_insert(t_ns);
        self.expected.push_back(t_ns);
        self.pend_n -= 1;
        self.pend_sum -= i128::from(t_ns);
    }

    pub fn measure(&mut self, t_ns: i64) {
        self.measured.push_back(t_ns);
        self.pend_n += 1;
        self.pend_sum += i128::from(t_ns);
    }

    /// The integral of the surplus over the tick ending at `now_ns`, in
    /// product·ns, and the surplus brought up to date: each edge counts
    /// from its own time, so a measured edge taken a tick after it was
    /// seen still counts from when it was seen.
    pub fn integrate(&mut self, now_ns: i64, period_ns: i64) -> i128 {
        let area = i128::from(self.surplus) * i128::from(period_ns)
            + i128::from(self.pend_n) * i128::from(now_ns)
            - self.pend_sum;
        self.surplus += self.pend_n;
        self.pend_n = 0;
        self.pend_sum = 0;
        area
    }

    /// Corrects the surplus by whole products, from now on: the count
    /// started one product off (see `twin::slip`).
    pub fn shift_surplus(&mut self, by: i64) {
        self.surplus += by;
    }

    /// Which run of surplus counts this is (bumped by every reset).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Forgets every pending edge and restarts the surplus counts: while
    /// the eye's input is not known good (or the eye is blind) nothing can
    /// be said about it, edges from before a gap must not pair with edges
    /// after it, and the edges it missed must not count.
    pub fn reset(&mut self) {
        self.reset_pairing();
        self.surplus = 0;
        self.pend_n = 0;
        self.pend_sum = 0;
        self.surplus_first = None;
        self.generation = self.generation.wrapping_add(1);
    }

    /// Forgets every pending edge but keeps counting: the eye saw every
    /// product, but the twin's expectations moved (its model changed), so
    /// old pending edges would pair with the wrong products.
    pub fn reset_pairing(&mut self) {
        // Pending edges leave the queues, not the counts: they happened.
        self.expected.clear();
        self.measured.clear();
        self.first_expected = None;
        self.consecutive_missing = 0;
    }

    /// Whether a measured edge at `m` that pairs with nothing comes from
    /// before the comparison started.
    fn before_start(&self, m: i64) -> bool {
        self.first_expected
            .is_none_or(|f| m < f.saturating_sub(self.tol_ns))
    }

    /// Pairs what can be paired and reports, in time order, every edge that
    /// can no longer pair at `now_ns`.
    pub fn settle(&mut self, now_ns: i64, out: &mut Vec<Mismatch>) {
        loop {
            match (
                self.expected.front().copied(),
                self.measured.front().copied(),
            ) {
                (Some(e), Some(m)) => {
                    if m < e.saturating_sub(self.tol_ns) {
                        // Earlier than any expected edge still to come.
                        self.measured.pop_front();
                        self.extra(m, out);
                    } else if m <= e.saturating_add(self.tol_ns) {
                        self.expected.pop_front();
                        self.measured.pop_front();
                        self.pair(e, m, out);
                    } else if m <= e.saturating_add(self.late_ns) {
                        // Late against `e`, but on time against a later
                        // expected edge: `e`'s product never came (it was
                        // lost, or the eye was blind), and pairing `m` with
                        // `e` would keep every later product one behind for
                        // good. An expected edge up to the tolerance after
                        // `m` may still be produced, so wait until it would
                        // have been.
                        if self.on_time_later(m) {
                            self.expected.pop_front();
                            self.missing(e, out);
                        } else if now_ns <= m.saturating_add(self.tol_ns) {
                            return;
                        } else {
                            self.expected.pop_front();
                            self.measured.pop_front();
                            self.pair(e, m, out);
                        }
                    } else {
                        self.expected.pop_front();
                        self.missing(e, out);
                    }
                }
                (Some(e), None) if now_ns > e.saturating_add(self.late_ns) => {
                    self.expected.pop_front();
                    self.missing(e, out);
                }
                // Expected edges are produced at tick time, so none still to
                // come can be earlier than `now`: past the tolerance, a
                // measured edge is extra.
                (None, Some(m)) if now_ns > m.saturating_add(self.tol_ns) => {
                    self.measured.pop_front();
                    self.extra(m, out);
                }
                _ => return,
            }
        }
    }

    /// Whether an expected edge after the front one is within the
    /// tolerance of `m`.
    fn on_time_later(&self, m: i64) -> bool {
        self.expected
            .iter()
            .skip(1)
            .find(|&&e| e >= m.saturating_sub(self.tol_ns))
            .is_some_and(|&e| e <= m.saturating_add(self.tol_ns))
    }

    fn extra(&mut self, m: i64, out: &mut Vec<Mismatch>) {
        if self.before_start(m) {
            self.counts.before_start += 1;
            if self
                .surplus_first
                .is_none_or(|f| m < f.saturating_sub(self.tol_ns))
            {
                // Not a product the twin can know of: take it out of the
                // surplus again, from its own time on.
                self.pend_n -= 1;
                self.pend_sum -= i128::from(m);
            }
            return;
        }
        self.counts.extra += 1;
        out.push(Mismatch::Extra { measured_ns: m });
    }

    fn pair(&mut self, e: i64, m: i64, out: &mut Vec<Mismatch>) {
        let lag = m - e;
        self.consecutive_missing = 0;
        if self.lags.len() == LAG_WINDOW {
            self.lags.pop_front();
        }
        self.lags.push_back(lag);
        if lag > self.tol_ns {
            self.counts.late += 1;
            out.push(Mismatch::Late {
                expected_ns: e,
                measured_ns: m,
            });
        } else {
            self.counts.matched += 1;
        }
    }

    fn missing(&mut self, e: i64, out: &mut Vec<Mismatch>) {
        self.counts.missing += 1;
        self.consecutive_missing = self.consecutive_missing.saturating_add(1);
        out.push(Mismatch::Missing { expected_ns: e });
    }

    /// Mean lag (measured − expected) of the recent paired edges, in ns,
    /// once there are at least `min` of them.
    pub fn mean_lag(&self, min: usize) -> Option<f64> {
        (self.lags.len() >= min.max(1))
            .then(|| self.lags.iter().map(|&l| l as f64).sum::<f64>() / self.lags.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;

    fn run(expected: &[i64], measured: &[i64], until: i64) -> (Vec<Mismatch>, EyeTrack) {
        let mut t = EyeTrack::new(300 * MS, 2000 * MS);
        for &e in expected {
            t.expect(e * MS);
        }
        for &m in measured {
            t.measure(m * MS);
        }
        let mut out = Vec::new();
        t.settle(until * MS, &mut out);
        (out, t)
    }

    #[test]
    fn edges_within_tolerance_pair_either_way() {
        let (out, t) = run(&[1000, 2000, 3000], &[1100, 1850, 3299], 10_000);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!(t.counts.matched, 3);
        let lag = t.mean_lag(3).expect("three lags");
        assert!((lag - 83.0 * MS as f64).abs() < 1.0, "{lag}");
    }

    #[test]
    fn late_missing_and_extra_are_told_apart() {
        // 1000 is answered 800 ms late; 2500 never; 5000 is an extra.
        let (out, t) = run(&[1000, 2500, 8000], &[1800, 5000, 8100], 20_000);
        assert_eq!(
            out,
            vec![
                Mismatch::Late {
                    expected_ns: 1000 * MS,
                    measured_ns: 1800 * MS
                },
                Mismatch::Missing {
                    expected_ns: 2500 * MS
                },
                Mismatch::Extra {
                    measured_ns: 5000 * MS
                },
            ]
        );
        assert_eq!(t.counts.matched, 1);
        assert_eq!(t.consecutive_missing, 0, "8000 paired after the miss");
    }

    #[test]
    fn nothing_is_decided_before_its_window_closes() {
        // At 2500 ms the edge expected at 1000 may still come (late window
        // 2 s), and the measured 2400 may still find a partner.
        let (out, t) = run(&[1000], &[], 2500);
        assert!(out.is_empty());
        let (out2, _) = run(&[100], &[100, 2400], 2500);
        assert!(out2.is_empty());
        let (out3, t3) = run(&[1000, 1500, 1900], &[], 4000);
        assert_eq!(out3.len(), 3);
        assert_eq!(t3.consecutive_missing, 3);
        assert_eq!(t.counts, EyeCounts::default());
    }

    /// Issue 9: one product expected and never measured (here, the one at
    /// 2000) used to pair every later measured edge with the expected one
    /// before it, a second late, for good.
    #[test]
    fn r9_a_product_that_never_came_costs_one_missing_not_a_late_stream() {
        let expected: Vec<i64> = (1..=10).map(|k| k * 1000).collect();
        let measured: Vec<i64> = expected
            .iter()
            .copied()
            .filter(|&e| e != 2000)
            .map(|e| e + 40)
            .collect();
        let (out, t) = run(&expected, &measured, 20_000);
        assert_eq!(
            out,
            vec![Mismatch::Missing {
                expected_ns: 2000 * MS
            }]
        );
        assert_eq!(t.counts.matched, 9);
        let lag = t.mean_lag(9).expect("nine lags");
        assert!((lag - 40.0 * MS as f64).abs() < 1.0, "{lag}");
    }

    /// A late edge waits for an expected edge that may still come on time
    /// for it (expected edges are produced at tick time), then pairs with
    /// it; with none, it is late.
    #[test]
    fn a_late_edge_waits_for_a_partner_on_time() {
        let mut t = EyeTrack::new(300 * MS, 2000 * MS);
        let mut out = Vec::new();
        t.expect(1000 * MS);
        t.measure(2100 * MS);
        t.settle(2200 * MS, &mut out);
        assert!(out.is_empty(), "decided too early: {out:?}");
        t.expect(2150 * MS);
        t.settle(2500 * MS, &mut out);
        assert_eq!(
            out,
            vec![Mismatch::Missing {
                expected_ns: 1000 * MS
            }]
        );
        assert_eq!(t.counts.matched, 1);

        let (out, _) = run(&[1000], &[2100], 2500);
        assert_eq!(
            out,
            vec![Mismatch::Late {
                expected_ns: 1000 * MS,
                measured_ns: 2100 * MS
            }]
        );
    }

    #[test]
    fn products_from_before_the_start_are_not_extra() {
        // Two products the twin never knew of pass before its first one.
        let (out, t) = run(&[5000], &[1000, 2000, 5100], 10_000);
        assert!(out.is_empty(), "{out:?}");
        assert_eq!((t.counts.before_start, t.counts.matched), (2, 1));
    }
}
