//! The stage's feature windows, laid out time-major (issue 11, cost per
//! row). The stage samples every signal once per tick, so a tick's points
//! form one row; this bank keeps each window as a ring of such rows, and
//! each running statistic as one array per (window length, statistic)
//! across the signals. A tick's push is then a handful of loops over
//! contiguous arrays, which the compiler vectorises, where one
//! [`SignalWindow`](super::features::SignalWindow) per signal took a
//! dozen scattered cache lines and a branchy deque walk per signal: with
//! hundreds of machines that scattered traffic evicted the model's own
//! data (a forest's trees) between runs.
//!
//! The numbers are the same bits as [`SignalBank`](super::features::SignalBank)'s
//! for the same points (a test holds the two against each other on random
//! streams):
//! - mean, std, rms and slope come from the same running sums, updated by
//!   the same operations in the same order (src/ml/window.rs), and read
//!   through the same formula ([`window::sums_value`]); a column's exact
//!   recompute falls on the same pushes, given the same phase;
//! - min and max come from van Herk / Gil-Werman blocks instead of
//!   monotonic deques: the running extreme of the current block of `n`
//!   pushes, and the previous block's suffix extremes, computed once per
//!   block. On ties the newer point wins, which is the point a deque keeps,
//!   so `-0.0` against `0.0` comes out as the deque has it.
//!
//! Signals are grouped by what they keep (ring length, and the set of
//! window lengths and statistics), so that a signal read by one lag does
//! not carry a 30 s ring because another signal needs one. Every signal is
//! pushed on every tick ([`TickBank::set`] then [`TickBank::commit`]); the
//! layout is fixed when the bank is built, before the first tick. Nothing
//! here allocates once built, reads a clock or does I/O.
//!
//! For many rows at once, the features are read from a bulk table of each
//! statistic across a group's columns (src/ml/tickbank/table.rs).

use std::collections::BTreeMap;

use super::features::{
    FeatureError, FeatureSpec, QualityScan, Reading, RowQuality, SignalId, Stat, Unusable,
    check_specs, lag_reading,
};
use super::window::{self, REBUILD_BELOW, RunningStat, SumsOf, Wants};
use table::{Column, Slot};
pub(super) use table::{TableUse, Tabled};

mod table;

/// Columns that share a phase for their sums' periodic exact recompute, so
/// that the recompute reads each ring row's cache line once for all of
/// them (8 `f64` = 64 bytes).
pub(super) const CHUNK: usize = 8;

/// Spreads the chunks' recompute phases over the window length.
const PHASE_STRIDE: usize = 7919;

/// A signal's column in its group.
#[derive(Debug, Clone, Copy)]
struct Place {
    group: u32,
    col: u32,
}

/// Every signal the stage's features read, on one tick grid.
#[derive(Debug, Clone)]
pub(super) struct TickBank {
    tick_seconds: f64,
    place: Vec<Place>,
    groups: Vec<Group>,
    /// Rows pushed so far.
    pushes: u64,
    /// The bulk table: per slot, one statistic of every column of its
    /// group, as the `f32` a batch holds ([`TickBank::prepare`]).
    slots: Vec<Slot>,
    table: Vec<f32>,
    /// The push and the table's loops run compiled for AVX2 (four `f64`
    /// a step instead of SSE2's two) when the CPU has it: see
    /// [`Simd`].
    simd: Simd,
}

/// Which build of the bank's bulk loops runs.
///
/// The loops are written once; the AVX2 build is the same code compiled
/// with the wider vectors enabled, chosen at run time, as `memchr` and
/// `simdjson` do. The results are the same bits: every operation in them
/// (add, subtract, multiply, divide, square root, compare, `f64` to `f32`)
/// is correctly rounded in both builds, Rust never fuses a multiply and an
/// add on its own, and FMA is not enabled. A test holds the two builds to
/// each other on this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Simd {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2,
}

impl Simd {
    fn detect() -> Simd {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Simd::Avx2;
        }
        Simd::Baseline
    }
}

/// Signals that keep the same things, one column each.
#[derive(Debug, Clone)]
struct Group {
    cap: usize,
    width: usize,
    /// `cap` rows of `width` points, time-major.
    values: Vec<f64>,
    ok: Vec<bool>,
    /// Where the next row goes.
    head: usize,
    /// Rows held, up to `cap`.
    filled: usize,
    /// This tick's row, set signal by signal before the commit.
    incoming: Vec<f64>,
    incoming_ok: Vec<bool>,
    /// Per column: 1 + the push index of its newest bad point (0: none).
    last_bad: Vec<u64>,
    lengths: Vec<Length>,
    /// The columns whose sums asked for an exact recompute on this push
    /// (working memory of the commit).
    due: Vec<u32>,
    /// (shift, Σd, Σd², Σ j·d) per due column during a recompute.
    acc: Vec<[f64; 4]>,
}

/// What a group keeps over its newest `n` points.
#[derive(Debug, Clone)]
struct Length {
    n: usize,
    /// The next push's index modulo `n` (its place in its block of `n`),
    /// and whether that push is past the first block: counted, not divided
    /// for on every push.
    pos: usize,
    past_first: bool,
    sums: Option<Sums>,
    min: Option<Herk>,
    max: Option<Herk>,
}

/// The running sums of src/ml/window.rs, one array per field across the
/// columns. `m` (points held) is the same for every column.
#[derive(Debug, Clone)]
struct Sums {
    m: usize,
    /// What a read needs of `m`, kept with it.
    of_m: SumsOf,
    shift: Vec<f64>,
    s1: Vec<f64>,
    s2: Vec<f64>,
    si: Vec<f64>,
    peak: Vec<f64>,
    /// Per column: the last push asked for an exact recompute.
    due: Vec<bool>,
    /// The fresh sums (src/ml/window.rs), per column, shifted by their
    /// first point.
    f_shift: Vec<f64>,
    f1: Vec<f64>,
    f2: Vec<f64>,
    fi: Vec<f64>,
    /// Per chunk of [`CHUNK`] columns, which share their schedule: pushes
    /// since the fresh sums started, and points they hold.
    since: Vec<usize>,
    fm: Vec<usize>,
}

/// Van Herk / Gil-Werman sliding extreme over `n` points: blocks of `n`
/// pushes (push index `t`, block position `t % n`).
#[derive(Debug, Clone)]
struct Herk {
    max: bool,
    /// The extreme of the current block so far, per column.
    prefix: Vec<f64>,
    /// The previous block's suffix extremes: row `j` holds, per column,
    /// the extreme of its points `j..n`.
    suffix: Vec<f64>,
    /// The newest point's place in its block, and whether the window is
    /// all in that block (the first block, or its last point): kept by the
    /// commit, so a read does no division.
    at: usize,
    prefix_only: bool,
}

impl Herk {
    /// The extreme of an older and a newer value; on a tie the newer one
    /// (what a monotonic deque keeps).
    #[inline(always)]
    fn pick(max: bool, older: f64, newer: f64) -> f64 {
        let older_wins = if max { older > newer } else { older < newer };
        if older_wins { older } else { newer }
    }
}

/// A compiled feature: where its signal's column is and what to read.
#[derive(Debug, Clone, Copy)]
struct Feature {
    group: u32,
    col: u32,
    stat: Stat,
    n: usize,
    /// The group's length that keeps this window statistic.
    length: u32,
    /// Its entry in the bulk table.
    at: u32,
}

/// One model row's features, in the model's input order, compiled against
/// a [`TickBank`].
#[derive(Debug, Clone, Default)]
pub(super) struct TickRow {
    features: Vec<Feature>,
    /// Per signal the row reads: (group, column, the points its features
    /// need to be usable). With each group holding them and none of them
    /// bad, every feature is usable and the row is good without a check
    /// per feature.
    needs: Vec<(u32, u32, usize)>,
    /// The bulk table's slots the features read.
    slots: Vec<u32>,
    /// Each feature's entry in the bulk table, in input order: what a
    /// tabled fill reads (4 bytes a feature, not a whole [`Feature`]).
    ats: Vec<u32>,
}

/// Ring index of the row `k` pushes back (1 = the newest), `k <= cap`.
#[inline(always)]
fn back(head: usize, cap: usize, k: usize) -> usize {
    if head >= k { head - k } else { head + cap - k }
}

impl TickBank {
    /// The bank for `signals` signals (ids `0..signals`, as
    /// [`SignalBank::add_signal`](super::features::SignalBank::add_signal)
    /// numbers them) and the rows that read them, compiled.
    pub(super) fn build(
        tick_seconds: f64,
        signals: usize,
        rows: &[Vec<FeatureSpec>],
    ) -> Result<(TickBank, Vec<TickRow>), FeatureError> {
        if !(tick_seconds.is_finite() && tick_seconds > 0.0) {
            return Err(FeatureError::BadTick(tick_seconds));
        }
        // What each signal keeps: its ring's length, and per window length
        // the statistics.
        let mut span = vec![1usize; signals];
        let mut keeps: Vec<BTreeMap<usize, Wants>> = vec![BTreeMap::new(); signals];
        for specs in rows {
            check_specs(specs, signals)?;
            for spec in specs {
                let s = spec.signal.index();
                span[s] = span[s].max(spec.stat.span(spec.n));
                if let Some(rs) = spec.stat.running() {
                    let w = keeps[s].entry(spec.n).or_default();
                    let add = rs.wants();
                    w.sums |= add.sums;
                    w.min |= add.min;
                    w.max |= add.max;
                }
            }
        }
        // Signals that keep the same things share a group, in id order.
        type Signature = (usize, Vec<(usize, bool, bool, bool)>);
        let mut by_signature: BTreeMap<Signature, u32> = BTreeMap::new();
        let mut members: Vec<(Signature, usize)> = Vec::new();
        let mut place = Vec::with_capacity(signals);
        for s in 0..signals {
            let sig: Signature = (
                span[s],
                keeps[s]
                    .iter()
                    .map(|(&n, w)| (n, w.sums, w.min, w.max))
                    .collect(),
            );
            let next = members.len() as u32;
            let group = *by_signature.entry(sig.clone()).or_insert(next);
            if group == next {
                members.push((sig, 0));
            }
            let col = members[group as usize].1;
            members[group as usize].1 += 1;
            place.push(Place {
                group,
                col: col as u32,
            });
        }
        let groups = members
            .into_iter()
            .map(|((cap, lengths), width)| Group::new(cap, width, &lengths))
            .collect();
        let mut bank = TickBank {
            tick_seconds,
            place,
            groups,
            pushes: 0,
            slots: Vec::new(),
            table: Vec::new(),
            simd: Simd::detect(),
        };
        let compiled = rows
            .iter()
            .map(|specs| {
                let mut features = Vec::with_capacity(specs.len());
                let mut slots: Vec<u32> = Vec::new();
                for spec in specs {
                    let (f, slot) = bank.compile(*spec);
                    features.push(f);
                    if !slots.contains(&slot) {
                        slots.push(slot);
                    }
                }
                let mut needs: Vec<(u32, u32, usize)> = Vec::new();
                for f in &features {
                    // A window needs `n` points and none bad among them; a
                    // lag of n needs n + 1 points and its own good.
                    let need = match f.stat {
                        Stat::Value => 1,
                        Stat::Lag => f.n.saturating_add(1),
                        _ => f.n,
                    };
                    match needs
                        .iter_mut()
                        .find(|(g, c, _)| (*g, *c) == (f.group, f.col))
                    {
                        Some(e) => e.2 = e.2.max(need),
                        None => needs.push((f.group, f.col, need)),
                    }
                }
                let ats = features.iter().map(|f| f.at).collect();
                TickRow {
                    features,
                    needs,
                    slots,
                    ats,
                }
            })
            .collect();
        bank.table = vec![f32::NAN; bank.slots_end()];
        Ok((bank, compiled))
    }

    /// A feature, with its entry in the bulk table, and the entry's slot
    /// (a new one for a statistic of a group not read before).
    fn compile(&mut self, spec: FeatureSpec) -> (Feature, u32) {
        let (mut feature, column) = self.locate(spec);
        let slot = self.allot(feature.group, column);
        let offset = self.slots[slot as usize].offset;
        feature.at = u32::try_from(offset + feature.col as usize).unwrap_or(u32::MAX);
        (feature, slot)
    }

    /// Where a feature's signal is and what it reads (no table entry yet).
    fn locate(&self, spec: FeatureSpec) -> (Feature, Column) {
        let p = self.place[spec.signal.index()];
        let g = &self.groups[p.group as usize];
        let length = g.lengths.iter().position(|l| l.n == spec.n);
        let column = match (spec.stat, spec.stat.running(), length) {
            (Stat::Value, ..) => Column::Back(1),
            (Stat::Lag, ..) => Column::Back(spec.n.saturating_add(1)),
            (_, Some(rs @ (RunningStat::Min | RunningStat::Max)), Some(l)) => {
                let max = rs == RunningStat::Max;
                let kept = &g.lengths[l];
                match if max { &kept.max } else { &kept.min } {
                    Some(_) => Column::Extreme(l as u32, max),
                    None => Column::Nan,
                }
            }
            (_, Some(rs), Some(l)) if g.lengths[l].sums.is_some() => Column::Sums(l as u32, rs),
            _ => Column::Nan,
        };
        let feature = Feature {
            group: p.group,
            col: p.col,
            stat: spec.stat,
            n: spec.n,
            length: length
                .and_then(|l| u32::try_from(l).ok())
                .unwrap_or(u32::MAX),
            at: u32::MAX,
        };
        (feature, column)
    }

    /// The phase of a signal's periodic exact recompute: that of its
    /// column's chunk (tests hold a [`SignalBank`] to the same phases).
    #[cfg(test)]
    pub(super) fn phase(&self, id: SignalId) -> usize {
        chunk_phase(self.place[id.index()].col as usize)
    }

    /// This tick's point of one signal (see
    /// [`SignalWindow::push`](super::features::SignalWindow::push) for a
    /// bad or non-finite one). It enters the windows at [`TickBank::commit`];
    /// a signal not set since the last commit repeats its previous point,
    /// marked bad. An unknown id is ignored.
    #[inline]
    pub(super) fn set(&mut self, id: SignalId, value: f64, ok: bool) {
        if let Some(p) = self.place.get(id.index()) {
            let g = &mut self.groups[p.group as usize];
            g.incoming[p.col as usize] = value;
            g.incoming_ok[p.col as usize] = ok;
        }
    }

    /// Pushes this tick's row into every window.
    pub(super) fn commit(&mut self) {
        match self.simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Simd::Avx2` only where the CPU has AVX2 (`detect`).
            Simd::Avx2 => unsafe { self.commit_avx2() },
            Simd::Baseline => self.commit_all(),
        }
        self.pushes += 1;
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn commit_avx2(&mut self) {
        self.commit_all();
    }

    #[inline(always)]
    fn commit_all(&mut self) {
        let t = self.pushes;
        for g in &mut self.groups {
            g.commit(t);
        }
    }

    /// One feature's reading, as
    /// [`SignalWindow::stat`](super::features::SignalWindow::stat) gives it.
    #[inline(always)]
    fn read(&self, f: &Feature) -> Reading {
        let g = &self.groups[f.group as usize];
        let col = f.col as usize;
        match f.stat {
            Stat::Value => g.lag(col, 0),
            Stat::Lag => g.lag(col, f.n),
            _ => g.window(col, f, self.pushes, self.tick_seconds),
        }
    }

    /// Writes the row into `out` and says whether it is good, as
    /// [`FeatureRow::fill`](super::features::FeatureRow::fill) does.
    /// With `table` ([`TickBank::prepare`] on this push, for the model the
    /// row is of), a good row's features are read from the bulk table.
    pub(super) fn fill(
        &self,
        row: &TickRow,
        table: Option<Tabled>,
        out: &mut [f32],
    ) -> Result<RowQuality, FeatureError> {
        if out.len() != row.features.len() {
            return Err(FeatureError::RowLength {
                expected: row.features.len(),
                got: out.len(),
            });
        }
        if self.all_usable(row) {
            if table == Some(Tabled(self.pushes)) {
                for (&at, slot) in row.ats.iter().zip(out.iter_mut()) {
                    *slot = self.table.get(at as usize).copied().unwrap_or(f32::NAN);
                }
                return Ok(RowQuality::Good);
            }
            for (f, slot) in row.features.iter().zip(out.iter_mut()) {
                *slot = self.value(f) as f32;
            }
            return Ok(RowQuality::Good);
        }
        let mut quality = QualityScan::default();
        for (feature, (f, slot)) in row.features.iter().zip(out.iter_mut()).enumerate() {
            let reading = self.read(f);
            *slot = reading.value as f32;
            quality.see(feature, reading.unusable);
        }
        Ok(quality.row())
    }

    /// Whether every feature of `row` is usable: each signal's group holds
    /// the points its features need, none of them bad.
    #[inline(always)]
    fn all_usable(&self, row: &TickRow) -> bool {
        row.needs.iter().all(|&(g, c, need)| {
            let g = &self.groups[g as usize];
            g.filled >= need && g.bad_within(c as usize, need, self.pushes).is_none()
        })
    }

    /// One feature's value, for a row [`TickBank::all_usable`] passed.
    #[inline(always)]
    fn value(&self, f: &Feature) -> f64 {
        let g = &self.groups[f.group as usize];
        let col = f.col as usize;
        match f.stat {
            Stat::Value => g.values[back(g.head, g.cap, 1) * g.width + col],
            Stat::Lag => g.values[back(g.head, g.cap, f.n + 1) * g.width + col],
            _ => g.window_value(col, f, self.tick_seconds),
        }
    }

    /// One feature's reading by its spec (tests).
    #[cfg(test)]
    pub(super) fn stat(&self, spec: FeatureSpec) -> Reading {
        self.read(&self.locate(spec).0)
    }
}

/// The recompute phase of column `col`: one per chunk of [`CHUNK`].
fn chunk_phase(col: usize) -> usize {
    (col / CHUNK).wrapping_mul(PHASE_STRIDE)
}

impl Group {
    fn new(cap: usize, width: usize, lengths: &[(usize, bool, bool, bool)]) -> Self {
        let lengths = lengths
            .iter()
            .map(|&(n, sums, min, max)| Length {
                n,
                pos: 0,
                past_first: false,
                sums: sums.then(|| Sums {
                    m: 0,
                    of_m: SumsOf::new(0),
                    shift: vec![0.0; width],
                    s1: vec![0.0; width],
                    s2: vec![0.0; width],
                    si: vec![0.0; width],
                    peak: vec![0.0; width],
                    due: vec![false; width],
                    f_shift: vec![0.0; width],
                    f1: vec![0.0; width],
                    f2: vec![0.0; width],
                    fi: vec![0.0; width],
                    since: (0..width.div_ceil(CHUNK))
                        .map(|k| chunk_phase(k * CHUNK) % n)
                        .collect(),
                    fm: vec![0; width.div_ceil(CHUNK)],
                }),
                min: min.then(|| Herk::new(false, n, width)),
                max: max.then(|| Herk::new(true, n, width)),
            })
            .collect();
        Group {
            cap,
            width,
            values: vec![0.0; cap * width],
            ok: vec![false; cap * width],
            head: 0,
            filled: 0,
            incoming: vec![f64::NAN; width],
            incoming_ok: vec![false; width],
            last_bad: vec![0; width],
            lengths,
            due: Vec::with_capacity(width),
            acc: Vec::with_capacity(width),
        }
    }

    /// Push number `t` of the row set since the last commit.
    #[inline(always)]
    fn commit(&mut self, t: u64) {
        let w = self.width;
        // A non-finite value is never stored: the previous point stands in
        // for it (0 before the first), marked bad.
        {
            let prev = if self.filled == 0 {
                None
            } else {
                let r = back(self.head, self.cap, 1);
                Some(&self.values[r * w..(r + 1) * w])
            };
            for c in 0..w {
                let v = self.incoming[c];
                if !v.is_finite() {
                    self.incoming[c] = prev.map_or(0.0, |p| p[c]);
                    self.incoming_ok[c] = false;
                }
            }
        }
        let filled = self.filled;
        let mut any_due = false;
        for li in 0..self.lengths.len() {
            let n = self.lengths[li].n;
            let dropped = (filled >= n).then(|| back(self.head, self.cap, n));
            let len = &mut self.lengths[li];
            if let Some(s) = &mut len.sums {
                let old = dropped.map(|r| &self.values[r * w..(r + 1) * w]);
                any_due |= s.push(&self.incoming, old, n);
            }
            let p = len.pos;
            debug_assert_eq!(p as u64, t % n as u64);
            for h in [&mut len.min, &mut len.max].into_iter().flatten() {
                h.at = p;
                h.prefix_only = !len.past_first || p == n - 1;
                if p == 0 {
                    h.prefix.copy_from_slice(&self.incoming);
                } else {
                    let max = h.max;
                    for (q, &v) in h.prefix.iter_mut().zip(&self.incoming) {
                        *q = Herk::pick(max, *q, v);
                    }
                }
            }
        }
        let head = self.head;
        self.values[head * w..(head + 1) * w].copy_from_slice(&self.incoming);
        self.ok[head * w..(head + 1) * w].copy_from_slice(&self.incoming_ok);
        for (c, ok) in self.incoming_ok.iter().enumerate() {
            if !ok {
                self.last_bad[c] = t + 1;
            }
        }
        self.head = if head + 1 == self.cap { 0 } else { head + 1 };
        self.filled = (filled + 1).min(self.cap);
        // A signal not set before the next commit repeats this point, bad.
        self.incoming.fill(f64::NAN);
        self.incoming_ok.fill(false);
        for li in 0..self.lengths.len() {
            let len = &mut self.lengths[li];
            let done = len.pos == len.n - 1;
            len.pos += 1;
            if len.pos == len.n {
                len.pos = 0;
                len.past_first = true;
            }
            if done {
                self.block_done(li);
            }
        }
        if any_due {
            self.recompute_due();
        }
    }

    /// The block of `n` pushes ending with the newest row is complete: its
    /// suffix extremes, for the windows of the next block's pushes.
    fn block_done(&mut self, li: usize) {
        let (w, n) = (self.width, self.lengths[li].n);
        let (head, cap) = (self.head, self.cap);
        let values = &self.values;
        let len = &mut self.lengths[li];
        for h in [&mut len.min, &mut len.max].into_iter().flatten() {
            let max = h.max;
            let r = back(head, cap, 1);
            h.suffix[(n - 1) * w..n * w].copy_from_slice(&values[r * w..(r + 1) * w]);
            for j in (0..n - 1).rev() {
                let r = back(head, cap, n - j);
                let (older, newer) = h.suffix.split_at_mut((j + 1) * w);
                let x = &values[r * w..(r + 1) * w];
                for ((s, &xv), &nv) in older[j * w..].iter_mut().zip(x).zip(&newer[..w]) {
                    *s = Herk::pick(max, xv, nv);
                }
            }
        }
    }

    /// The exact recompute of the sums that asked for one, from the ring
    /// (src/ml/window.rs: `Sums::rebuild`), reading each row once for all
    /// the due columns of a length.
    #[cold]
    fn recompute_due(&mut self) {
        let (w, cap, head, filled) = (self.width, self.cap, self.head, self.filled);
        for li in 0..self.lengths.len() {
            let n = self.lengths[li].n;
            let Some(s) = &mut self.lengths[li].sums else {
                continue;
            };
            self.due.clear();
            // Eight flags at a time: a push's recompute is due on a chunk
            // or two of columns out of hundreds.
            for (k, flags) in s.due.chunks(8).enumerate() {
                if flags.iter().fold(false, |a, &f| a | f) {
                    for (i, &f) in flags.iter().enumerate() {
                        if f {
                            self.due.push((k * 8 + i) as u32);
                        }
                    }
                }
            }
            if self.due.is_empty() {
                continue;
            }
            let m = n.min(filled);
            let newest = back(head, cap, 1);
            self.acc.clear();
            self.acc.extend(
                self.due
                    .iter()
                    .map(|&c| [self.values[newest * w + c as usize], 0.0, 0.0, 0.0]),
            );
            for j in 0..m {
                let r = back(head, cap, m - j);
                let row = &self.values[r * w..(r + 1) * w];
                let jf = j as f64;
                for (&c, a) in self.due.iter().zip(self.acc.iter_mut()) {
                    let d = row[c as usize] - a[0];
                    a[1] += d;
                    a[2] += d * d;
                    a[3] += jf * d;
                }
            }
            for (&c, &[shift, s1, s2, si]) in self.due.iter().zip(&self.acc) {
                let c = c as usize;
                s.shift[c] = shift;
                s.s1[c] = s1;
                s.s2[c] = s2;
                s.si[c] = si;
                s.peak[c] = s2 * m as f64;
                s.due[c] = false;
            }
        }
    }

    /// Ticks since column `col`'s newest bad point, if it is among the last
    /// `n` of `pushes`.
    #[inline(always)]
    fn bad_within(&self, col: usize, n: usize, pushes: u64) -> Option<usize> {
        let last = self.last_bad[col].checked_sub(1)?;
        let ago = pushes - 1 - last;
        usize::try_from(ago).ok().filter(|&ago| ago < n)
    }

    #[inline(always)]
    fn lag(&self, col: usize, n: usize) -> Reading {
        lag_reading(self.filled, n, |k| {
            let at = back(self.head, self.cap, k) * self.width + col;
            (self.values[at], self.ok[at])
        })
    }

    /// A window statistic's value over the points held (at least one).
    #[inline(always)]
    fn window_value(&self, col: usize, f: &Feature, tick_seconds: f64) -> f64 {
        match (f.stat.running(), self.lengths.get(f.length as usize)) {
            (Some(RunningStat::Min), Some(l)) => l.min.as_ref().map(|h| h.read(col)),
            (Some(RunningStat::Max), Some(l)) => l.max.as_ref().map(|h| h.read(col)),
            (Some(rs), Some(l)) => l.sums.as_ref().map(|s| {
                window::sums_value(
                    rs,
                    s.shift[col],
                    s.s1[col],
                    s.s2[col],
                    s.si[col],
                    s.of_m,
                    tick_seconds,
                )
            }),
            _ => None,
        }
        .unwrap_or(f64::NAN)
    }

    #[inline(always)]
    fn window(&self, col: usize, f: &Feature, pushes: u64, tick_seconds: f64) -> Reading {
        let (n, have) = (f.n, self.filled);
        let m = n.min(have);
        if m == 0 {
            return Reading {
                value: f64::NAN,
                unusable: Some(Unusable::NotFull { have, need: n }),
            };
        }
        let value = self.window_value(col, f, tick_seconds);
        let unusable = match self.bad_within(col, n, pushes) {
            Some(ticks_ago) => Some(Unusable::BadInput { ticks_ago }),
            None if have < n => Some(Unusable::NotFull { have, need: n }),
            None => None,
        };
        Reading { value, unusable }
    }
}

impl Herk {
    fn new(max: bool, n: usize, width: usize) -> Self {
        Herk {
            max,
            prefix: vec![0.0; width],
            suffix: vec![0.0; n * width],
            at: 0,
            prefix_only: true,
        }
    }

    /// The extreme over the newest `n` points (at least one pushed).
    #[inline(always)]
    fn read(&self, col: usize) -> f64 {
        let w = self.prefix.len();
        if self.prefix_only {
            // The window is the current block so far (start-up) or all of
            // it.
            self.prefix[col]
        } else {
            Herk::pick(
                self.max,
                self.suffix[(self.at + 1) * w + col],
                self.prefix[col],
            )
        }
    }
}

impl Sums {
    /// Every column's new point `v` enters; `old` (a ring row) leaves when
    /// the windows were full. The same operations, in the same order, as
    /// src/ml/window.rs's `Sums::push`, one column after another. Says
    /// whether any column asked for an exact recompute.
    #[expect(
        clippy::needless_range_loop,
        reason = "one index over six parallel arrays, each sliced to the same length so the loop vectorises"
    )]
    #[inline(always)]
    fn push(&mut self, v: &[f64], old: Option<&[f64]>, n: usize) -> bool {
        let w = v.len();
        if self.m == 0 {
            self.shift.copy_from_slice(v);
        }
        let mf;
        match old {
            None => {
                let m = self.m as f64;
                for c in 0..w {
                    let d = v[c] - self.shift[c];
                    self.si[c] += m * d;
                    self.s1[c] += d;
                    self.s2[c] += d * d;
                }
                self.m += 1;
                self.of_m = SumsOf::new(self.m);
                mf = self.m as f64;
            }
            Some(old) => {
                let nm1 = (n - 1) as f64;
                let (s1, s2, si, shift) = (
                    &mut self.s1[..w],
                    &mut self.s2[..w],
                    &mut self.si[..w],
                    &self.shift[..w],
                );
                let old = &old[..w];
                for c in 0..w {
                    let d = v[c] - shift[c];
                    let e = old[c] - shift[c];
                    let mut a = s1[c] - e;
                    si[c] -= a;
                    si[c] += nm1 * d;
                    a += d;
                    s1[c] = a;
                    s2[c] += d * d - e * e;
                }
                mf = self.m as f64;
            }
        }
        // The fresh sums, a chunk at a time (they share their schedule);
        // swapped in for the running ones every `n` pushes.
        for (k, (since, fm)) in self.since.iter_mut().zip(self.fm.iter_mut()).enumerate() {
            let cols = k * CHUNK..((k + 1) * CHUNK).min(w);
            if *fm == 0 {
                self.f_shift[cols.clone()].copy_from_slice(&v[cols.clone()]);
            }
            let fmf = *fm as f64;
            for c in cols.clone() {
                let fd = v[c] - self.f_shift[c];
                self.fi[c] += fmf * fd;
                self.f1[c] += fd;
                self.f2[c] += fd * fd;
            }
            *fm += 1;
            *since += 1;
            if *since >= n {
                if *fm == self.m {
                    for c in cols.clone() {
                        self.shift[c] = self.f_shift[c];
                        self.s1[c] = self.f1[c];
                        self.s2[c] = self.f2[c];
                        self.si[c] = self.fi[c];
                        self.peak[c] = self.s2[c] * mf;
                    }
                }
                self.f1[cols.clone()].fill(0.0);
                self.f2[cols.clone()].fill(0.0);
                self.fi[cols].fill(0.0);
                (*fm, *since) = (0, 0);
            }
        }
        let mut any = false;
        let (s1, s2, peak, due) = (
            &self.s1[..w],
            &self.s2[..w],
            &mut self.peak[..w],
            &mut self.due[..w],
        );
        for c in 0..w {
            let scaled = s2[c] * mf;
            peak[c] = peak[c].max(scaled);
            let spread = scaled - s1[c] * s1[c];
            due[c] = peak[c] > 0.0 && spread < peak[c] * REBUILD_BELOW;
            any |= due[c];
        }
        any
    }
}

#[cfg(test)]
#[path = "tickbank_tests.rs"]
mod tests;
