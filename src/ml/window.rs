//! Running window statistics (issue 11): what lets a feature row cost the
//! same whatever its windows' lengths. A [`Running`] follows the newest `n`
//! points of one [`SignalWindow`](super::features::SignalWindow) as they are
//! pushed, so a read is O(1) and a push amortised O(1), where computing a
//! statistic from the ring is O(n) on every row of every run.
//!
//! - mean, std, rms and slope come from three running sums of the points
//!   shifted by a reference value `c`: `Σd`, `Σd²` and `Σ j·d` (`d = x − c`,
//!   `j = 0` for the oldest point of the window).
//! - min and max come from monotonic deques of (push index, value).
//!
//! Sums updated by adding and subtracting drift, and lose digits when what
//! they hold shrinks far below what passed through them (a level shift
//! leaving the window). So every `n` pushes they are replaced by exact ones:
//! a second set of sums, only ever added to, starts afresh each `n` pushes
//! and holds exactly the window when it is swapped in (the same sums a
//! recompute from the ring would give, with the window's oldest point as
//! the shift, at three additions a push and without reading the ring
//! back). As soon as the spread they describe falls below
//! [`REBUILD_BELOW`] of its peak since the last exact sums, they are also
//! recomputed from the ring at once. Both triggers depend on the pushed
//! values only: the same inputs give the same bits. The deques hold the
//! points themselves and do not drift.

/// Recompute the sums from the ring when `m·Σd² − (Σd)²` (m² times the
/// window's variance) falls below this fraction of the largest `m·Σd²` seen
/// since the last recompute. The rounding the sums carry is a few ulps of
/// that peak per push, for at most `n` pushes: above this ratio it stays a
/// small share of the variance (for n = 3,000, under about
/// 1e4 · 3,000 · 2⁻⁵² ≈ 7e-9 of it), below it, it might not.
pub(super) const REBUILD_BELOW: f64 = 1e-4;

/// Which of a window length's running statistics are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Wants {
    pub sums: bool,
    pub min: bool,
    pub max: bool,
}

/// The running statistics of the newest `n` points of a window.
#[derive(Debug, Clone)]
pub(super) struct Running {
    n: usize,
    sums: Option<Sums>,
    min: Option<Deque>,
    max: Option<Deque>,
}

/// The sums behind mean, std, rms and slope, over `m` points shifted by
/// `shift`.
#[derive(Debug, Clone, Default)]
struct Sums {
    shift: f64,
    /// Σd
    s1: f64,
    /// Σd²
    s2: f64,
    /// Σ j·d, j = 0 for the oldest point held.
    si: f64,
    /// Points held: min(n, points pushed), as the window's own count.
    m: usize,
    /// Pushes since the fresh sums started.
    since: usize,
    /// The largest `m·Σd²` since the last exact sums.
    peak: f64,
    /// The fresh sums: the points pushed since they started, shifted by the
    /// first of them (`fm` points: Σd, Σd², Σ j·d).
    f_shift: f64,
    f1: f64,
    f2: f64,
    fi: f64,
    fm: usize,
    /// An exact recompute is due (set by a push, cleared by the recompute).
    due: bool,
}

/// A monotonic deque: the candidates for the window's minimum (or
/// maximum), oldest first, each better than every older one still held.
/// A ring of `n` slots, allocated when the statistic is registered.
#[derive(Debug, Clone)]
struct Deque {
    /// (push index, value)
    slots: Vec<(u64, f64)>,
    start: usize,
    len: usize,
    /// true: keeps the maximum.
    max: bool,
}

impl Deque {
    fn new(n: usize, max: bool) -> Self {
        Deque {
            slots: vec![(0, 0.0); n.max(1)],
            start: 0,
            len: 0,
            max,
        }
    }

    fn slot(&self, k: usize) -> usize {
        let i = self.start + k;
        if i >= self.slots.len() {
            i - self.slots.len()
        } else {
            i
        }
    }

    /// Point `at` (the push index) enters a window of `n` points.
    fn push(&mut self, at: u64, value: f64, n: usize) {
        // Expire what the window no longer holds: indices at or before
        // `at - n`.
        while self.len > 0 && self.slots[self.start].0 + n as u64 <= at {
            self.start = self.slot(1);
            self.len -= 1;
        }
        // An older candidate no better than the new point can never be the
        // answer again (ties: the newer one stays, it leaves later).
        while self.len > 0 {
            let back = self.slots[self.slot(self.len - 1)].1;
            let dominated = if self.max {
                back <= value
            } else {
                back >= value
            };
            if !dominated {
                break;
            }
            self.len -= 1;
        }
        let i = self.slot(self.len);
        self.slots[i] = (at, value);
        self.len += 1;
    }

    fn front(&self) -> Option<f64> {
        (self.len > 0).then(|| self.slots[self.start].1)
    }
}

impl Sums {
    /// Exact sums over `a` then `b` (oldest first), shifted by the newest
    /// point: the value the next points are most likely to be near, so a
    /// level shift stops costing digits at the first recompute after it.
    fn rebuild(&mut self, a: &[f64], b: &[f64]) {
        let shift = b.last().or(a.last()).copied().unwrap_or(0.0);
        let (mut s1, mut s2, mut si) = (0.0, 0.0, 0.0);
        for (j, &x) in a.iter().chain(b).enumerate() {
            let d = x - shift;
            s1 += d;
            s2 += d * d;
            si += j as f64 * d;
        }
        let m = a.len() + b.len();
        // The fresh sums and their schedule go on as they were.
        self.shift = shift;
        self.s1 = s1;
        self.s2 = s2;
        self.si = si;
        self.m = m;
        self.peak = s2 * m as f64;
        self.due = false;
    }

    /// `value` enters; `dropped` leaves when the window was already full.
    /// Says whether the sums now need an exact recompute.
    fn push(&mut self, value: f64, dropped: Option<f64>, n: usize) -> bool {
        if self.m == 0 {
            // A fresh start: a signal constant from here on sums exact zeros.
            self.shift = value;
        }
        let d = value - self.shift;
        match dropped {
            None => {
                self.si += self.m as f64 * d;
                self.s1 += d;
                self.s2 += d * d;
                self.m += 1;
            }
            Some(old) => {
                let e = old - self.shift;
                // Every point kept moves one place towards the oldest, so
                // Σ j·d loses one of each of them (Σd without the dropped
                // one); the oldest had j = 0 and the new one takes n − 1.
                self.s1 -= e;
                self.si -= self.s1;
                self.si += (n - 1) as f64 * d;
                self.s1 += d;
                self.s2 += d * d - e * e;
            }
        }
        if self.fm == 0 {
            self.f_shift = value;
        }
        let fd = value - self.f_shift;
        self.fi += self.fm as f64 * fd;
        self.f1 += fd;
        self.f2 += fd * fd;
        self.fm += 1;
        self.since += 1;
        if self.since >= n {
            // The fresh sums hold exactly the window (unless they started
            // when the window already held older points: the first round
            // after set-up, which is skipped).
            if self.fm == self.m {
                self.shift = self.f_shift;
                self.s1 = self.f1;
                self.s2 = self.f2;
                self.si = self.fi;
                self.peak = self.s2 * self.m as f64;
            }
            (self.f1, self.f2, self.fi, self.fm, self.since) = (0.0, 0.0, 0.0, 0, 0);
        }
        let mf = self.m as f64;
        let scaled = self.s2 * mf;
        self.peak = self.peak.max(scaled);
        let spread = scaled - self.s1 * self.s1;
        // `peak > 0`: with every Σd² term 0 (all d zero, or squares that
        // underflow) there is nothing a recompute would fix, and a spread
        // rounded below 0 must not ask for one on every push.
        self.due = self.peak > 0.0 && spread < self.peak * REBUILD_BELOW;
        self.due
    }
}

impl Running {
    /// Running statistics over `n` points (at least one), none kept yet.
    pub(super) fn new(n: usize) -> Self {
        Running {
            n: n.max(1),
            sums: None,
            min: None,
            max: None,
        }
    }

    pub(super) fn n(&self) -> usize {
        self.n
    }

    /// Starts keeping what `wants` asks for and was not kept yet, from the
    /// newest points `a` then `b` (oldest first, `min(n, held)` of them, the
    /// first pushed as number `first`). `phase` staggers the periodic
    /// recompute between windows, so they do not all fall on one tick.
    /// Allocates: set-up only.
    pub(super) fn add(&mut self, wants: Wants, a: &[f64], b: &[f64], first: u64, phase: usize) {
        if wants.sums && self.sums.is_none() {
            let mut s = Sums::default();
            s.rebuild(a, b);
            s.since = phase % self.n;
            self.sums = Some(s);
        }
        for (want, max) in [(wants.min, false), (wants.max, true)] {
            let slot = if max { &mut self.max } else { &mut self.min };
            if want && slot.is_none() {
                let mut q = Deque::new(self.n, max);
                for (k, &x) in a.iter().chain(b).enumerate() {
                    q.push(first + k as u64, x, self.n);
                }
                *slot = Some(q);
            }
        }
    }

    /// Point number `at` enters with `value`; `dropped` is the point that
    /// leaves the newest `n` (None while fewer than `n` are held). Says
    /// whether the sums need [`Running::rebuild`] once the point is in the
    /// ring.
    pub(super) fn push(&mut self, at: u64, value: f64, dropped: Option<f64>) -> bool {
        let n = self.n;
        if let Some(q) = &mut self.min {
            q.push(at, value, n);
        }
        if let Some(q) = &mut self.max {
            q.push(at, value, n);
        }
        self.sums
            .as_mut()
            .is_some_and(|s| s.push(value, dropped, n))
    }

    /// Whether the last push asked for [`Running::rebuild`].
    pub(super) fn needs_rebuild(&self) -> bool {
        self.sums.as_ref().is_some_and(|s| s.due)
    }

    /// Recomputes the sums exactly from the newest points, `a` then `b`.
    pub(super) fn rebuild(&mut self, a: &[f64], b: &[f64]) {
        if let Some(s) = &mut self.sums {
            s.rebuild(a, b);
        }
    }

    /// The statistic over the `m` points held (`m >= 1`), if it is kept:
    /// `None` for a statistic this length does not keep.
    #[inline]
    pub(super) fn read(&self, stat: RunningStat, tick_seconds: f64) -> Option<f64> {
        match stat {
            RunningStat::Min => self.min.as_ref()?.front(),
            RunningStat::Max => self.max.as_ref()?.front(),
            RunningStat::Mean | RunningStat::Std | RunningStat::Rms | RunningStat::Slope => {
                let s = self.sums.as_ref()?;
                (s.m > 0).then(|| {
                    sums_value(
                        stat,
                        s.shift,
                        s.s1,
                        s.s2,
                        s.si,
                        SumsOf::new(s.m),
                        tick_seconds,
                    )
                })
            }
        }
    }
}

/// Mean, std, rms or slope (min and max are not sums: NaN) of `m >= 1`
/// points from their sums shifted by `shift`: `Σd`, `Σd²` and `Σ j·d`
/// (`j = 0` for the oldest point). The one formula for both banks
/// ([`Running`] here, and the stage's time-major one, src/ml/tickbank.rs),
/// so that both give the same bits from the same sums.
#[inline(always)]
pub(super) fn sums_value(
    stat: RunningStat,
    shift: f64,
    s1: f64,
    s2: f64,
    si: f64,
    m: SumsOf,
    tick_seconds: f64,
) -> f64 {
    let mf = m.mf;
    let md = s1 / mf;
    match stat {
        RunningStat::Mean => shift + md,
        // Σ(d − d̄)² = Σd² − d̄·Σd; rounding may take a variance of (near)
        // zero just below it, never under the root.
        RunningStat::Std => ((s2 - md * s1) / mf).max(0.0).sqrt(),
        // mean(x²) = c² + 2c·d̄ + mean(d²).
        RunningStat::Rms => (shift * shift + 2.0 * shift * md + s2 / mf).max(0.0).sqrt(),
        RunningStat::Slope if m.m < 2 => 0.0,
        RunningStat::Slope => {
            // Σ(j − j̄)(d − d̄) = Σ j·d − d̄·Σj, over Σ(j − j̄)² = m(m² − 1)/12.
            let sxy = si - md * m.sum_j;
            sxy / m.sxx / tick_seconds
        }
        RunningStat::Min | RunningStat::Max => f64::NAN,
    }
}

/// What [`sums_value`] needs of the number of points `m`, computed once
/// per `m` (the stage's bank keeps it per window length, whose `m` all its
/// signals share): `m` as f64, `Σj = m(m − 1)/2` and `Σ(j − j̄)² =
/// m(m² − 1)/12`. The same operations whoever computes them, so the same
/// bits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct SumsOf {
    m: usize,
    mf: f64,
    sum_j: f64,
    sxx: f64,
}

impl SumsOf {
    pub(super) fn new(m: usize) -> Self {
        let mf = m as f64;
        SumsOf {
            m,
            mf,
            sum_j: mf * (mf - 1.0) / 2.0,
            sxx: mf * (mf * mf - 1.0) / 12.0,
        }
    }
}

/// The statistics a [`Running`] can keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RunningStat {
    Mean,
    Std,
    Rms,
    Slope,
    Min,
    Max,
}

impl RunningStat {
    pub(super) fn wants(self) -> Wants {
        match self {
            RunningStat::Min => Wants {
                min: true,
                ..Wants::default()
            },
            RunningStat::Max => Wants {
                max: true,
                ..Wants::default()
            },
            _ => Wants {
                sums: true,
                ..Wants::default()
            },
        }
    }
}
