//! Feature windows: every signal a model reads (a tag by role or name, or a
//! physics output) is sampled once per tick onto a regular grid, and each
//! feature is a statistic of that signal's last `n` grid points
//! (docs/ml.md, "Features and alarms"; ML_DESIGN's feature semantics, which
//! the Python training side reproduces).
//!
//! One [`SignalWindow`] per signal, shared by every feature that reads it and
//! sized by the longest span any of them asks for; a [`SignalBank`] holds them
//! all and knows the tick length (slopes are per second). A [`FeatureRow`] is
//! one model row's ordered feature list; it fills a row of `f32` and says
//! whether the row is good or uncertain, and why.
//!
//! Each window statistic a row asks for is kept running as the points are
//! pushed (src/ml/window.rs): a read is O(1) whatever the window's length,
//! and a push costs a few operations per (window length, statistic) kept.
//! A statistic nobody registered (a direct [`SignalBank::stat`] call with
//! another length) is computed from the ring through nalgebra, over its (at
//! most two) contiguous slices. Nothing here allocates per tick once the
//! windows and the [`Scratch`] have reached their size, reads a clock or does
//! I/O.

use std::fmt;

use nalgebra::{DVector, DVectorView};
use thiserror::Error;

use super::window::{Running, RunningStat};

/// The statistic a feature takes of its signal.
///
/// `n` (in [`FeatureSpec`]) is a number of grid points for the window
/// statistics, a number of ticks back for [`Stat::Lag`], and ignored for
/// [`Stat::Value`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stat {
    /// The current grid value (the same as a lag of 0).
    Value,
    /// Arithmetic mean.
    Mean,
    /// Population standard deviation (divides by n, like numpy's default
    /// `ddof=0`): defined for a single point (0), and what the training side
    /// computes with `np.std`.
    Std,
    /// Root mean square, `sqrt(mean(x²))`.
    Rms,
    Min,
    Max,
    /// Least-squares slope over the grid, in the signal's units per second.
    /// A single point has no trend: 0.
    Slope,
    /// The grid value `n` ticks ago (`n = 0` is the current value).
    Lag,
}

impl Stat {
    /// Whether `n` is a window length (at least one point).
    pub(super) fn is_window(self) -> bool {
        !matches!(self, Stat::Value | Stat::Lag)
    }

    /// The running statistic behind it, for a window statistic.
    pub(super) fn running(self) -> Option<RunningStat> {
        Some(match self {
            Stat::Mean => RunningStat::Mean,
            Stat::Std => RunningStat::Std,
            Stat::Rms => RunningStat::Rms,
            Stat::Slope => RunningStat::Slope,
            Stat::Min => RunningStat::Min,
            Stat::Max => RunningStat::Max,
            Stat::Value | Stat::Lag => return None,
        })
    }

    /// How many grid points of history the feature needs.
    pub(super) fn span(self, n: usize) -> usize {
        match self {
            Stat::Value => 1,
            Stat::Lag => n.saturating_add(1),
            _ => n,
        }
    }
}

impl fmt::Display for Stat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stat::Value => "value",
            Stat::Mean => "mean",
            Stat::Std => "std",
            Stat::Rms => "rms",
            Stat::Min => "min",
            Stat::Max => "max",
            Stat::Slope => "slope",
            Stat::Lag => "lag",
        })
    }
}

/// Why a feature's value is not to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unusable {
    /// Fewer points on the grid than the feature needs (start-up): the value
    /// is computed over the `have` points there are.
    NotFull { have: usize, need: usize },
    /// A point the feature reads was bad or stale, the newest of them
    /// `ticks_ago` ticks ago (0 = this tick).
    BadInput { ticks_ago: usize },
}

impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::NotFull { have, need } => {
                write!(f, "window not full ({have} of {need} points)")
            }
            Unusable::BadInput { ticks_ago: 0 } => f.write_str("bad or stale input this tick"),
            Unusable::BadInput { ticks_ago } => {
                write!(f, "bad or stale input {ticks_ago} ticks ago")
            }
        }
    }
}

/// One statistic of one signal.
///
/// `value` is always the best the window allows (over the points there are,
/// bad ones included at their last good value), so a row marked uncertain
/// still has numbers; it is NaN only before the signal's first sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    pub value: f64,
    pub unusable: Option<Unusable>,
}

impl Reading {
    pub fn is_usable(&self) -> bool {
        self.unusable.is_none()
    }
}

/// Errors in how features were set up (never in the data: bad data makes a
/// row uncertain, not an error).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum FeatureError {
    #[error("the tick length must be a positive number of seconds, not {0}")]
    BadTick(f64),
    #[error("feature {feature} reads signal {signal}, which the bank does not have")]
    UnknownSignal { feature: usize, signal: u32 },
    #[error("feature {feature} ({stat}) needs a window of at least one point")]
    EmptyWindow { feature: usize, stat: Stat },
    #[error("a row of {expected} features cannot be written into {got} slots")]
    RowLength { expected: usize, got: usize },
}

/// A signal's place in a [`SignalBank`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignalId(u32);

impl SignalId {
    /// The signal numbered `i` (as [`SignalBank::add_signal`] numbers
    /// them, from 0).
    pub fn new(i: u32) -> Self {
        SignalId(i)
    }

    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// One signal's recent history on the tick grid: a ring of values and of
/// their quality.
#[derive(Debug, Clone, Default)]
pub struct SignalWindow {
    values: Vec<f64>,
    ok: Vec<bool>,
    /// Where the next push goes.
    head: usize,
    /// Points held, up to the capacity (not derived from `pushes`: a window
    /// grown after start holds only what it had).
    filled: usize,
    pushes: u64,
    /// The push count at the newest not-ok point, so "is there a bad point
    /// in the last n" is one subtraction, not a scan.
    last_bad: Option<u64>,
    /// The running statistics registered, one per window length, in the
    /// order registered (a [`FeatureRow`] keeps their indices).
    running: Vec<Running>,
    /// Staggers the running sums' periodic recompute between signals.
    phase: usize,
}

impl SignalWindow {
    /// An empty window holding up to `capacity` points (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        SignalWindow {
            values: vec![0.0; capacity],
            ok: vec![false; capacity],
            ..SignalWindow::default()
        }
    }

    pub fn capacity(&self) -> usize {
        self.values.len()
    }

    /// Points held: those pushed so far, up to the capacity.
    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Grows the window to hold at least `span` points, keeping its history.
    /// Allocates: call it while setting up, not per tick.
    pub fn reserve(&mut self, span: usize) {
        let old = self.capacity();
        if span <= old {
            return;
        }
        // The running statistics hold values and push counts, not ring
        // positions: they survive the new layout as they are.
        let kept = self.len();
        let (a, b) = self.slices(kept);
        let mut values = Vec::with_capacity(span);
        values.extend_from_slice(a);
        values.extend_from_slice(b);
        values.resize(span, 0.0);
        let mut ok = Vec::with_capacity(span);
        for k in (1..=kept).rev() {
            ok.push(self.ok[self.back(k)]);
        }
        ok.resize(span, false);
        self.values = values;
        self.ok = ok;
        self.head = kept % span;
    }

    /// Adds this tick's grid point. `ok` is false for a bad or stale value;
    /// a value that is not finite is never stored (it would poison every
    /// statistic it is in): the previous point's value stands in for it,
    /// marked bad, so a best-effort row stays finite.
    pub fn push(&mut self, value: f64, ok: bool) {
        let ok = ok && value.is_finite();
        let value = if value.is_finite() {
            value
        } else if self.pushes == 0 {
            0.0
        } else {
            self.values[self.back(1)]
        };
        let head = self.head;
        let cap = self.capacity();
        // Before the write: with n = capacity, the point leaving is the one
        // this push overwrites.
        let mut rebuild = false;
        for r in &mut self.running {
            let n = r.n();
            let dropped = (self.filled >= n).then(|| self.values[ring_back(head, cap, n)]);
            rebuild |= r.push(self.pushes, value, dropped);
        }
        self.values[head] = value;
        self.ok[head] = ok;
        if !ok {
            self.last_bad = Some(self.pushes);
        }
        self.pushes += 1;
        self.filled = (self.filled + 1).min(cap);
        // Not `% capacity`: a division per push is most of a push's cost.
        self.head = if head + 1 == cap { 0 } else { head + 1 };
        if rebuild {
            self.rebuild_running();
        }
    }

    /// Recomputes the running sums that asked for it (see
    /// src/ml/window.rs) from the ring.
    #[cold]
    fn rebuild_running(&mut self) {
        let (values, head, filled) = (&self.values, self.head, self.filled);
        for r in &mut self.running {
            if r.needs_rebuild() {
                let (a, b) = ring_slices(values, head, r.n().min(filled));
                r.rebuild(a, b);
            }
        }
    }

    /// Keeps `stat` over the last `n` points running from now on (and from
    /// the points already held), and says where: the index
    /// [`SignalWindow::stat_at`] takes. `None` for a statistic that is not a
    /// window one, or a window longer than the ring. Allocates: set-up only.
    pub fn track(&mut self, stat: Stat, n: usize) -> Option<usize> {
        let wants = stat.running()?.wants();
        if n == 0 || n > self.capacity() {
            return None;
        }
        let at = match self.running.iter().position(|r| r.n() == n) {
            Some(at) => at,
            None => {
                self.running.push(Running::new(n));
                self.running.len() - 1
            }
        };
        let m = n.min(self.filled);
        let (a, b) = ring_slices(&self.values, self.head, m);
        let first = self.pushes - m as u64;
        self.running[at].add(wants, a, b, first, self.phase);
        Some(at)
    }

    /// Ring index of the point `k` pushes back (1 = the newest).
    fn back(&self, k: usize) -> usize {
        ring_back(self.head, self.capacity(), k)
    }

    /// The newest `m` points (`m <= len`), oldest first, as the ring's two
    /// contiguous pieces.
    fn slices(&self, m: usize) -> (&[f64], &[f64]) {
        ring_slices(&self.values, self.head, m)
    }

    /// Ticks since the newest bad point, if it is among the last `n`.
    fn bad_within(&self, n: usize) -> Option<usize> {
        let ago = self.pushes - 1 - self.last_bad?;
        usize::try_from(ago).ok().filter(|&ago| ago < n)
    }

    /// The statistic over the last `n` grid points (for [`Stat::Lag`], the
    /// point `n` ticks ago). `tick_seconds` scales the slope; `scratch` is
    /// working memory, grown on first need.
    pub fn stat(&self, stat: Stat, n: usize, tick_seconds: f64, scratch: &mut Scratch) -> Reading {
        let at = self.running.iter().position(|r| r.n() == n);
        self.stat_at(at, stat, n, tick_seconds, scratch)
    }

    /// [`SignalWindow::stat`] with the running statistics' index
    /// [`SignalWindow::track`] gave, so a read does not search for it. An
    /// index that does not keep this statistic over `n` points is ignored
    /// (the statistic is then computed from the ring).
    // `inline(always)`: returned from a call, a `Reading` goes through
    // memory in pieces that the caller's copy of it cannot be forwarded
    // from (a store-forwarding stall per feature, most of a row fill's cost
    // in a profile); inlined, it stays in registers.
    #[inline(always)]
    pub fn stat_at(
        &self,
        at: Option<usize>,
        stat: Stat,
        n: usize,
        tick_seconds: f64,
        scratch: &mut Scratch,
    ) -> Reading {
        match stat {
            Stat::Value => self.lag(0),
            Stat::Lag => self.lag(n),
            _ => self.window_stat(at, stat, n, tick_seconds, scratch),
        }
    }

    #[inline(always)]
    fn lag(&self, n: usize) -> Reading {
        lag_reading(self.len(), n, |k| {
            let at = self.back(k);
            (self.values[at], self.ok[at])
        })
    }

    #[inline(always)]
    fn window_stat(
        &self,
        at: Option<usize>,
        stat: Stat,
        n: usize,
        tick_seconds: f64,
        scratch: &mut Scratch,
    ) -> Reading {
        let have = self.len();
        let m = n.min(have);
        if m == 0 {
            return Reading {
                value: f64::NAN,
                unusable: Some(Unusable::NotFull { have, need: n }),
            };
        }
        let running = stat.running().and_then(|rs| {
            let r = self.running.get(at?).filter(|r| r.n() == n)?;
            r.read(rs, tick_seconds)
        });
        let value = match running {
            Some(v) => v,
            None => {
                let (a, b) = self.slices(m);
                window_value(stat, a, b, tick_seconds, scratch)
            }
        };
        // A bad point outranks a short window: it is the one a person can fix.
        let unusable = match self.bad_within(n) {
            Some(ticks_ago) => Some(Unusable::BadInput { ticks_ago }),
            None if have < n => Some(Unusable::NotFull { have, need: n }),
            None => None,
        };
        Reading { value, unusable }
    }
}

/// The point `n` ticks ago of a window holding `have` points, as a
/// reading; `point(k)` is the (value, ok) of the point `k` pushes back
/// (1 = the newest). Before there are `n + 1` points the oldest stands in,
/// marked not full. Both banks read lags through it.
#[inline(always)]
pub(super) fn lag_reading(have: usize, n: usize, point: impl Fn(usize) -> (f64, bool)) -> Reading {
    let need = n.saturating_add(1);
    if have == 0 {
        return Reading {
            value: f64::NAN,
            unusable: Some(Unusable::NotFull { have, need }),
        };
    }
    if n >= have {
        // Start-up: the oldest point is the best stand-in there is.
        return Reading {
            value: point(have).0,
            unusable: Some(Unusable::NotFull { have, need }),
        };
    }
    let (value, ok) = point(n + 1);
    Reading {
        value,
        unusable: (!ok).then_some(Unusable::BadInput { ticks_ago: n }),
    }
}

/// Ring index of the point `k` pushes back (1 = the newest) in a ring of
/// `cap` points whose next push goes to `head`.
fn ring_back(head: usize, cap: usize, k: usize) -> usize {
    // A compare, not `%`: this runs for every window length kept on every
    // push and for every lag read, and a division is most of its cost.
    let k = if k > cap { k % cap } else { k };
    if head >= k { head - k } else { head + cap - k }
}

/// The newest `m` points (`m <=` those held), oldest first, as the ring's
/// two contiguous pieces.
fn ring_slices(values: &[f64], head: usize, m: usize) -> (&[f64], &[f64]) {
    let cap = values.len();
    let start = ring_back(head, cap, m);
    if start + m <= cap {
        (&values[start..start + m], &[])
    } else {
        (&values[start..], &values[..head])
    }
}

/// Working memory for the statistics computed from the ring (those no row
/// registered) that centre the window (mean, std, slope), and the constant
/// vectors their sums are dot products with.
/// nalgebra's `dot` and `axpy` run tight loops over the slices, where its
/// `sum`, `variance` and `add_scalar_mut` step an element iterator: a
/// 300-point std takes 0.33 µs this way against 1.6 µs
/// (benches/ml_features.rs). One per thread that computes features; it
/// grows to the longest window it meets and then never allocates again.
#[derive(Debug, Clone)]
pub struct Scratch {
    centred: DVector<f64>,
    ones: DVector<f64>,
    /// 0, 1, 2, …: grid positions, for the slope.
    ramp: DVector<f64>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch::with_capacity(0)
    }
}

impl Scratch {
    pub fn with_capacity(n: usize) -> Self {
        Scratch {
            centred: DVector::zeros(n),
            ones: DVector::from_element(n, 1.0),
            ramp: DVector::from_fn(n, |i, _| i as f64),
        }
    }

    fn grow(&mut self, n: usize) {
        if self.centred.len() < n {
            *self = Scratch::with_capacity(n);
        }
    }
}

/// `stat` over the points `a` then `b` (oldest first; `a` not empty).
fn window_value(stat: Stat, a: &[f64], b: &[f64], tick_seconds: f64, scratch: &mut Scratch) -> f64 {
    let m = a.len() + b.len();
    let mf = m as f64;
    let va = DVectorView::from_slice(a, a.len());
    let vb = DVectorView::from_slice(b, b.len());
    // nalgebra's min/max of an empty vector is 0, so `b` joins only when it
    // has points.
    match stat {
        Stat::Min if b.is_empty() => va.min(),
        Stat::Min => va.min().min(vb.min()),
        Stat::Max if b.is_empty() => va.max(),
        Stat::Max => va.max().max(vb.max()),
        Stat::Rms => ((va.norm_squared() + vb.norm_squared()) / mf).sqrt(),
        Stat::Mean | Stat::Std | Stat::Slope => {
            scratch.grow(m);
            // Shifted by the oldest point: a constant window becomes exact
            // zeros (std and slope exactly 0, mean exactly the constant), and
            // a small variation on a large offset keeps its digits.
            let x0 = a[0];
            let mut d = scratch.centred.rows_mut(0, m);
            d.as_mut_slice()[..a.len()].copy_from_slice(a);
            d.as_mut_slice()[a.len()..].copy_from_slice(b);
            let ones = scratch.ones.rows(0, m);
            // `axpy` against the ones: see `Scratch`.
            d.axpy(-x0, &ones, 1.0);
            let md = ones.dot(&d) / mf;
            match stat {
                Stat::Mean => x0 + md,
                // Two passes (centred on the mean, then squared): a sum of
                // squares, never negative, so no NaN from the root.
                Stat::Std => {
                    d.axpy(-md, &ones, 1.0);
                    (d.norm_squared() / mf).sqrt()
                }
                _ if m < 2 => 0.0,
                _ => {
                    // Σ(i - ī)(d_i - d̄) = Σ i·d_i - d̄·Σi, over Σ(i - ī)² = m(m²-1)/12.
                    let sxy = scratch.ramp.rows(0, m).dot(&d) - md * (mf * (mf - 1.0) / 2.0);
                    let sxx = mf * (mf * mf - 1.0) / 12.0;
                    sxy / sxx / tick_seconds
                }
            }
        }
        Stat::Value | Stat::Lag => a[a.len() - 1],
    }
}

/// Every signal the features read, on one tick grid.
#[derive(Debug, Clone)]
pub struct SignalBank {
    tick_seconds: f64,
    signals: Vec<SignalWindow>,
}

impl SignalBank {
    pub fn new(tick_seconds: f64) -> Result<Self, FeatureError> {
        if !(tick_seconds.is_finite() && tick_seconds > 0.0) {
            return Err(FeatureError::BadTick(tick_seconds));
        }
        Ok(SignalBank {
            tick_seconds,
            signals: Vec::new(),
        })
    }

    pub fn tick_seconds(&self) -> f64 {
        self.tick_seconds
    }

    /// A new signal with room for one point; the features that read it
    /// reserve the rest ([`FeatureRow::new`]).
    pub fn add_signal(&mut self) -> SignalId {
        let id = SignalId(u32::try_from(self.signals.len()).unwrap_or(u32::MAX));
        let mut window = SignalWindow::new(1);
        // Signals registered together recompute their sums on different
        // ticks (a prime stride, so windows of round lengths spread too).
        window.phase = self.signals.len().wrapping_mul(7919);
        self.signals.push(window);
        id
    }

    pub fn len(&self) -> usize {
        self.signals.len()
    }

    /// Sets the phase of a signal's periodic exact recompute (before its
    /// features are registered): tests hold this bank to the stage's
    /// time-major one (src/ml/tickbank.rs), which phases by chunk.
    #[cfg(test)]
    pub(super) fn set_phase(&mut self, id: SignalId, phase: usize) {
        if let Some(w) = self.signals.get_mut(id.index()) {
            w.phase = phase;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.signals.is_empty()
    }

    pub fn window(&self, id: SignalId) -> Option<&SignalWindow> {
        self.signals.get(id.index())
    }

    /// This tick's point of one signal (see [`SignalWindow::push`]). An
    /// unknown id is a wiring mistake the caller made at set-up; it is
    /// ignored rather than panicking in the tick.
    pub fn push(&mut self, id: SignalId, value: f64, ok: bool) {
        if let Some(w) = self.signals.get_mut(id.index()) {
            w.push(value, ok);
        }
    }

    /// One feature's reading.
    pub fn stat(
        &self,
        id: SignalId,
        stat: Stat,
        n: usize,
        scratch: &mut Scratch,
    ) -> Option<Reading> {
        Some(self.window(id)?.stat(stat, n, self.tick_seconds, scratch))
    }
}

/// One feature of a row: a statistic of a signal over `n` grid points (or
/// `n` ticks back, for [`Stat::Lag`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureSpec {
    pub signal: SignalId,
    pub stat: Stat,
    pub n: usize,
}

/// Whether a row can be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowQuality {
    Good,
    /// At least one feature is unusable; this names one of them: the first
    /// with a bad input if any, else the first whose window is not full.
    Uncertain {
        feature: usize,
        reason: Unusable,
    },
}

impl fmt::Display for RowQuality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RowQuality::Good => f.write_str("good"),
            RowQuality::Uncertain { feature, reason } => write!(f, "feature {feature}: {reason}"),
        }
    }
}

/// A row's quality from its features' readings, in order: the first
/// feature with a bad input if any, else the first whose window is not
/// full (see [`RowQuality`]). Both banks fill rows through it.
#[derive(Debug, Default)]
pub(super) struct QualityScan {
    first_bad: Option<(usize, Unusable)>,
    first_short: Option<(usize, Unusable)>,
}

impl QualityScan {
    #[inline(always)]
    pub(super) fn see(&mut self, feature: usize, unusable: Option<Unusable>) {
        match unusable {
            Some(reason @ Unusable::BadInput { .. }) if self.first_bad.is_none() => {
                self.first_bad = Some((feature, reason));
            }
            Some(reason @ Unusable::NotFull { .. }) if self.first_short.is_none() => {
                self.first_short = Some((feature, reason));
            }
            _ => {}
        }
    }

    pub(super) fn row(self) -> RowQuality {
        match self.first_bad.or(self.first_short) {
            Some((feature, reason)) => RowQuality::Uncertain { feature, reason },
            None => RowQuality::Good,
        }
    }
}

/// Checks a row's features against a bank of `signals` signals: every
/// window statistic over at least one point, every signal in the bank.
/// The first feature that fails is named. Both banks check rows with it.
pub(super) fn check_specs(specs: &[FeatureSpec], signals: usize) -> Result<(), FeatureError> {
    for (feature, spec) in specs.iter().enumerate() {
        if spec.stat.is_window() && spec.n == 0 {
            return Err(FeatureError::EmptyWindow {
                feature,
                stat: spec.stat,
            });
        }
        if spec.signal.index() >= signals {
            return Err(FeatureError::UnknownSignal {
                feature,
                signal: spec.signal.0,
            });
        }
    }
    Ok(())
}

/// One model row's features, in the model's input order.
#[derive(Debug, Clone)]
pub struct FeatureRow {
    specs: Vec<FeatureSpec>,
    /// Per feature, where its window keeps it running
    /// ([`SignalWindow::track`]).
    running: Vec<Option<usize>>,
}

impl FeatureRow {
    /// Checks the features against the bank, grows each signal's window
    /// to the longest span asked of it, and has each window statistic kept
    /// running.
    pub fn new(bank: &mut SignalBank, specs: Vec<FeatureSpec>) -> Result<Self, FeatureError> {
        check_specs(&specs, bank.signals.len())?;
        let mut running = Vec::with_capacity(specs.len());
        for spec in &specs {
            // Checked just above: every signal is in the bank.
            let window = bank.signals.get_mut(spec.signal.index());
            running.push(window.and_then(|w| {
                w.reserve(spec.stat.span(spec.n));
                w.track(spec.stat, spec.n)
            }));
        }
        Ok(FeatureRow { specs, running })
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    pub fn specs(&self) -> &[FeatureSpec] {
        &self.specs
    }

    /// Writes the row into `out` (one slot per feature: a slice of a batch
    /// tensor) and says whether it is good. Allocation-free.
    pub fn fill(
        &self,
        bank: &SignalBank,
        scratch: &mut Scratch,
        out: &mut [f32],
    ) -> Result<RowQuality, FeatureError> {
        if out.len() != self.specs.len() {
            return Err(FeatureError::RowLength {
                expected: self.specs.len(),
                got: out.len(),
            });
        }
        let mut quality = QualityScan::default();
        let features = self.specs.iter().zip(&self.running).zip(out.iter_mut());
        for (feature, ((spec, &at), slot)) in features.enumerate() {
            // `new` checked every id against this bank, and banks only grow.
            let Some(window) = bank.window(spec.signal) else {
                return Err(FeatureError::UnknownSignal {
                    feature,
                    signal: spec.signal.0,
                });
            };
            let reading = window.stat_at(at, spec.stat, spec.n, bank.tick_seconds, scratch);
            *slot = reading.value as f32;
            quality.see(feature, reading.unusable);
        }
        Ok(quality.row())
    }

    /// The row as a new vector (allocates; [`FeatureRow::fill`] does not).
    pub fn row(
        &self,
        bank: &SignalBank,
        scratch: &mut Scratch,
    ) -> Result<(Vec<f32>, RowQuality), FeatureError> {
        let mut out = vec![0.0; self.specs.len()];
        let quality = self.fill(bank, scratch, &mut out)?;
        Ok((out, quality))
    }
}

#[cfg(test)]
#[path = "features_tests.rs"]
mod tests;
