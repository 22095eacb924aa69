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
//!   unknown); it is dropped and a rebirth is requested, of nodes the config
//!   names only, at most once per node per 5 s and of 20 nodes a second.
//!
//! The state is bounded, because node and device ids come from the network:
//! nodes and devices the config names are always kept, the others up to
//! [`Limits`], oldest evicted first; a death forgets its node or device.

use std::collections::{BTreeMap, HashMap, HashSet};
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
    /// A birth was accepted (NBIRTH without `device`, DBIRTH with): the
    /// setpoint writer may write the metrics it declared.
    Born {
        node: String,
        device: Option<String>,
    },
    /// A death was accepted (an NDEATH of the current session, a DDEATH):
    /// nothing is written to the node (device) until it is born again.
    Died {
        node: String,
        device: Option<String>,
    },
}

/// How many nodes and devices one source keeps session state for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Nodes the config does not name (those it names are always kept).
    pub max_nodes: usize,
    /// Devices, over all nodes, the config does not name.
    pub max_devices: usize,
}

/// A rebirth is requested of one node at most this often (ns)...
const REBIRTH_INTERVAL_NS: i64 = 5_000_000_000;
/// ...and of all nodes together at most this many times per second, so a
/// flood of data from unknown nodes cannot turn into a flood of commands.
const REBIRTHS_PER_SECOND: u32 = 20;

/// Aliases of one node or device, resolved at birth to the binding they
/// feed. Aliases of metrics the config does not map are not kept (a birth
/// may declare tens of thousands); the highest declared alias is, so data
/// naming an alias the birth never declared is still reported.
#[derive(Debug, Default)]
struct Aliases {
    bound: HashMap<u64, usize>,
    max: Option<u64>,
    /// When the state was created, in [`Session`] message counts: its key
    /// in the eviction order.
    created: u64,
}

#[derive(Debug, Default)]
struct NodeState {
    born: bool,
    last_seq: Option<u8>,
    bd_seq: Option<u64>,
    node: Aliases,
    devices: HashMap<String, Aliases>,
    last_rebirth_ns: Option<i64>,
}

/// Host-side state of one Sparkplug group.
#[derive(Debug)]
pub struct Session {
    group: String,
    limits: Limits,
    /// (node, device, metric name) → binding index.
    by_metric: HashMap<(String, Option<String>, String), usize>,
    bindings: Vec<Binding>,
    /// Nodes and (node, device) pairs the config names: never evicted.
    named_nodes: HashSet<String>,
    named_devices: HashSet<(String, String)>,
    nodes: HashMap<String, NodeState>,
    /// Nodes and devices the config does not name, oldest first: what is
    /// evicted when there are more than the limits allow.
    unnamed_nodes: BTreeMap<u64, String>,
    unnamed_devices: BTreeMap<u64, (String, String)>,
    /// Messages handled: the clock that orders the state by age.
    messages: u64,
    /// Rebirth requests in the current second, and when it started.
    rebirth_window: (i64, u32),
    evicted: u64,
    /// See [`Session::with_max_clock_skew`].
    max_clock_skew_ns: i64,
}

impl Session {
    pub fn new(group: impl Into<String>, bindings: Vec<Binding>, limits: Limits) -> Self {
        let by_metric = bindings
            .iter()
            .enumerate()
            .map(|(i, b)| ((b.node.clone(), b.device.clone(), b.metric.clone()), i))
            .collect();
        Session {
            group: group.into(),
            limits,
            by_metric,
            named_nodes: bindings.iter().map(|b| b.node.clone()).collect(),
            named_devices: bindings
                .iter()
                .filter_map(|b| Some((b.node.clone(), b.device.clone()?)))
                .collect(),
            bindings,
            nodes: HashMap::new(),
            unnamed_nodes: BTreeMap::new(),
            unnamed_devices: BTreeMap::new(),
            messages: 0,
            rebirth_window: (i64::MIN, 0),
            evicted: 0,
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

    /// Nodes and devices with session state now.
    pub fn tracked(&self) -> (usize, usize) {
        let devices = self.nodes.values().map(|n| n.devices.len()).sum();
        (self.nodes.len(), devices)
    }

    /// Nodes and devices forgotten so far to stay within the limits.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Handle one message of this group. `recv_ns` is its receive time.
    pub fn handle(&mut self, topic: &Topic, p: &Payload, recv_ns: i64, out: &mut Vec<Action>) {
        if topic.group != self.group {
            return;
        }
        self.messages += 1;
        let now = self.messages;
        let node = topic.node.as_str();
        match topic.kind {
            Kind::NCmd | Kind::DCmd => {}
            Kind::NBirth => {
                let last_rebirth_ns = self.remove_node(node).and_then(|r| r.last_rebirth_ns);
                if p.seq.is_some_and(|s| s != 0) {
                    out.push(Action::Problem {
                        node: node.to_string(),
                        what: format!("NBIRTH with seq {} (expected 0)", p.seq.unwrap_or(0)),
                    });
                }
                let aliases = self.aliases(node, None, &p.metrics, now);
                self.samples(&aliases, node, None, p, recv_ns, out);
                self.add_node(
                    node,
                    NodeState {
                        born: true,
                        last_seq: p.seq.map(|s| s as u8),
                        bd_seq: bd_seq(p),
                        node: aliases,
                        last_rebirth_ns,
                        ..NodeState::default()
                    },
                );
                out.push(Action::Born {
                    node: node.to_string(),
                    device: None,
                });
            }
            Kind::NDeath => {
                if let Some(st) = self.nodes.get(node) {
                    // A will from an older session must not kill the current one.
                    if let (Some(current), Some(dead)) = (st.bd_seq, bd_seq(p))
                        && current != dead
                    {
                        return;
                    }
                }
                // The node's state goes with it; a birth rebuilds it all. What
                // is kept is when it was last asked for one.
                if let Some(dead) = self.remove_node(node)
                    && dead.last_rebirth_ns.is_some()
                {
                    self.add_node(
                        node,
                        NodeState {
                            last_rebirth_ns: dead.last_rebirth_ns,
                            node: Aliases {
                                created: now,
                                ..Aliases::default()
                            },
                            ..NodeState::default()
                        },
                    );
                }
                self.stale(node, None, true, Reason::NodeDeath, recv_ns, out);
                out.push(Action::Died {
                    node: node.to_string(),
                    device: None,
                });
            }
            Kind::DBirth | Kind::DData | Kind::DDeath | Kind::NData => {
                let device = topic.device.as_deref();
                if !self.nodes.contains_key(node) {
                    let st = NodeState {
                        node: Aliases {
                            created: now,
                            ..Aliases::default()
                        },
                        ..NodeState::default()
                    };
                    self.add_node(node, st);
                }
                let Some(st) = self.nodes.get_mut(node) else {
                    return;
                };
                if !st.born {
                    self.rebirth(
                        node,
                        "data from a node that has not been born",
                        recv_ns,
                        out,
                    );
                    return;
                }
                if let Some(seq) = p.seq {
                    let seq = (seq & 0xFF) as u8;
                    let expected = st.last_seq.map(|s| s.wrapping_add(1));
                    st.last_seq = Some(seq);
                    if expected.is_some_and(|e| e != seq) {
                        self.rebirth(node, "sequence number gap", recv_ns, out);
                    }
                }
                match (topic.kind, device) {
                    (Kind::DBirth, Some(d)) => {
                        self.remove_device(node, d);
                        let aliases = self.aliases(node, Some(d), &p.metrics, now);
                        self.samples(&aliases, node, Some(d), p, recv_ns, out);
                        self.add_device(node, d, aliases);
                        out.push(Action::Born {
                            node: node.to_string(),
                            device: Some(d.to_string()),
                        });
                    }
                    (Kind::DDeath, Some(d)) => {
                        self.remove_device(node, d);
                        self.stale(node, Some(d), false, Reason::DeviceDeath, recv_ns, out);
                        out.push(Action::Died {
                            node: node.to_string(),
                            device: Some(d.to_string()),
                        });
                    }
                    _ => {
                        let empty = Aliases::default();
                        let aliases = self
                            .nodes
                            .get(node)
                            .and_then(|st| match device {
                                None => Some(&st.node),
                                Some(d) => st.devices.get(d),
                            })
                            .unwrap_or(&empty);
                        self.samples(aliases, node, device, p, recv_ns, out);
                    }
                }
            }
        }
    }

    fn is_named(&self, node: &str, device: &str) -> bool {
        self.named_devices
            .contains(&(node.to_string(), device.to_string()))
    }

    /// Keep `st` as the state of `node`, which has none; if the config does
    /// not name it, evict the oldest such node beyond `max_nodes`.
    fn add_node(&mut self, node: &str, st: NodeState) {
        if !self.named_nodes.contains(node) {
            while self.unnamed_nodes.len() >= self.limits.max_nodes.max(1) {
                let Some((_, old)) = self.unnamed_nodes.pop_first() else {
                    break;
                };
                self.remove_node(&old);
                self.evicted += 1;
            }
            self.unnamed_nodes.insert(st.node.created, node.to_string());
        }
        self.nodes.insert(node.to_string(), st);
    }

    /// Forget `node` and its devices.
    fn remove_node(&mut self, node: &str) -> Option<NodeState> {
        let st = self.nodes.remove(node)?;
        if self.unnamed_nodes.get(&st.node.created).map(String::as_str) == Some(node) {
            self.unnamed_nodes.remove(&st.node.created);
        }
        for (d, a) in &st.devices {
            if self
                .unnamed_devices
                .get(&a.created)
                .is_some_and(|(n, dd)| n == node && dd == d)
            {
                self.unnamed_devices.remove(&a.created);
            }
        }
        Some(st)
    }

    /// Keep `aliases` as the state of `device` of `node` (a born node); if
    /// the config does not name it, evict the oldest such device beyond
    /// `max_devices`.
    fn add_device(&mut self, node: &str, device: &str, aliases: Aliases) {
        if !self.is_named(node, device) {
            while self.unnamed_devices.len() >= self.limits.max_devices.max(1) {
                let Some((_, (n, d))) = self.unnamed_devices.pop_first() else {
                    break;
                };
                if let Some(st) = self.nodes.get_mut(&n) {
                    st.devices.remove(&d);
                }
                self.evicted += 1;
            }
            self.unnamed_devices
                .insert(aliases.created, (node.to_string(), device.to_string()));
        }
        if let Some(st) = self.nodes.get_mut(node) {
            st.devices.insert(device.to_string(), aliases);
        }
    }

    fn remove_device(&mut self, node: &str, device: &str) {
        let Some(a) = self
            .nodes
            .get_mut(node)
            .and_then(|st| st.devices.remove(device))
        else {
            return;
        };
        if self
            .unnamed_devices
            .get(&a.created)
            .is_some_and(|(n, d)| n == node && d == device)
        {
            self.unnamed_devices.remove(&a.created);
        }
    }

    /// Ask `node` for a rebirth, unless the config does not name it (its
    /// data is of no use here, and a request is a write to the plant), one
    /// was asked of it recently, or the source has asked too many nodes
    /// this second.
    fn rebirth(&mut self, node: &str, why: &'static str, recv_ns: i64, out: &mut Vec<Action>) {
        if !self.named_nodes.contains(node) {
            return;
        }
        let Some(st) = self.nodes.get_mut(node) else {
            return;
        };
        // A clock that stepped back does not hold requests back for long.
        if st
            .last_rebirth_ns
            .is_some_and(|t| (t..t.saturating_add(REBIRTH_INTERVAL_NS)).contains(&recv_ns))
        {
            return;
        }
        let (start, n) = &mut self.rebirth_window;
        if !(*start..start.saturating_add(1_000_000_000)).contains(&recv_ns) {
            (*start, *n) = (recv_ns, 0);
        }
        if *n >= REBIRTHS_PER_SECOND {
            return;
        }
        *n += 1;
        st.last_rebirth_ns = Some(recv_ns);
        out.push(Action::Rebirth {
            node: node.to_string(),
            why,
        });
    }

    /// The aliases a birth declares, resolved to bindings.
    fn aliases(&self, node: &str, device: Option<&str>, metrics: &[Metric], now: u64) -> Aliases {
        let mut a = Aliases {
            created: now,
            ..Aliases::default()
        };
        for m in metrics {
            if let (Some(name), Some(alias)) = (&m.name, m.alias) {
                a.max = a.max.max(Some(alias));
                let key = (node.to_string(), device.map(str::to_string), name.clone());
                if let Some(&bi) = self.by_metric.get(&key) {
                    a.bound.insert(alias, bi);
                }
            }
        }
        a
    }

    fn samples(
        &self,
        aliases: &Aliases,
        node: &str,
        device: Option<&str>,
        p: &Payload,
        recv_ns: i64,
        out: &mut Vec<Action>,
    ) {
        let mut unknown: Option<(u64, usize)> = None;
        for m in &p.metrics {
            let bi = match (&m.name, m.alias) {
                (Some(n), _) => {
                    let key = (node.to_string(), device.map(str::to_string), n.clone());
                    self.by_metric.get(&key).copied()
                }
                (None, Some(a)) => match aliases.bound.get(&a) {
                    Some(&bi) => Some(bi),
                    None => {
                        if aliases.max.is_none_or(|max| a > max) {
                            let (first, n) = unknown.get_or_insert((a, 0));
                            *first = (*first).min(a);
                            *n += 1;
                        }
                        None
                    }
                },
                (None, None) => None,
            };
            let Some(bi) = bi else {
                continue;
            };
            let b = &self.bindings[bi];
            let ts_ms = m.timestamp.or(p.timestamp);
            // A stamp beyond what nanoseconds since 1970 can hold (past the
            // year 2262) saturates rather than being dropped: it is then far
            // ahead of its receive time and flagged `clock_skew` below, as a
            // stamp an hour ahead is, not taken as good at the receive time.
            let src_ns = ts_ms
                .map(|ms| {
                    i64::try_from(ms)
                        .unwrap_or(i64::MAX)
                        .saturating_mul(1_000_000)
                })
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
        if let Some((first, n)) = unknown {
            out.push(Action::Problem {
                node: node.to_string(),
                what: format!(
                    "{n} metric(s) by an alias the birth did not declare (first {first})"
                ),
            });
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
#[path = "session_tests.rs"]
mod tests;
