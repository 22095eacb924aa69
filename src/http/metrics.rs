//! `GET /metrics`: the snapshot in the Prometheus text format.
//!
//! A scrape builds a registry from the newest [`Snapshot`], the sources'
//! health board and the process's own counters, and lets
//! `prometheus-client` encode it. Nothing is kept between scrapes: every
//! counter is a run total the snapshot already holds, so a scrape costs
//! the tick loop nothing. Names and labels are listed in docs/api.md.
//!
//! The format served is Prometheus' text format 0.0.4, which every
//! Prometheus and `promtool check metrics` read. `prometheus-client`
//! writes OpenMetrics, which is the same text but for counters: there the
//! family is `x` and its samples `x_total`, which the 0.0.4 parser reads as
//! two families (and promtool flags). So our counters are [`Total`]s: the
//! family carries the `_total` itself and its samples are written as is.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use super::snapshot::{Shared, Snapshot, TICK_BUCKETS};
use crate::sources::health::LATENCY_BUCKETS;

/// The most tag series one scrape shows: tags come from the config, so
/// this only bounds a config with a very large tag list.
pub const MAX_TAG_SERIES: usize = 10_000;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

type Labels = Vec<(&'static str, String)>;
type GaugeF = Gauge<f64, AtomicU64>;

/// A histogram given whole (bucket counts kept by the sink), which
/// `prometheus-client`'s own histogram, fed one observation at a time,
/// cannot be.
#[derive(Debug)]
struct FixedHistogram {
    sum: f64,
    count: u64,
    /// Upper bound and that bucket's own count (not cumulative).
    buckets: Vec<(f64, u64)>,
}

impl EncodeMetric for FixedHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A [`FixedHistogram`] in a family (one per label set): set after the
/// family made it, so it sits behind a lock that only a scrape takes.
#[derive(Debug, Default)]
struct LabelledHistogram(std::sync::Mutex<Option<FixedHistogram>>);

impl TypedMetric for LabelledHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for LabelledHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let h = self.0.lock().map_err(|_| std::fmt::Error)?;
        match h.as_ref() {
            Some(h) => encoder.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None),
            None => encoder.encode_histogram::<NoLabelSet>(0.0, 0, &[(f64::MAX, 0)], None),
        }
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A run total, as the 0.0.4 format writes a counter (see the module's
/// docs): registered under its full name, `_total` included.
#[derive(Debug, Default)]
struct Total(AtomicU64);

impl Total {
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    fn of(v: f64) -> Total {
        let t = Total::default();
        t.set(v);
        t
    }
}

impl TypedMetric for Total {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Total {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&f64::from_bits(self.0.load(Ordering::Relaxed)))
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

fn gauges() -> Family<Labels, GaugeF> {
    Family::default()
}

fn counters() -> Family<Labels, Total> {
    Family::default()
}

/// The text of one scrape.
pub fn render(shared: &Shared) -> Result<String, std::fmt::Error> {
    let snap = shared.get();
    let mut reg = Registry::default();
    tags(&mut reg, &snap);
    sources(&mut reg, shared);
    core(&mut reg, &snap);
    ml(&mut reg, &snap);
    http(&mut reg, shared);
    upstream(&mut reg);
    process(&mut reg);
    let mut text = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut text, &reg)?;
    Ok(text)
}

fn tags(reg: &mut Registry, snap: &Snapshot) {
    let values = gauges();
    let good = gauges();
    for row in snap.tags.iter().take(MAX_TAG_SERIES) {
        let labels: Labels = vec![
            ("tag", row.tag.to_string()),
            ("machine", row.machine.as_deref().unwrap_or("").to_string()),
            ("unit", row.unit.as_deref().unwrap_or("").to_string()),
        ];
        good.get_or_create(&labels)
            .set(if row.quality == "good" { 1.0 } else { 0.0 });
        // Text tags and tags without a value have no number to show.
        if let Some(n) = row.number {
            values.get_or_create(&labels).set(n);
        }
    }
    reg.register(
        "twin_tag_value",
        "A tag's last value (booleans as 0/1; text tags are left out)",
        values,
    );
    reg.register(
        "twin_tag_good",
        "1 if the tag's quality is good, else 0",
        good,
    );
}

fn sources(reg: &mut Registry, shared: &Shared) {
    let up = gauges();
    let polls = counters();
    let failures = counters();
    let reconnects = counters();
    let rejected = counters();
    let latency: Family<Labels, LabelledHistogram> = Family::default();
    for (name, h) in shared.health.snapshot() {
        let l: Labels = vec![("source", name), ("kind", h.kind.to_string())];
        let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .zip(h.latency.counts.iter().copied())
            .collect();
        buckets.push((f64::MAX, h.latency.counts.last().copied().unwrap_or(0)));
        if let Ok(mut slot) = latency.get_or_create(&l).0.lock() {
            *slot = Some(FixedHistogram {
                sum: h.latency.sum_ns as f64 / 1e9,
                count: h.latency.count,
                buckets,
            });
        }
        up.get_or_create(&l).set(if h.up { 1.0 } else { 0.0 });
        polls.get_or_create(&l).set(h.ok as f64);
        failures.get_or_create(&l).set(h.failures as f64);
        reconnects.get_or_create(&l).set(h.recoveries as f64);
        rejected.get_or_create(&l).set(h.rejected as f64);
    }
    reg.register("twin_source_up", "1 while the source is up", up);
    reg.register(
        "twin_source_polls_total",
        "Successful polls (Modbus) or messages (MQTT) of the source",
        polls,
    );
    reg.register(
        "twin_source_failures_total",
        "Failed polls or connections of the source",
        failures,
    );
    reg.register(
        "twin_source_reconnects_total",
        "Times the source came back after a failure",
        reconnects,
    );
    reg.register(
        "twin_source_rejected_total",
        "Values the source refused (out of range, undecodable)",
        rejected,
    );
    reg.register(
        "twin_source_latency_seconds",
        "Modbus: poll sent to each reply; MQTT and Sparkplug: a message's source timestamp to its receipt",
        latency,
    );
}

fn core(reg: &mut Registry, snap: &Snapshot) {
    let tick = Gauge::<i64>::default();
    tick.set(i64::try_from(snap.tick).unwrap_or(i64::MAX));
    reg.register("twin_tick", "The last tick the snapshot is of", tick);
    let mut buckets: Vec<(f64, u64)> = TICK_BUCKETS
        .iter()
        .copied()
        .zip(snap.tick_time.counts.iter().copied())
        .collect();
    buckets.push((f64::MAX, snap.tick_time.counts.last().copied().unwrap_or(0)));
    reg.register(
        "twin_tick_duration_seconds",
        "Wall time of a tick on the tick thread (core and guard I/O)",
        FixedHistogram {
            sum: snap.tick_time.sum,
            count: snap.tick_time.count,
            buckets,
        },
    );
    let events = counters();
    for (kind, n) in &snap.events {
        events
            .get_or_create(&vec![("type", (*kind).to_string())])
            .set(*n as f64);
    }
    reg.register("twin_events_total", "Events of the core, by their stream type (gap lines and outputs' own error lines are not counted)", events);
    let decisions = counters();
    for ((decision, rule), n) in &snap.decisions {
        decisions
            .get_or_create(&vec![
                ("decision", (*decision).to_string()),
                ("rule", (*rule).to_string()),
            ])
            .set(*n as f64);
    }
    reg.register(
        "twin_guard_decisions_total",
        "Setpoint decisions of the guard, by decision and rule (`none`: no rule decided)",
        decisions,
    );
    let pending = Gauge::<i64>::default();
    let locked = Gauge::<i64>::default();
    let kill = Gauge::<i64>::default();
    if let Some(g) = &snap.guard {
        pending.set(i64::try_from(g.pending.len()).unwrap_or(i64::MAX));
        locked.set(i64::try_from(g.locked.len()).unwrap_or(i64::MAX));
        kill.set(i64::from(g.kill));
    }
    reg.register(
        "twin_guard_pending",
        "Advisory proposals waiting for an operator",
        pending,
    );
    reg.register(
        "twin_guard_locked",
        "Setpoints locked by a read-back mismatch",
        locked,
    );
    reg.register(
        "twin_guard_kill",
        "1 while an operator's kill switch is on",
        kill,
    );
}

fn ml(reg: &mut Registry, snap: &Snapshot) {
    let rows = counters();
    let skipped = counters();
    let runs = counters();
    let compute = counters();
    for m in &snap.metering {
        let model = m.model.to_string();
        runs.get_or_create(&vec![("model", model.clone())])
            .set(m.total.runs as f64);
        compute
            .get_or_create(&vec![("model", model.clone())])
            .set(m.compute_seconds);
        if m.machines.is_empty() {
            let l: Labels = vec![("model", model.clone()), ("machine", String::new())];
            rows.get_or_create(&l).set(m.total.rows as f64);
            skipped.get_or_create(&l).set(m.total.skipped_rows as f64);
        }
        for (machine, c) in &m.machines {
            let l: Labels = vec![("model", model.clone()), ("machine", machine.to_string())];
            rows.get_or_create(&l).set(c.rows as f64);
            skipped.get_or_create(&l).set(c.skipped_rows as f64);
        }
    }
    reg.register("twin_ml_runs_total", "Model run() batches, by model", runs);
    reg.register(
        "twin_ml_rows_total",
        "Rows run through a model, by model and machine (closed metering intervals)",
        rows,
    );
    reg.register(
        "twin_ml_skipped_rows_total",
        "Due rows not run for want of quota, by model and machine",
        skipped,
    );
    reg.register(
        "twin_ml_compute_seconds_total",
        "Wall time spent in a model's run(), by model",
        compute,
    );
}

fn http(reg: &mut Registry, shared: &Shared) {
    let open = Gauge::<i64>::default();
    open.set(i64::try_from(shared.events.open()).unwrap_or(i64::MAX));
    reg.register(
        "twin_http_event_clients",
        "Event streams (GET /api/v1/events) open now",
        open,
    );
    reg.register(
        "twin_http_event_clients_dropped_total",
        "Event stream clients dropped because their queue was full (too slow to follow the run)",
        Total::of(shared.events.dropped_total() as f64),
    );
}

/// The upstream MQTT publishers' totals (`[[sinks.mqtt]]`).
fn upstream(reg: &mut Registry) {
    let (delivered, dropped, held) = (counters(), counters(), gauges());
    for (name, s) in crate::sinks::mqtt::running() {
        let l: Labels = vec![("sink", name)];
        delivered.get_or_create(&l).set(s.delivered as f64);
        dropped.get_or_create(&l).set(s.dropped as f64);
        held.get_or_create(&l).set(s.held as f64);
    }
    reg.register(
        "twin_upstream_delivered_total",
        "Messages the broker acknowledged (QoS 1) or was sent (QoS 0), by publisher",
        delivered,
    );
    reg.register(
        "twin_upstream_dropped_total",
        "Messages dropped because the publisher's queue was full (oldest first)",
        dropped,
    );
    reg.register(
        "twin_upstream_held",
        "Messages held for the broker now (queued or awaiting acknowledgement)",
        held,
    );
}

fn process(reg: &mut Registry) {
    let cpu = Total::of(crate::wallclock::process_cpu_time().as_secs_f64());
    reg.register(
        "process_cpu_seconds_total",
        "User and system CPU time of the twin process",
        cpu,
    );
    if let Some(rss) = resident_bytes() {
        let g = Gauge::<i64>::default();
        g.set(rss);
        reg.register(
            "process_resident_memory_bytes",
            "Resident memory of the twin process",
            g,
        );
    }
}

/// The process's resident set (`VmRSS` in /proc/self/status), if the
/// system says.
fn resident_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::{Sink, TickOutput};
    use crate::twin::events::TagEvent;
    use crate::twin::{Quality, TickClock, TwinCore, TwinEvent};
    use std::time::Duration;

    #[test]
    fn counters_carry_their_total_and_the_tick_histogram_is_cumulative() {
        let cfg = crate::config::load_str(
            std::path::Path::new("metrics-test.toml"),
            "[plant]\nname = \"p\"\n",
        )
        .expect("a minimal config is valid");
        let core = TwinCore::new(&cfg, TickClock::new(0, Duration::from_millis(100)));
        let shared = Shared::new(&cfg, Default::default());
        let mut sink = crate::http::HttpSink::new(&cfg, shared.clone());
        let tag = TwinEvent::Tag(TagEvent {
            t_ns: 100,
            tag: crate::config::TagId(0),
            value: None,
            quality: Quality::Bad,
            reason: None,
            source_time_ns: None,
        });
        for (tick, ms) in [(1, 3), (2, 3), (3, 700)] {
            let events = [tag.clone()];
            sink.write_tick(&TickOutput {
                tick,
                t_ns: i64::try_from(tick).unwrap_or(0) * 300_000_000,
                events: &events,
                jsonl: b"",
                core: &core,
                tick_time: Duration::from_millis(ms),
            })
            .expect("the sink never fails");
        }
        let text = render(&shared).expect("encodes");
        for line in [
            "# TYPE twin_events_total counter",
            "twin_events_total{type=\"tag\"} 3",
            "# TYPE twin_tick_duration_seconds histogram",
            "twin_tick_duration_seconds_count 3",
            "twin_tick_duration_seconds_bucket{le=\"0.0025\"} 0",
            "twin_tick_duration_seconds_bucket{le=\"0.005\"} 2",
            "twin_tick_duration_seconds_bucket{le=\"0.5\"} 2",
            "twin_tick_duration_seconds_bucket{le=\"1.0\"} 3",
            "twin_tick_duration_seconds_bucket{le=\"+Inf\"} 3",
            "# TYPE process_cpu_seconds_total counter",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
        // No OpenMetrics counter family without its `_total`.
        assert!(!text.contains("# TYPE twin_events counter"), "{text}");
    }

    #[test]
    fn each_source_has_its_latency_histogram() {
        let cfg = crate::config::load_str(
            std::path::Path::new("metrics-test.toml"),
            "[plant]\nname = \"p\"\n",
        )
        .expect("a minimal config is valid");
        let board = crate::sources::health::HealthBoard::default();
        let plc = board.register("plc", "modbus");
        for us in [300, 700, 800, 40_000] {
            plc.latency(us * 1000);
        }
        // A source clock ahead of ours is no latency.
        plc.latency(-5);
        board.register("broker", "mqtt");
        let shared = Shared::new(&cfg, board);
        let text = render(&shared).expect("encodes");
        for line in [
            "# TYPE twin_source_latency_seconds histogram",
            "twin_source_latency_seconds_count{source=\"plc\",kind=\"modbus\"} 4",
            "twin_source_latency_seconds_bucket{le=\"0.0005\",source=\"plc\",kind=\"modbus\"} 1",
            "twin_source_latency_seconds_bucket{le=\"0.001\",source=\"plc\",kind=\"modbus\"} 3",
            "twin_source_latency_seconds_bucket{le=\"0.05\",source=\"plc\",kind=\"modbus\"} 4",
            "twin_source_latency_seconds_bucket{le=\"+Inf\",source=\"plc\",kind=\"modbus\"} 4",
            "twin_source_latency_seconds_count{source=\"broker\",kind=\"mqtt\"} 0",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
    }
}
