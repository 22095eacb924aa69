//! Rate-limited reporting: count occurrences per key, and say when the next
//! warning (or retry) is due, at most once per interval per key.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::wallclock;

#[derive(Debug)]
pub struct RateLimit<K> {
    every: Duration,
    /// Per key: occurrences, occurrences when last reported, last report.
    seen: BTreeMap<K, (u64, u64, Option<Instant>)>,
}

impl<K: Ord> RateLimit<K> {
    pub fn new(every: Duration) -> Self {
        RateLimit {
            every,
            seen: BTreeMap::new(),
        }
    }

    /// Count `n` occurrences of `key`. Returns the running total when at
    /// least the interval has passed since this key last returned one (or it
    /// never has), `None` otherwise.
    pub fn count(&mut self, key: K, n: u64) -> Option<u64> {
        self.report(key, n).map(|(total, _)| total)
    }

    /// [`RateLimit::count`], also saying how many occurrences went
    /// unreported between the previous report and this one, for a warning
    /// that summarises what it suppressed.
    pub fn report(&mut self, key: K, n: u64) -> Option<(u64, u64)> {
        let (total, reported, last) = self.seen.entry(key).or_insert((0, 0, None));
        *total += n;
        let now = wallclock::monotonic();
        if last.is_none_or(|l| now.duration_since(l) >= self.every) {
            *last = Some(now);
            let suppressed = (*total - *reported).saturating_sub(n);
            *reported = *total;
            Some((*total, suppressed))
        } else {
            None
        }
    }

    /// Occurrences of `key` so far.
    pub fn total(&self, key: &K) -> u64 {
        self.seen.get(key).map_or(0, |(t, _, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_once_per_interval_and_keeps_counting() {
        let mut r = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(r.count("a", 1), Some(1));
        assert_eq!(r.count("a", 2), None);
        assert_eq!(r.count("b", 1), Some(1), "keys are independent");
        assert_eq!(r.total(&"a"), 3);
        let mut now = RateLimit::new(Duration::ZERO);
        assert_eq!(now.count("a", 1), Some(1));
        assert_eq!(now.count("a", 1), Some(2));
    }

    #[test]
    fn a_report_says_how_many_it_suppressed_since_the_last() {
        let mut r = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(r.report("a", 1), Some((1, 0)));
        assert_eq!(r.report("a", 4), None);
        let mut now = RateLimit::new(Duration::ZERO);
        assert_eq!(now.report("a", 1), Some((1, 0)));
        assert_eq!(now.report("a", 2), Some((3, 0)));
    }
}
