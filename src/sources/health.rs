//! Health per source: is it delivering, since when, and what went wrong.
//!
//! Every source writes its state here; the live table shows it and the run
//! logs a summary per source when it stops. It is an operator's view, kept
//! out of the deterministic core (the event stream is a function of the
//! samples alone).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// The state of one source (a Modbus device, an MQTT or Sparkplug client).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceHealth {
    /// "modbus", "mqtt" or "sparkplug".
    pub kind: &'static str,
    /// Delivering data now. False until the first success.
    pub up: bool,
    /// Why it is down (a quality reason such as `connection_refused`), or the
    /// last refusal a Modbus device gave while up.
    pub reason: Option<&'static str>,
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
}

/// Shared by all sources of a run; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct HealthBoard(Arc<Mutex<BTreeMap<String, SourceHealth>>>);

impl HealthBoard {
    pub fn register(&self, name: &str, kind: &'static str) {
        if let Ok(mut m) = self.0.lock() {
            m.entry(name.to_string()).or_insert_with(|| SourceHealth {
                kind,
                reason: Some("no_data"),
                ..SourceHealth::default()
            });
        }
    }

    /// Record a success (`ok` successful operations).
    pub fn success(&self, name: &str, ok: u64, now_ns: i64) {
        self.with(name, |h| {
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
    pub fn failure(&self, name: &str, reason: &'static str, now_ns: i64) {
        self.with(name, |h| {
            h.failures += 1;
            if h.up || h.since_ns == 0 {
                h.since_ns = now_ns;
            }
            h.up = false;
            h.reason = Some(reason);
        });
    }

    /// Record rejected operations that leave the source up (refusals, drops).
    pub fn rejected(&self, name: &str, n: u64, reason: &'static str) {
        self.with(name, |h| {
            h.rejected += n;
            if h.up {
                h.reason = Some(reason);
            }
        });
    }

    fn with(&self, name: &str, f: impl FnOnce(&mut SourceHealth)) {
        if let Ok(mut m) = self.0.lock()
            && let Some(h) = m.get_mut(name)
        {
            f(h);
        }
    }

    /// Every source, by name.
    pub fn snapshot(&self) -> Vec<(String, SourceHealth)> {
        self.0
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_outages_and_recoveries() {
        let b = HealthBoard::default();
        b.register("plc", "modbus");
        b.failure("plc", "connection_refused", 10);
        b.success("plc", 4, 20);
        b.rejected("plc", 1, "illegal_data_address");
        b.failure("plc", "timeout", 30);
        b.success("plc", 4, 40);
        let (_, h) = &b.snapshot()[0];
        assert_eq!(
            (h.up, h.ok, h.failures, h.rejected, h.recoveries),
            (true, 8, 2, 1, 2)
        );
        assert_eq!(h.since_ns, 40);
        b.success("unknown", 1, 1); // ignored, no panic
    }
}
