//! Health per source: is it delivering, since when, and what went wrong.
//!
//! Every source writes its state here; the live table shows it and the run
//! logs a summary per source when it stops. It is an operator's view, kept
//! out of the deterministic core (the event stream is a function of the
//! samples alone).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::twin::Reason;

/// The state of one source (a Modbus device, an MQTT or Sparkplug client).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceHealth {
    /// "modbus", "mqtt" or "sparkplug".
    pub kind: &'static str,
    /// Delivering data now. False until the first success.
    pub up: bool,
    /// Why it is down (a quality reason such as `connection_refused`), or the
    /// last refusal a Modbus device gave while up.
    pub reason: Option<Reason>,
    /// Wall-clock time (ns) of the last change of `up`.
    pub since_ns: i64,
    /// Successful reads (Modbus) or messages (MQTT, Sparkplug).
    pub ok: u64,
    /// Failed reads or connection losses.
    pub failures: u64,
    /// Exception responses (Modbus) or dropped messages (MQTT, Sparkplug).
    pub rejected: u64,
    /// Times it came back after being down.
    pub recoveries: u64,
    /// Samples stamped further ahead of their receive time than the
    /// source's `max_clock_skew`: kept as `uncertain` (`clock_skew`) at their
    /// receive time.
    pub clock_skew: u64,
    /// How long the source's data took to reach the twin (see
    /// [`Latency`]).
    pub latency: Latency,
}

/// Upper bounds, in seconds, of [`Latency`]'s buckets: a LAN Modbus reply
/// (sub-millisecond) to a gateway's serial line or a broker across a site
/// (seconds).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of a source's latency, for `/metrics`: for Modbus the time
/// from a poll's reads going out to each reply (answers and refusals; the
/// link's queueing under `max_in_flight` included, timeouts not: those are
/// failures), for MQTT and Sparkplug the time from a message's newest
/// source timestamp to its receipt (only messages that carry one; the
/// publisher's clock offset is part of it, so a skewed clock shows here).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Latency {
    /// Per bucket of [`LATENCY_BUCKETS`] (not cumulative), then one for
    /// above the last.
    pub counts: [u64; 15],
    pub sum_ns: u64,
    pub count: u64,
}

impl Latency {
    fn observe(&mut self, ns: u64) {
        let s = ns as f64 / 1e9;
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| s <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.count += 1;
    }
}

/// Shared by all sources of a run; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct HealthBoard(Arc<Mutex<BTreeMap<String, Arc<Mutex<SourceHealth>>>>>);

/// One source's entry on the board: what the source writes to. Holding it
/// spares the source a lookup by name on every message.
#[derive(Debug, Clone)]
pub struct HealthHandle(Arc<Mutex<SourceHealth>>);

impl HealthBoard {
    /// Add a source (or get its existing entry).
    pub fn register(&self, name: &str, kind: &'static str) -> HealthHandle {
        let entry = Arc::new(Mutex::new(SourceHealth {
            kind,
            reason: Some(Reason::NoData),
            ..SourceHealth::default()
        }));
        let entry = match self.0.lock() {
            Ok(mut m) => m.entry(name.to_string()).or_insert(entry).clone(),
            Err(_) => entry,
        };
        HealthHandle(entry)
    }

    /// Every source, by name.
    pub fn snapshot(&self) -> Vec<(String, SourceHealth)> {
        self.0
            .lock()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.lock().ok()?.clone())))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl HealthHandle {
    /// Record a success (`ok` successful operations).
    pub fn success(&self, ok: u64, now_ns: i64) {
        self.with(|h| {
            h.ok += ok;
            if !h.up {
                if h.since_ns != 0 {
                    h.recoveries += 1;
                }
                h.up = true;
                h.reason = None;
                h.since_ns = now_ns;
            }
        });
    }

    /// Record a failure that takes the source down.
    pub fn failure(&self, reason: Reason, now_ns: i64) {
        self.with(|h| {
            h.failures += 1;
            if h.up || h.since_ns == 0 {
                h.since_ns = now_ns;
            }
            h.up = false;
            h.reason = Some(reason);
        });
    }

    /// Record rejected operations that leave the source up (refusals, drops).
    pub fn rejected(&self, n: u64, reason: Reason) {
        self.with(|h| {
            h.rejected += n;
            if h.up {
                h.reason = Some(reason);
            }
        });
    }

    /// Record samples whose source time was beyond the clock-skew
    /// allowance. They were delivered, so they leave `up` and `reason` alone.
    pub fn clock_skew(&self, n: u64) {
        self.with(|h| h.clock_skew += n);
    }

    /// Record one latency (ns; see [`Latency`]). A negative one (a source
    /// clock ahead of ours) says nothing about delivery and is left out.
    pub fn latency(&self, ns: i64) {
        if let Ok(ns) = u64::try_from(ns) {
            self.with(|h| h.latency.observe(ns));
        }
    }

    fn with(&self, f: impl FnOnce(&mut SourceHealth)) {
        if let Ok(mut h) = self.0.lock() {
            f(&mut h);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_outages_and_recoveries() {
        let b = HealthBoard::default();
        let plc = b.register("plc", "modbus");
        plc.failure(Reason::ConnectionRefused, 10);
        plc.success(4, 20);
        plc.rejected(1, Reason::IllegalDataAddress);
        plc.failure(Reason::Timeout, 30);
        plc.success(4, 40);
        plc.clock_skew(3);
        let (_, h) = &b.snapshot()[0];
        assert_eq!(
            (h.up, h.ok, h.failures, h.rejected, h.recoveries),
            (true, 8, 2, 1, 2)
        );
        assert_eq!((h.since_ns, h.clock_skew, h.reason), (40, 3, None));
        // Registering again gives the same entry.
        b.register("plc", "modbus").success(1, 50);
        assert_eq!(b.snapshot()[0].1.ok, 9);
    }
}
