//! The bank's bulk table (src/ml/tickbank.rs): for a model with enough
//! rows due, each statistic its rows read, computed once for every column
//! of a group in one loop per statistic, as the `f32` a batch holds; a good
//! row's fill is then a gather of its entries ([`TickBank::fill`]). The
//! entries are the bits a feature read alone gives (the same formula, one
//! place: `window::sums_value`).

use super::{Group, Herk, Simd, Sums, TickBank, TickRow, back};
use crate::ml::window::{self, RunningStat};

/// One statistic of one group, for all its columns at once: a run of
/// `width` entries of the bulk table from `offset`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    pub(super) group: u32,
    pub(super) column: Column,
    pub(super) offset: usize,
    /// 1 + the push count when last computed (0: never).
    pub(super) stamp: u64,
}

/// What a slot holds for each column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Column {
    /// The ring row `k` pushes back (1 = the newest): a value or a lag.
    Back(usize),
    /// A running statistic of a length's sums.
    Sums(u32, RunningStat),
    /// A length's min (false) or max (true).
    Extreme(u32, bool),
    /// A statistic the group does not keep (never built): NaN, as
    /// [`Group::window_value`] reads it.
    Nan,
}

/// The slots a model's rows read ([`TickBank::table_use`]) and their
/// entries.
#[derive(Debug, Clone, Default)]
pub(in crate::ml) struct TableUse {
    pub(super) slots: Vec<u32>,
    pub(super) entries: usize,
}

/// Proof that the bulk table holds this push's values of a model's slots
/// ([`TickBank::prepare`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::ml) struct Tabled(pub(super) u64);

impl TickBank {
    /// Where the next slot's entries start: the table's length.
    pub(super) fn slots_end(&self) -> usize {
        self.slots
            .last()
            .map_or(0, |s| s.offset + self.groups[s.group as usize].width)
    }

    /// The slot of `column` of `group`, allotted after the others if new.
    pub(super) fn allot(&mut self, group: u32, column: Column) -> u32 {
        let i = match self
            .slots
            .iter()
            .position(|s| s.group == group && s.column == column)
        {
            Some(i) => i,
            None => {
                let offset = self.slots_end();
                self.slots.push(Slot {
                    group,
                    column,
                    offset,
                    stamp: 0,
                });
                self.slots.len() - 1
            }
        };
        u32::try_from(i).unwrap_or(u32::MAX)
    }

    /// The slots `rows` read, for [`TickBank::prepare`].
    pub(in crate::ml) fn table_use<'a>(
        &self,
        rows: impl IntoIterator<Item = &'a TickRow>,
    ) -> TableUse {
        let mut slots: Vec<u32> = Vec::new();
        for r in rows {
            for &s in &r.slots {
                if !slots.contains(&s) {
                    slots.push(s);
                }
            }
        }
        slots.sort_unstable();
        let entries = slots
            .iter()
            .map(|&s| self.groups[self.slots[s as usize].group as usize].width)
            .sum();
        TableUse { slots, entries }
    }

    /// Computes, for a model about to fill `due_features` features, its
    /// slots of the bulk table: every column of each statistic it reads, in
    /// one loop per statistic over contiguous arrays (vectorised), so that
    /// a good row's fill is a gather. Done only when the gather saves more
    /// than the table costs (at least half as many features due as table
    /// entries still to compute, and as a quarter of the model's); a slot
    /// computed on this push serves every model. The entries are the bits
    /// [`TickBank::fill`] writes without the table (the same formula, one
    /// place: `window::sums_value`).
    pub(in crate::ml) fn prepare(
        &mut self,
        use_: &TableUse,
        due_features: usize,
    ) -> Option<Tabled> {
        let stamp = self.pushes + 1;
        let missing: usize = use_
            .slots
            .iter()
            .map(|&s| &self.slots[s as usize])
            .filter(|s| s.stamp != stamp)
            .map(|s| self.groups[s.group as usize].width)
            .sum();
        if missing > 0 && due_features.saturating_mul(2) < missing.max(use_.entries / 4) {
            return None;
        }
        match self.simd {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Simd::Avx2` only where the CPU has AVX2 (`detect`).
            Simd::Avx2 => unsafe { self.tabulate_avx2(use_) },
            Simd::Baseline => self.tabulate(use_),
        }
        Some(Tabled(self.pushes))
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub(super) fn tabulate_avx2(&mut self, use_: &TableUse) {
        self.tabulate(use_);
    }

    /// Computes `use_`'s slots not computed on this push.
    #[inline(always)]
    pub(super) fn tabulate(&mut self, use_: &TableUse) {
        let stamp = self.pushes + 1;
        for &s in &use_.slots {
            let slot = &mut self.slots[s as usize];
            if slot.stamp == stamp {
                continue;
            }
            slot.stamp = stamp;
            let g = &self.groups[slot.group as usize];
            let out = &mut self.table[slot.offset..slot.offset + g.width];
            g.column(slot.column, self.tick_seconds, out);
        }
    }
}

impl Group {
    /// One statistic of every column, as `f32` (what
    /// [`TickBank::value`] gives a good row, column by column).
    #[inline(always)]
    pub(super) fn column(&self, column: Column, tick_seconds: f64, out: &mut [f32]) {
        let w = self.width;
        let out = &mut out[..w];
        match column {
            Column::Back(k) => {
                let r = back(self.head, self.cap, k.min(self.cap));
                for (o, &v) in out.iter_mut().zip(&self.values[r * w..(r + 1) * w]) {
                    *o = v as f32;
                }
            }
            Column::Extreme(l, max) => {
                let len = &self.lengths[l as usize];
                match if max { &len.max } else { &len.min } {
                    Some(h) => h.column(out),
                    None => out.fill(f32::NAN),
                }
            }
            Column::Sums(l, rs) => match &self.lengths[l as usize].sums {
                Some(s) => s.column(rs, tick_seconds, out),
                None => out.fill(f32::NAN),
            },
            Column::Nan => out.fill(f32::NAN),
        }
    }
}

impl Herk {
    /// [`Herk::read`] of every column, as `f32`.
    #[inline(always)]
    pub(super) fn column(&self, out: &mut [f32]) {
        let w = self.prefix.len();
        let out = &mut out[..w];
        if self.prefix_only {
            for (o, &p) in out.iter_mut().zip(&self.prefix) {
                *o = p as f32;
            }
        } else {
            let suffix = &self.suffix[(self.at + 1) * w..(self.at + 2) * w];
            for ((o, &s), &p) in out.iter_mut().zip(suffix).zip(&self.prefix) {
                *o = Herk::pick(self.max, s, p) as f32;
            }
        }
    }
}

impl Sums {
    /// Statistic `rs` of every column, as `f32`: one loop per statistic, so
    /// that each vectorises with the statistic's formula folded in.
    #[inline(always)]
    pub(super) fn column(&self, rs: RunningStat, tick_seconds: f64, out: &mut [f32]) {
        let w = out.len();
        let (shift, s1, s2, si) = (
            &self.shift[..w],
            &self.s1[..w],
            &self.s2[..w],
            &self.si[..w],
        );
        let of_m = self.of_m;
        let each = |out: &mut [f32], stat: RunningStat| {
            for (c, o) in out.iter_mut().enumerate() {
                *o = window::sums_value(stat, shift[c], s1[c], s2[c], si[c], of_m, tick_seconds)
                    as f32;
            }
        };
        match rs {
            RunningStat::Mean => each(out, RunningStat::Mean),
            RunningStat::Std => each(out, RunningStat::Std),
            RunningStat::Rms => each(out, RunningStat::Rms),
            RunningStat::Slope => each(out, RunningStat::Slope),
            RunningStat::Min | RunningStat::Max => out.fill(f32::NAN),
        }
    }
}
