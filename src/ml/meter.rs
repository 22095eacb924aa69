//! Metering and quotas of the ML stage: what each model ran, per machine
//! and line, and the row budgets that decide whether a due row may run.
//!
//! Everything here counts ticks and rows, never time, so `metering` events
//! are as deterministic as predictions. Compute time is real time: it is
//! kept apart ([`ComputeTime`]), filled by a stopwatch the runner hands in,
//! and only reaches the log (and later `/metrics`), never an event.

use std::sync::Arc;
use std::time::Duration;

/// A budget of rows per minute, as a token bucket counted in integers so
/// that it is exact and the same on every host: each tick adds
/// `rows_per_minute × tick_ns` units, a row costs a minute (60e9 units),
/// and the bucket holds at most one minute's rows. It starts full.
#[derive(Debug, Clone)]
pub struct Bucket {
    units: u128,
    per_tick: u128,
    cap: u128,
}

const ROW: u128 = 60_000_000_000;

impl Bucket {
    pub fn new(rows_per_minute: u32, tick_ns: u64) -> Self {
        let cap = u128::from(rows_per_minute) * ROW;
        Bucket {
            units: cap,
            per_tick: u128::from(rows_per_minute) * u128::from(tick_ns),
            cap,
        }
    }

    /// A tick went by.
    pub fn refill(&mut self) {
        self.units = (self.units + self.per_tick).min(self.cap);
    }

    pub fn has_row(&self) -> bool {
        self.units >= ROW
    }

    pub fn take_row(&mut self) {
        self.units = self.units.saturating_sub(ROW);
    }
}

/// What one model (or one of its machines or lines) ran over a span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// `run()` batches (one per due tick with at least one row run).
    pub runs: u64,
    /// Rows run through the model.
    pub rows: u64,
    /// Due ticks on which no row could run for want of quota.
    pub skipped_runs: u64,
    /// Due rows not run for want of quota.
    pub skipped_rows: u64,
    /// Rows run at the busy cadence (a machine whose risk or score was at
    /// or above `busy_above`).
    pub busy_rows: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.runs += o.runs;
        self.rows += o.rows;
        self.skipped_runs += o.skipped_runs;
        self.skipped_rows += o.skipped_rows;
        self.busy_rows += o.busy_rows;
    }

    pub fn is_zero(&self) -> bool {
        *self == Counts::default()
    }
}

/// One model's counts: this interval's, and the run's so far.
#[derive(Debug, Clone)]
pub struct ModelMeter {
    /// Per row of the model (its machine), then per line (the lines of
    /// `line_names`).
    pub interval: Counts,
    pub rows: Vec<Counts>,
    pub lines: Vec<Counts>,
    pub total: Counts,
    pub total_rows: Vec<Counts>,
    pub total_lines: Vec<Counts>,
    /// For each row, the indices into `line_names` of its machine's lines.
    pub row_lines: Vec<Vec<usize>>,
    pub line_names: Vec<Arc<str>>,
}

impl ModelMeter {
    pub fn new(row_lines: Vec<Vec<usize>>, line_names: Vec<Arc<str>>) -> Self {
        let (n, l) = (row_lines.len(), line_names.len());
        ModelMeter {
            interval: Counts::default(),
            rows: vec![Counts::default(); n],
            lines: vec![Counts::default(); l],
            total: Counts::default(),
            total_rows: vec![Counts::default(); n],
            total_lines: vec![Counts::default(); l],
            row_lines,
            line_names,
        }
    }

    /// Count `f` on a row, its lines and the model.
    pub fn row(&mut self, r: usize, f: impl Fn(&mut Counts)) {
        f(&mut self.interval);
        f(&mut self.rows[r]);
        for &l in &self.row_lines[r] {
            f(&mut self.lines[l]);
        }
    }

    /// Count `f` on the model alone (runs, skipped runs).
    pub fn model(&mut self, f: impl Fn(&mut Counts)) {
        f(&mut self.interval);
    }

    /// Close the interval: its counts go to the run's totals and start
    /// again from zero. Returns the interval's counts.
    pub fn close(&mut self) -> (Counts, Vec<Counts>, Vec<Counts>) {
        self.total.add(&self.interval);
        for (t, c) in self.total_rows.iter_mut().zip(&self.rows) {
            t.add(c);
        }
        for (t, c) in self.total_lines.iter_mut().zip(&self.lines) {
            t.add(c);
        }
        let z = |v: &mut Vec<Counts>| std::mem::replace(v, vec![Counts::default(); v.len()]);
        (
            std::mem::take(&mut self.interval),
            z(&mut self.rows),
            z(&mut self.lines),
        )
    }
}

/// Reads the runner's clock for compute time; `None` in a core that was
/// given none (tests), which then measures nothing.
pub type Stopwatch = fn() -> Duration;

/// Compute time per model, outside the event stream: it differs from run
/// to run, so it may never decide anything or reach an event.
#[derive(Debug, Clone, Default)]
pub struct ComputeTime {
    /// Per model, in file order: (id, time spent in `run()`, runs that took
    /// longer than a tick).
    pub models: Vec<(Arc<str>, Duration, u64)>,
}
