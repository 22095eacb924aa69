//! The host side of Sparkplug B for one group: births, aliases, sequence
//! numbers and deaths, turned into samples.
//!
//! Pure state machine, no I/O: [`Session::handle`] takes one decoded message
//! and returns what to do (samples to ingest, rebirths to request), so every
//! rule of the spec that matters to tag quality is unit-tested here.
//!
//! Rules implemented (Sparkplug 3.0):
//! - NBIRTH starts a node session: seq restarts (normally at 0), the node's
//!   alias table and its devices' tables are rebuilt, `bdSeq` is recorded.
//! - DBIRTH declares a device's metrics and aliases; NDATA/DDATA may then
//!   name metrics by alias only.
//! - `seq` counts 0..=255 and wraps, across all of a node's messages except
//!   NDEATH. A gap means messages were lost: the host requests a rebirth (only
//!   where writing to that node is enabled) and keeps using the data.
//! - NDEATH (usually the node's MQTT will) marks every tag of the node and
//!   its devices stale, unless its `bdSeq` belongs to an older session.
//!   DDEATH marks the device's tags stale.
//! - Data for a node that has not been born cannot be decoded (aliases are
//!   unknown); it is dropped and a rebirth is requested.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::proto::{Metric, MetricValue, Payload, datatype};
use crate::config::TagId;
use crate::twin::{Quality, Reason, Sample, Value};

/// Message types of the spBv1.0 topic namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NBirth,
    NDeath,
    DBirth,
    DDeath,
    NData,
    DData,
    NCmd,
    DCmd,
}

/// `spBv1.0/{group}/{kind}/{node}[/{device}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub group: String,
    pub kind: Kind,
    pub node: String,
    pub device: Option<String>,
}

pub fn parse_topic(t: &str) -> Option<Topic> {
    let mut parts = t.split('/');
    if parts.next()? != "spBv1.0" {
        return None;
    }
    let group = parts.next()?.to_string();
    let kind = match parts.next()? {
        "NBIRTH" => Kind::NBirth,
        "NDEATH" => Kind::NDeath,
        "DBIRTH" => Kind::DBirth,
        "DDEATH" => Kind::DDeath,
        "NDATA" => Kind::NData,
        "DDATA" => Kind::DData,
        "NCMD" => Kind::NCmd,
        "DCMD" => Kind::DCmd,
        _ => return None,
    };
    let node = parts.next()?.to_string();
    let device = parts.next().map(str::to_string);
    if parts.next().is_some() || node.is_empty() || device.as_deref() == Some("") {
        return None;
    }
    let device_kind = matches!(kind, Kind::DBirth | Kind::DDeath | Kind::DData | Kind::DCmd);
    (device_kind == device.is_some()).then_some(Topic {
        group,
        kind,
        node,
        device,
    })
}

/// Where one metric's values go.
#[derive(Debug, Clone)]
pub struct Binding {
    pub node: String,
    pub device: Option<String>,
    pub metric: String,
    pub tag: TagId,
    pub scale: f64,
    pub offset: f64,
}

/// What the source should do after a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Sample(Sample),
    /// Ask the node to publish its births again (NCMD "Node Control/Rebirth").
    Rebirth {
        node: String,
        why: &'static str,
    },
    /// Something worth a (rate-limited) warning.
    Problem {
        node: String,
        what: String,
    },
    /// A metric was stamped further ahead of its receive time than the
    /// source allows; its sample (in the actions) is bounded and flagged.
    ClockSkew {
        node: String,
        metric: String,
    },
}

#[derive(Debug, Default)]
struct NodeState {
    born: bool,
    last_seq: Option<u8>,
    bd_seq: Option<u64>,
    /// (device, alias) → metric name.
    aliases: HashMap<(Option<String>, u64), String>,
    devices: HashSet<String>,
}

/// Host-side state of one Sparkplug group.
#[derive(Debug)]
pub struct Session {
    group: String,
    /// (node, device, metric name) → binding index.
    by_metric: HashMap<(String, Option<String>, String), usize>,
    bindings: Vec<Binding>,
    nodes: HashMap<String, NodeState>,
    /// See [`Session::with_max_clock_skew`].
    max_clock_skew_ns: i64,
}

impl Session {
    pub fn new(group: impl Into<String>, bindings: Vec<Binding>) -> Self {
        let by_metric = bindings
            .iter()
            .enumerate()
            .map(|(i, b)| ((b.node.clone(), b.device.clone(), b.metric.clone()), i))
            .collect();
        Session {
            group: group.into(),
            by_metric,
            bindings,
            nodes: HashMap::new(),
            max_clock_skew_ns: i64::try_from(crate::config::DEFAULT_MAX_CLOCK_SKEW.as_nanos())
                .unwrap_or(i64::MAX),
        }
    }

    /// How far ahead of its receive time a metric's timestamp may lie
    /// before its sample is bounded and flagged `clock_skew`
    /// ([`Sample::bound_clock_skew`]).
    pub fn with_max_clock_skew(mut self, max: std::time::Duration) -> Self {
        self.max_clock_skew_ns = i64::try_from(max.as_nanos()).unwrap_or(i64::MAX);
        self
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Handle one message of this group. `recv_ns` is its receive time.
    pub fn handle(&mut self, topic: &Topic, p: &Payload, recv_ns: i64, out: &mut Vec<Action>) {
        if topic.group != self.group {
            return;
        }
        let node = topic.node.clone();
        match topic.kind {
            Kind::NCmd | Kind::DCmd => {}
            Kind::NBirth => {
                let st = self.nodes.entry(node.clone()).or_default();
                *st = NodeState {
                    born: true,
                    last_seq: p.seq.map(|s| s as u8),
                    bd_seq: bd_seq(p),
                    ..NodeState::default()
                };
                if p.seq.is_some_and(|s| s != 0) {
                    out.push(Action::Problem {
                        node: node.clone(),
                        what: format!("NBIRTH with seq {} (expected 0)", p.seq.unwrap_or(0)),
                    });
                }
                register_aliases(st, None, &p.metrics);
                self.samples(&node, None, p, recv_ns, out);
            }
            Kind::NDeath => {
                let st = self.nodes.entry(node.clone()).or_default();
                // A will from an older session must not kill the current one.
                if let (Some(current), Some(dead)) = (st.bd_seq, bd_seq(p))
                    && current != dead
                {
                    return;
                }
                st.born = false;
                st.devices.clear();
                self.stale(&node, None, true, Reason::NodeDeath, recv_ns, out);
            }
            Kind::DBirth | Kind::DData | Kind::DDeath | Kind::NData => {
                let device = topic.device.clone();
                let st = self.nodes.entry(node.clone()).or_default();
                if !st.born {
                    out.push(Action::Rebirth {
                        node: node.clone(),
                        why: "data from a node that has not been born",
                    });
                    return;
                }
                if let Some(seq) = p.seq {
                    let seq = (seq & 0xFF) as u8;
                    let expected = st.last_seq.map(|s| s.wrapping_add(1));
                    st.last_seq = Some(seq);
                    if expected.is_some_and(|e| e != seq) {
                        out.push(Action::Rebirth {
                            node: node.clone(),
                            why: "sequence number gap",
                        });
                    }
                }
                match topic.kind {
                    Kind::DBirth => {
                        let d = device.clone().unwrap_or_default();
                        st.aliases
                            .retain(|(dev, _), _| dev.as_deref() != Some(d.as_str()));
                        register_aliases(st, device.clone(), &p.metrics);
                        st.devices.insert(d);
                        self.samples(&node, device.as_deref(), p, recv_ns, out);
                    }
                    Kind::DDeath => {
                        if let Some(d) = &device {
                            st.devices.remove(d);
                        }
                        self.stale(
                            &node,
                            device.as_deref(),
                            false,
                            Reason::DeviceDeath,
                            recv_ns,
                            out,
                        );
                    }
                    _ => self.samples(&node, device.as_deref(), p, recv_ns, out),
                }
            }
        }
    }

    fn samples(
        &self,
        node: &str,
        device: Option<&str>,
        p: &Payload,
        recv_ns: i64,
        out: &mut Vec<Action>,
    ) {
        let Some(st) = self.nodes.get(node) else {
            return;
        };
        for m in &p.metrics {
            let name = match (&m.name, m.alias) {
                (Some(n), _) => n.clone(),
                (None, Some(a)) => match st.aliases.get(&(device.map(str::to_string), a)) {
                    Some(n) => n.clone(),
                    None => {
                        out.push(Action::Problem {
                            node: node.to_string(),
                            what: format!("unknown alias {a}"),
                        });
                        continue;
                    }
                },
                (None, None) => continue,
            };
            let key = (node.to_string(), device.map(str::to_string), name);
            let Some(&bi) = self.by_metric.get(&key) else {
                continue;
            };
            let b = &self.bindings[bi];
            let ts_ms = m.timestamp.or(p.timestamp);
            let src_ns = ts_ms
                .and_then(|ms| i64::try_from(ms).ok())
                .and_then(|ms| ms.checked_mul(1_000_000))
                .unwrap_or(recv_ns);
            let mut sample = match metric_value(m) {
                Ok(Value::Num(n)) => Sample::good(
                    b.tag,
                    Value::Num(crate::sources::apply_scale(n, b.scale, b.offset)),
                    src_ns,
                    recv_ns,
                ),
                Ok(v) => Sample::good(b.tag, v, src_ns, recv_ns),
                Err(reason) => Sample {
                    source_time_ns: src_ns,
                    ..Sample::bad(b.tag, reason, recv_ns)
                },
            };
            let skewed = sample.bound_clock_skew(self.max_clock_skew_ns);
            out.push(Action::Sample(sample));
            if skewed {
                out.push(Action::ClockSkew {
                    node: node.to_string(),
                    metric: b.metric.clone(),
                });
            }
        }
    }

    /// Mark the tags of a node (and, with `whole_node`, of all its devices),
    /// or of one device, stale: the last values stay, flagged as old.
    fn stale(
        &self,
        node: &str,
        device: Option<&str>,
        whole_node: bool,
        reason: Reason,
        recv_ns: i64,
        out: &mut Vec<Action>,
    ) {
        for b in &self.bindings {
            let hit = b.node == node && (whole_node || b.device.as_deref() == device);
            if hit {
                out.push(Action::Sample(Sample {
                    tag: b.tag,
                    value: None,
                    quality: Quality::Stale,
                    reason: Some(reason),
                    source_time_ns: recv_ns,
                    recv_time_ns: recv_ns,
                }));
            }
        }
    }
}

fn bd_seq(p: &Payload) -> Option<u64> {
    p.metrics
        .iter()
        .find(|m| m.name.as_deref() == Some("bdSeq"))
        .and_then(|m| match m.value {
            Some(MetricValue::Long(v)) => Some(v),
            Some(MetricValue::Int(v)) => Some(u64::from(v)),
            _ => None,
        })
}

fn register_aliases(st: &mut NodeState, device: Option<String>, metrics: &[Metric]) {
    for m in metrics {
        if let (Some(name), Some(alias)) = (&m.name, m.alias) {
            st.aliases.insert((device.clone(), alias), name.clone());
        }
    }
}

/// A metric's value, interpreted by its declared data type. Signed integers
/// travel as two's complement in the unsigned fields.
fn metric_value(m: &Metric) -> Result<Value, Reason> {
    if m.is_null == Some(true) {
        return Err(Reason::NullValue);
    }
    let dt = m.datatype.unwrap_or(0);
    Ok(match (&m.value, dt) {
        (Some(MetricValue::Int(v)), datatype::INT8) => Value::Num(f64::from(*v as u8 as i8)),
        (Some(MetricValue::Int(v)), datatype::INT16) => Value::Num(f64::from(*v as u16 as i16)),
        (Some(MetricValue::Int(v)), datatype::INT32) => Value::Num(f64::from(*v as i32)),
        (Some(MetricValue::Int(v)), _) => Value::Num(f64::from(*v)),
        (Some(MetricValue::Long(v)), datatype::INT64) => Value::Num(*v as i64 as f64),
        (Some(MetricValue::Long(v)), _) => Value::Num(*v as f64),
        (Some(MetricValue::Float(v)), _) => Value::Num(f64::from(*v)),
        (Some(MetricValue::Double(v)), _) => Value::Num(*v),
        (Some(MetricValue::Boolean(v)), _) => Value::Bool(*v),
        (Some(MetricValue::String(s)), _) => Value::Text(Arc::from(s.as_str())),
        (Some(MetricValue::Bytes(_)), _) | (None, _) => return Err(Reason::UnsupportedType),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_800_000_000_000_000_000;

    fn metric(name: Option<&str>, alias: Option<u64>, dt: u32, v: MetricValue) -> Metric {
        Metric {
            name: name.map(str::to_string),
            alias,
            timestamp: None,
            datatype: Some(dt),
            is_historical: None,
            is_transient: None,
            is_null: None,
            value: Some(v),
        }
    }

    fn payload(seq: Option<u64>, metrics: Vec<Metric>) -> Payload {
        Payload {
            timestamp: Some(1_800_000_000_000),
            metrics,
            seq,
            uuid: None,
            body: None,
        }
    }

    fn topic(kind: &str, device: Option<&str>) -> Topic {
        let t = match device {
            Some(d) => format!("spBv1.0/Plant1/{kind}/Line1/{d}"),
            None => format!("spBv1.0/Plant1/{kind}/Line1"),
        };
        parse_topic(&t).expect("valid topic")
    }

    fn session() -> Session {
        Session::new(
            "Plant1",
            vec![
                Binding {
                    node: "Line1".into(),
                    device: None,
                    metric: "Line/Speed".into(),
                    tag: TagId(0),
                    scale: 1.0,
                    offset: 0.0,
                },
                Binding {
                    node: "Line1".into(),
                    device: Some("Filler".into()),
                    metric: "Motor/Current".into(),
                    tag: TagId(1),
                    scale: 0.1,
                    offset: 0.0,
                },
                Binding {
                    node: "Line1".into(),
                    device: Some("Filler".into()),
                    metric: "Temp".into(),
                    tag: TagId(2),
                    scale: 1.0,
                    offset: 0.0,
                },
            ],
        )
    }

    fn samples(out: &[Action]) -> Vec<(TagId, Option<Value>, Quality)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Sample(s) => Some((s.tag, s.value.clone(), s.quality)),
                _ => None,
            })
            .collect()
    }

    fn born(s: &mut Session) {
        let mut out = Vec::new();
        s.handle(
            &topic("NBIRTH", None),
            &payload(
                Some(0),
                vec![
                    metric(Some("bdSeq"), None, datatype::INT64, MetricValue::Long(7)),
                    metric(
                        Some("Line/Speed"),
                        Some(1),
                        datatype::FLOAT,
                        MetricValue::Float(1.5),
                    ),
                ],
            ),
            T,
            &mut out,
        );
        assert_eq!(
            samples(&out),
            vec![(TagId(0), Some(Value::Num(1.5)), Quality::Good)]
        );
        out.clear();
        s.handle(
            &topic("DBIRTH", Some("Filler")),
            &payload(
                Some(1),
                vec![
                    metric(
                        Some("Motor/Current"),
                        Some(10),
                        datatype::INT16,
                        MetricValue::Int(0xFFF6),
                    ),
                    metric(
                        Some("Temp"),
                        Some(11),
                        datatype::DOUBLE,
                        MetricValue::Double(41.5),
                    ),
                ],
            ),
            T,
            &mut out,
        );
        assert_eq!(
            samples(&out),
            vec![
                (TagId(1), Some(Value::Num(-1.0)), Quality::Good),
                (TagId(2), Some(Value::Num(41.5)), Quality::Good)
            ]
        );
    }

    #[test]
    fn topics() {
        assert_eq!(
            topic("DDATA", Some("Filler")).device.as_deref(),
            Some("Filler")
        );
        assert!(
            parse_topic("spBv1.0/G/NDATA/N/D").is_none(),
            "node message with a device"
        );
        assert!(
            parse_topic("spBv1.0/G/DDATA/N").is_none(),
            "device message without one"
        );
        assert!(parse_topic("spAv1.0/G/NDATA/N").is_none());
        assert!(parse_topic("spBv1.0/G/BOGUS/N").is_none());
    }

    #[test]
    fn data_by_alias_after_births() {
        let mut s = session();
        born(&mut s);
        let mut out = Vec::new();
        s.handle(
            &topic("DDATA", Some("Filler")),
            &payload(
                Some(2),
                vec![metric(
                    None,
                    Some(10),
                    datatype::INT16,
                    MetricValue::Int(123),
                )],
            ),
            T,
            &mut out,
        );
        assert_eq!(
            samples(&out),
            vec![(TagId(1), Some(Value::Num(12.3)), Quality::Good)]
        );
        assert!(!out.iter().any(|a| matches!(a, Action::Rebirth { .. })));
    }

    #[test]
    fn seq_gap_requests_rebirth_and_wraps_cleanly() {
        let mut s = session();
        born(&mut s);
        let mut out = Vec::new();
        // 2..=255 then 0: no gap across the wrap.
        for seq in (2..=255).chain([0, 1]) {
            s.handle(
                &topic("NDATA", None),
                &payload(Some(seq), vec![]),
                T,
                &mut out,
            );
        }
        assert!(
            !out.iter().any(|a| matches!(a, Action::Rebirth { .. })),
            "{out:?}"
        );
        s.handle(
            &topic("NDATA", None),
            &payload(Some(5), vec![]),
            T,
            &mut out,
        );
        assert!(matches!(
            out.last(),
            Some(Action::Rebirth {
                why: "sequence number gap",
                ..
            })
        ));
    }

    #[test]
    fn deaths_make_tags_stale_and_old_wills_are_ignored() {
        let mut s = session();
        born(&mut s);
        let mut out = Vec::new();
        s.handle(
            &topic("DDEATH", Some("Filler")),
            &payload(Some(2), vec![]),
            T,
            &mut out,
        );
        let st = samples(&out);
        assert_eq!(st.len(), 2);
        assert!(
            st.iter()
                .all(|(t, v, q)| *t != TagId(0) && v.is_none() && *q == Quality::Stale)
        );
        out.clear();
        // A will carrying an older bdSeq is from a previous session.
        let old = payload(
            None,
            vec![metric(
                Some("bdSeq"),
                None,
                datatype::INT64,
                MetricValue::Long(6),
            )],
        );
        s.handle(&topic("NDEATH", None), &old, T, &mut out);
        assert!(out.is_empty());
        let current = payload(
            None,
            vec![metric(
                Some("bdSeq"),
                None,
                datatype::INT64,
                MetricValue::Long(7),
            )],
        );
        s.handle(&topic("NDEATH", None), &current, T, &mut out);
        assert_eq!(
            samples(&out).len(),
            3,
            "node death covers the node and its devices"
        );
        out.clear();
        s.handle(
            &topic("NDATA", None),
            &payload(Some(3), vec![]),
            T,
            &mut out,
        );
        assert!(
            matches!(&out[..], [Action::Rebirth { .. }]),
            "data after death needs a rebirth"
        );
    }

    #[test]
    fn timestamps_nulls_and_unknown_aliases() {
        let mut s = session();
        born(&mut s);
        let mut out = Vec::new();
        let mut m = metric(None, Some(11), datatype::DOUBLE, MetricValue::Double(50.0));
        m.timestamp = Some(1_800_000_000_500);
        let mut null = metric(
            Some("Motor/Current"),
            None,
            datatype::INT16,
            MetricValue::Int(0),
        );
        null.is_null = Some(true);
        s.handle(
            &topic("DDATA", Some("Filler")),
            &payload(
                Some(2),
                vec![
                    m,
                    null,
                    metric(None, Some(99), datatype::DOUBLE, MetricValue::Double(1.0)),
                ],
            ),
            T,
            &mut out,
        );
        let Action::Sample(first) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(first.source_time_ns, 1_800_000_000_500 * 1_000_000);
        assert_eq!(first.recv_time_ns, T);
        let Action::Sample(second) = &out[1] else {
            panic!("{out:?}")
        };
        assert_eq!(
            (second.quality, second.reason),
            (Quality::Bad, Some(Reason::NullValue))
        );
        assert!(matches!(&out[2], Action::Problem { what, .. } if what.contains("alias 99")));
    }

    #[test]
    fn r9_a_future_metric_timestamp_does_not_freeze_its_tag() {
        use crate::twin::{TickClock, TwinCore};
        use prost::Message as _;
        const MS: i64 = 1_000_000;
        const DAY_MS: u64 = 86_400_000;
        let cfg = crate::config::load_str(
            std::path::Path::new("sp.toml"),
            r#"
[plant]
name = "p"
tick = "100ms"
stale_after = "1s"
[[sources.sparkplug]]
name = "sp"
broker = "mqtt://127.0.0.1:1"
group = "Plant1"
  [[sources.sparkplug.metrics]]
  node = "Line1"
  metric = "Line/Speed"
  tag = "line.speed"
"#,
        )
        .expect("valid");
        assert_eq!(cfg.tags.id("line.speed"), Some(TagId(0)));
        let mut core = TwinCore::new(
            &cfg,
            TickClock::new(T, std::time::Duration::from_millis(100)),
        );
        let mut s = session();
        born(&mut s);

        // Speed by alias in NDATA, through the wire format: a day ahead, then
        // two with honest times.
        let t_ms = (T / MS) as u64;
        let sent = [
            (t_ms + DAY_MS, 9.0, 150),
            (t_ms + 240, 2.0, 250),
            (t_ms + 340, 3.0, 350),
        ];
        let mut out = Vec::new();
        for (seq, (ts, v, recv_ms)) in (2..).zip(sent) {
            let mut m = metric(None, Some(1), datatype::FLOAT, MetricValue::Float(v));
            m.timestamp = Some(ts);
            let wire = payload(Some(seq), vec![m]).encode_to_vec();
            let decoded = Payload::decode(wire.as_slice()).expect("decodes");
            s.handle(&topic("NDATA", None), &decoded, T + recv_ms * MS, &mut out);
        }
        let pushed: Vec<Sample> = out
            .iter()
            .filter_map(|a| match a {
                Action::Sample(x) => Some(x.clone()),
                _ => None,
            })
            .collect();
        // The future one: kept, uncertain, at its receive time; reported once.
        assert_eq!(
            (
                pushed[0].quality,
                pushed[0].reason,
                pushed[0].source_time_ns
            ),
            (Quality::Uncertain, Some(Reason::ClockSkew), T + 150 * MS)
        );
        let skews: Vec<_> = out
            .iter()
            .filter(|a| matches!(a, Action::ClockSkew { metric, .. } if metric == "Line/Speed"))
            .collect();
        assert_eq!(skews.len(), 1, "{out:?}");

        // The core follows the honest samples after it, then ages the tag.
        for x in pushed {
            core.push(x);
        }
        let mut states = Vec::new();
        while core.clock().now_ns() < T + 2_000 * MS {
            core.advance();
            core.drain_events();
            states.push(core.tag_states().remove(0));
        }
        let at_400 = &states[3];
        assert_eq!(
            (at_400.value.clone(), at_400.quality, at_400.source_time_ns),
            (Some(Value::Num(3.0)), Quality::Good, Some(T + 340 * MS))
        );
        let last = states.last().expect("ticks");
        assert_eq!(
            (last.quality, last.reason),
            (Quality::Stale, Some(Reason::NoUpdate))
        );
    }

    #[test]
    fn the_clock_skew_allowance_is_the_sources() {
        let mut s = session().with_max_clock_skew(std::time::Duration::from_secs(3600));
        born(&mut s);
        let mut m = metric(None, Some(1), datatype::FLOAT, MetricValue::Float(1.0));
        m.timestamp = Some((T / 1_000_000) as u64 + 60_000);
        let mut out = Vec::new();
        s.handle(
            &topic("NDATA", None),
            &payload(Some(2), vec![m]),
            T,
            &mut out,
        );
        assert_eq!(
            samples(&out),
            vec![(TagId(0), Some(Value::Num(1.0)), Quality::Good)]
        );
        assert_eq!(out.len(), 1, "{out:?}");
    }
}
