//! Time series in bounded memory, for the report's plots.
//!
//! A 24-hour event file has 86,400 `line` events per line and a tag may
//! change every tick, but a plot 900 pixels wide shows a few hundred
//! columns. Every series of one report therefore keeps [`BUCKETS`] buckets
//! on one shared [`Grid`]: when a time beyond the grid's end arrives, every
//! bucket doubles in width and neighbours merge. Memory stays constant
//! whatever the file's length, the grid never needs the file's span in
//! advance (the input is streamed), and a bucket keeps its minimum and
//! maximum, so a one-tick spike survives any amount of downsampling.

/// Buckets per series: about two pixels each across a plot.
pub const BUCKETS: usize = 400;

/// Width of a bucket before the first doubling. 1 ms × 400 = 0.4 s, so
/// even a one-second run has buckets of a few ticks; a day takes 18
/// doublings.
const INITIAL_WIDTH_NS: i64 = 1_000_000;

/// The time axis that all the series of one report share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Start of bucket 0: the first time seen.
    origin: Option<i64>,
    width: i64,
}

impl Default for Grid {
    fn default() -> Self {
        Grid {
            origin: None,
            width: INITIAL_WIDTH_NS,
        }
    }
}

impl Grid {
    /// Make room for `t`; returns how many times every series must halve
    /// (merge neighbouring buckets) to stay on the grid.
    #[must_use]
    pub fn fit(&mut self, t: i64) -> u32 {
        let origin = *self.origin.get_or_insert(t);
        let mut doublings = 0;
        // i128: a hostile file's times may span the whole i64 range.
        while i128::from(t) - i128::from(origin) >= i128::from(self.width) * BUCKETS as i128 {
            match self.width.checked_mul(2) {
                Some(w) => self.width = w,
                None => break,
            }
            doublings += 1;
        }
        doublings
    }

    /// The bucket `t` falls in. Times before the origin (a sample measured
    /// before the first event) go to the first bucket.
    pub fn index(&self, t: i64) -> usize {
        let origin = self.origin.unwrap_or(t);
        let i = (i128::from(t) - i128::from(origin)) / i128::from(self.width);
        i.clamp(0, BUCKETS as i128 - 1) as usize
    }

    /// Start time of bucket `i`.
    pub fn start(&self, i: usize) -> i64 {
        self.origin
            .unwrap_or(0)
            .saturating_add(self.width.saturating_mul(i as i64))
    }

    pub fn width(&self) -> i64 {
        self.width
    }
}

/// A bucket's content that two neighbours can be merged into.
trait Merge: Copy + Default {
    fn merge(self, later: Self) -> Self;
}

/// Merge neighbouring buckets pairwise, `times` times: what every series
/// does when the grid doubles.
fn halve<B: Merge>(buckets: &mut [B], times: u32) {
    for _ in 0..times.min(usize::BITS) {
        let half = buckets.len() / 2;
        for i in 0..half {
            buckets[i] = buckets[2 * i].merge(buckets[2 * i + 1]);
        }
        for b in &mut buckets[half..] {
            *b = B::default();
        }
    }
}

/// One point: time (ns) and value; a NaN value is "no value" (`null`, text).
pub type Point = (i64, f64);

#[derive(Debug, Clone, Copy, Default)]
struct ValueBucket {
    n: u32,
    first: Point,
    last: Point,
    /// Extremes of the finite values; `None` when there are none.
    min: Option<Point>,
    max: Option<Point>,
}

impl Merge for ValueBucket {
    fn merge(self, later: Self) -> Self {
        if self.n == 0 {
            return later;
        }
        if later.n == 0 {
            return self;
        }
        let pick = |a: Option<Point>, b: Option<Point>, lower: bool| match (a, b) {
            (Some(a), Some(b)) => Some(if (b.1 < a.1) == lower && b.1 != a.1 {
                b
            } else {
                a
            }),
            (a, b) => a.or(b),
        };
        ValueBucket {
            n: self.n.saturating_add(later.n),
            first: if later.first.0 < self.first.0 {
                later.first
            } else {
                self.first
            },
            last: if later.last.0 >= self.last.0 {
                later.last
            } else {
                self.last
            },
            min: pick(self.min, later.min, true),
            max: pick(self.max, later.max, false),
        }
    }
}

/// A value over time: per bucket the first, last, lowest and highest point.
#[derive(Debug, Clone)]
pub struct Series {
    buckets: Vec<ValueBucket>,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            buckets: vec![ValueBucket::default(); BUCKETS],
        }
    }
}

impl Series {
    /// Add a point; the grid must already fit its time.
    pub fn push(&mut self, grid: &Grid, t: i64, v: f64) {
        let p = (t, if v.is_finite() { v } else { f64::NAN });
        let finite = p.1.is_finite().then_some(p);
        let b = &mut self.buckets[grid.index(t)];
        let new = ValueBucket {
            n: 1,
            first: p,
            last: p,
            min: finite,
            max: finite,
        };
        *b = b.merge(new);
    }

    pub fn halve(&mut self, times: u32) {
        halve(&mut self.buckets, times);
    }

    /// The kept points in time order: a bucket's first, lowest, highest and
    /// last point (fewer when they coincide).
    pub fn points(&self) -> Vec<Point> {
        let mut out = Vec::new();
        for b in self.buckets.iter().filter(|b| b.n > 0) {
            let mut ps: Vec<Point> = [Some(b.first), b.min, b.max, Some(b.last)]
                .into_iter()
                .flatten()
                .collect();
            ps.sort_by_key(|p| p.0);
            ps.dedup_by(|a, b| a.0 == b.0 && (a.1 == b.1 || (a.1.is_nan() && b.1.is_nan())));
            out.extend(ps);
        }
        out
    }

    /// Lowest and highest finite value, if any.
    pub fn range(&self) -> Option<(f64, f64)> {
        let lo = self.buckets.iter().filter_map(|b| b.min).map(|p| p.1);
        let hi = self.buckets.iter().filter_map(|b| b.max).map(|p| p.1);
        let lo = lo.fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))))?;
        let hi = hi.fold(lo, f64::max);
        Some((lo, hi))
    }
}

/// A tag's or a line's quality, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub enum Level {
    #[default]
    Good,
    Uncertain,
    Stale,
    Bad,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "good" => Level::Good,
            "uncertain" => Level::Uncertain,
            "stale" => Level::Stale,
            "bad" => Level::Bad,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Level::Good => "good",
            Level::Uncertain => "uncertain",
            Level::Stale => "stale",
            Level::Bad => "bad",
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct QualityBucket {
    n: u32,
    worst: Level,
    /// The quality at the end of the bucket, and when it was set.
    last: (i64, Level),
    /// Changes of quality within the bucket, and the first one's time.
    changes: u32,
    first_change: i64,
}

impl Merge for QualityBucket {
    fn merge(self, later: Self) -> Self {
        if self.n == 0 {
            return later;
        }
        if later.n == 0 {
            return self;
        }
        let first_change = match (self.changes, later.changes) {
            (0, _) => later.first_change,
            (_, 0) => self.first_change,
            _ => self.first_change.min(later.first_change),
        };
        QualityBucket {
            n: self.n.saturating_add(later.n),
            worst: self.worst.max(later.worst),
            last: if later.last.0 >= self.last.0 {
                later.last
            } else {
                self.last
            },
            changes: self.changes.saturating_add(later.changes),
            first_change,
        }
    }
}

/// A stretch of time at one quality below good, for shading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    pub from: i64,
    pub to: i64,
    pub level: Level,
}

/// Quality over time: per bucket the worst quality seen, the quality it
/// ended with and the changes in it.
#[derive(Debug, Clone)]
pub struct QualityTrack {
    buckets: Vec<QualityBucket>,
    /// The last quality pushed, to tell a change from a repeat.
    current: Option<Level>,
}

impl Default for QualityTrack {
    fn default() -> Self {
        QualityTrack {
            buckets: vec![QualityBucket::default(); BUCKETS],
            current: None,
        }
    }
}

impl QualityTrack {
    /// Record the quality at `t`; a change from the previous one is marked.
    pub fn push(&mut self, grid: &Grid, t: i64, level: Level) {
        let changed = self.current.is_some_and(|c| c != level);
        self.current = Some(level);
        let b = &mut self.buckets[grid.index(t)];
        *b = b.merge(QualityBucket {
            n: 1,
            worst: level,
            last: (t, level),
            changes: u32::from(changed),
            first_change: t,
        });
    }

    pub fn halve(&mut self, times: u32) {
        halve(&mut self.buckets, times);
    }

    /// The stretches below good up to `end`, at bucket resolution: a bucket
    /// is shaded with the worst quality it saw, and a bucket without events
    /// with the quality the one before it ended with (quality holds until
    /// it changes). Neighbouring buckets of one quality make one span.
    pub fn spans(&self, grid: &Grid, end: i64) -> Vec<Span> {
        let mut out: Vec<Span> = Vec::new();
        let mut carry: Option<Level> = None;
        for (i, b) in self.buckets.iter().enumerate() {
            let from = grid.start(i);
            if from > end {
                break;
            }
            let level = if b.n > 0 {
                let level = carry.map_or(b.worst, |c| c.max(b.worst));
                carry = Some(b.last.1);
                Some(level)
            } else {
                carry
            };
            let Some(level) = level.filter(|l| *l != Level::Good) else {
                continue;
            };
            let to = from.saturating_add(grid.width()).min(end);
            match out.last_mut() {
                Some(s) if s.level == level && s.to == from => s.to = to,
                _ => out.push(Span { from, to, level }),
            }
        }
        out
    }

    /// Times of the quality changes, one per bucket that has any.
    pub fn changes(&self) -> Vec<i64> {
        self.buckets
            .iter()
            .filter(|b| b.changes > 0)
            .map(|b| b.first_change)
            .collect()
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct CountBucket {
    n: u32,
    first: i64,
}

impl Merge for CountBucket {
    fn merge(self, later: Self) -> Self {
        match (self.n, later.n) {
            (0, _) => later,
            (_, 0) => self,
            _ => CountBucket {
                n: self.n.saturating_add(later.n),
                first: self.first.min(later.first),
            },
        }
    }
}

/// How many of something (residuals) happened per bucket.
#[derive(Debug, Clone)]
pub struct Counts {
    buckets: Vec<CountBucket>,
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            buckets: vec![CountBucket::default(); BUCKETS],
        }
    }
}

impl Counts {
    pub fn push(&mut self, grid: &Grid, t: i64) {
        let b = &mut self.buckets[grid.index(t)];
        *b = b.merge(CountBucket { n: 1, first: t });
    }

    pub fn halve(&mut self, times: u32) {
        halve(&mut self.buckets, times);
    }

    /// (time of the bucket's first, count) for every bucket with any.
    pub fn marks(&self) -> Vec<(i64, u32)> {
        self.buckets
            .iter()
            .filter(|b| b.n > 0)
            .map(|b| (b.first, b.n))
            .collect()
    }
}

/// Heap bytes per bucket of a tag's value and quality series (for the
/// memory figure in docs/report.md).
#[cfg(test)]
pub fn series_bucket_bytes() -> usize {
    std::mem::size_of::<ValueBucket>() + std::mem::size_of::<QualityBucket>()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    /// Push into one series through a grid, the way the collector does.
    fn feed(points: impl IntoIterator<Item = Point>) -> (Grid, Series) {
        let mut grid = Grid::default();
        let mut s = Series::default();
        for (t, v) in points {
            let d = grid.fit(t);
            s.halve(d);
            s.push(&grid, t, v);
        }
        (grid, s)
    }

    #[test]
    fn a_day_of_points_keeps_a_bounded_number_and_its_spike() {
        // A day at 10 Hz with one tick at 100 in the middle.
        let spike_t = 43_200 * S;
        let (grid, s) = feed((0..864_000i64).map(|i| {
            let t = i * S / 10;
            (t, if t == spike_t { 100.0 } else { (i % 7) as f64 })
        }));
        let pts = s.points();
        assert!(pts.len() <= 4 * BUCKETS, "{} points", pts.len());
        assert!(pts.len() > BUCKETS, "{} points", pts.len());
        assert!(pts.contains(&(spike_t, 100.0)), "the spike is lost");
        assert_eq!(s.range(), Some((0.0, 100.0)));
        assert!(grid.width() * BUCKETS as i64 >= 86_400 * S);
        assert!(
            pts.windows(2).all(|w| w[0].0 <= w[1].0),
            "not in time order"
        );
    }

    #[test]
    fn a_dip_survives_downsampling_too() {
        let (_, s) = feed((0..100_000i64).map(|i| (i * S, if i == 77_777 { -5.0 } else { 1.0 })));
        assert!(s.points().contains(&(77_777 * S, -5.0)));
        assert_eq!(s.range(), Some((-5.0, 1.0)));
    }

    #[test]
    fn null_values_are_kept_as_gaps_but_never_widen_the_range() {
        let (_, s) = feed([(0, 1.0), (S, f64::NAN), (2 * S, 3.0)]);
        let pts = s.points();
        assert_eq!(pts.len(), 3);
        assert!(pts[1].1.is_nan());
        assert_eq!(s.range(), Some((1.0, 3.0)));
    }

    #[test]
    fn times_before_the_origin_go_to_the_first_bucket() {
        let mut grid = Grid::default();
        assert_eq!(grid.fit(10 * S), 0);
        assert_eq!(grid.index(5 * S), 0);
        assert_eq!(grid.index(i64::MIN), 0);
        // A hostile time far in the future neither overflows nor panics.
        assert!(grid.fit(i64::MAX) > 0);
        assert_eq!(grid.fit(i64::MAX), 0);
        assert!(grid.index(i64::MAX) < BUCKETS);
        assert_eq!(grid.index(i64::MIN), 0);
    }

    #[test]
    fn quality_spans_hold_across_buckets_without_events() {
        let mut grid = Grid::default();
        let mut q = QualityTrack::default();
        let mut push = |t: i64, l: Level, q: &mut QualityTrack| {
            let d = grid.fit(t);
            q.halve(d);
            q.push(&grid, t, l);
        };
        push(0, Level::Good, &mut q);
        push(10 * S, Level::Bad, &mut q);
        push(20 * S, Level::Good, &mut q);
        push(100 * S, Level::Good, &mut q);
        let spans = q.spans(&grid, 100 * S);
        assert_eq!(spans.len(), 1, "{spans:?}");
        let s = spans[0];
        assert_eq!(s.level, Level::Bad);
        // Bucket resolution: 100 s over 400 buckets is 0.25 s or better.
        let tol = grid.width();
        assert!((s.from - 10 * S).abs() <= tol, "{s:?}");
        assert!((s.to - 20 * S).abs() <= tol, "{s:?}");
        assert_eq!(q.changes().len(), 2);
    }

    #[test]
    fn residual_counts_merge_without_losing_any() {
        let mut grid = Grid::default();
        let mut c = Counts::default();
        for i in 0..10_000i64 {
            let d = grid.fit(i * S);
            c.halve(d);
            c.push(&grid, i * S);
        }
        let marks = c.marks();
        assert!(marks.len() <= BUCKETS);
        assert_eq!(marks.iter().map(|m| u64::from(m.1)).sum::<u64>(), 10_000);
    }
}
