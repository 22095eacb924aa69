//! Setpoint writes over Sparkplug B: an NCMD (node metric) or DCMD (device
//! metric) to the edge node the setpoint's tag comes from, for metrics the
//! node has born only (docs/writeback.md, "Sparkplug B").
//!
//! [`Births`] is what the subscriber saw: for each metric a setpoint
//! writes, whether its node (and device) is born now, and the datatype and
//! alias the birth declared. The subscriber updates it from its session
//! (NBIRTH, DBIRTH, and the deaths the session accepts); a write reads it.
//! A Sparkplug command must use the born datatype (an edge node may reject
//! or misread another) and the born alias, so a write to a metric that was
//! not born in the node's current session cannot be encoded: it is refused
//! with the reason (`NotSent`), never guessed.
//!
//! The command is published through a [`CommandLink`] (the MQTT writer's
//! command connection, one per source): QoS 1, never re-sent.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use prost::Message as _;

use super::proto::{Metric, MetricValue, Payload, datatype};
use crate::config::LoadedConfig;
use crate::config::guard::WriteTarget;
use crate::sources::mqtt::writer::CommandLink;

/// A metric as its birth declared it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Born {
    pub datatype: u32,
    pub alias: Option<u64>,
}

/// (node, device, metric).
type Key = (String, Option<String>, String);

/// Where a node or device stands, for the metrics setpoints write.
#[derive(Debug, Clone, PartialEq)]
enum Life {
    /// Born: its watched metrics, as born.
    Born(HashMap<String, Born>),
    /// Dead since this death message (NDEATH, DDEATH).
    Dead(&'static str),
}

#[derive(Debug, Default)]
struct Table {
    /// The metrics setpoints write: the only ones kept, so the table is
    /// bounded by the config, whatever nodes the network invents.
    watched: HashSet<Key>,
    nodes: HashMap<String, Life>,
    devices: HashMap<(String, String), Life>,
}

/// The births the subscriber saw of the metrics setpoints write, shared
/// with the writer. Cheap to clone (one table).
#[derive(Debug, Clone, Default)]
pub struct Births(Arc<Mutex<Table>>);

impl Births {
    /// A table for the metrics of `watched` (node, device, metric).
    pub fn new(watched: impl IntoIterator<Item = (String, Option<String>, String)>) -> Births {
        Births(Arc::new(Mutex::new(Table {
            watched: watched.into_iter().collect(),
            ..Table::default()
        })))
    }

    /// The Sparkplug targets on source `source` of `cfg`'s setpoints that
    /// can write (advisory, closed loop): a shadow setpoint never needs a
    /// birth, nor a rebirth request on its behalf.
    pub fn for_source(cfg: &LoadedConfig, source: usize) -> Births {
        let writing = cfg.guard.setpoints.iter().filter(|s| s.mode.writes());
        Births::new(writing.filter_map(|s| match &s.target {
            WriteTarget::Sparkplug {
                source: src,
                node,
                device,
                metric,
            } if *src == source => Some((node.clone(), device.clone(), metric.clone())),
            _ => None,
        }))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Table) -> T) -> T {
        // A panic elsewhere while holding the lock leaves a table that is
        // still a table; keep using it.
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut t)
    }

    /// A birth the session accepted: NBIRTH (`device` None), which also
    /// ends every device of the node's previous session, or DBIRTH.
    pub fn born(&self, node: &str, device: Option<&str>, metrics: &[Metric]) {
        self.with(|t| {
            let watches = |t: &Table| {
                t.watched
                    .iter()
                    .any(|(n, d, _)| n == node && (device.is_none() || d.as_deref() == device))
            };
            if !watches(t) {
                return;
            }
            let mut born = HashMap::new();
            for m in metrics {
                let Some(name) = &m.name else { continue };
                let key = (node.to_string(), device.map(str::to_string), name.clone());
                if let (true, Some(dt)) = (t.watched.contains(&key), m.datatype) {
                    born.insert(
                        name.clone(),
                        Born {
                            datatype: dt,
                            alias: m.alias,
                        },
                    );
                }
            }
            match device {
                None => {
                    t.devices.retain(|(n, _), _| n != node);
                    t.nodes.insert(node.to_string(), Life::Born(born));
                }
                Some(d) => {
                    t.devices
                        .insert((node.to_string(), d.to_string()), Life::Born(born));
                }
            }
        });
    }

    /// A death the session accepted: NDEATH (`device` None), which ends
    /// the node's devices too, or DDEATH.
    pub fn died(&self, node: &str, device: Option<&str>) {
        self.with(|t| match device {
            None => {
                if t.watched.iter().any(|(n, ..)| n == node) {
                    t.devices.retain(|(n, _), _| n != node);
                    t.nodes.insert(node.to_string(), Life::Dead("NDEATH"));
                }
            }
            Some(d) => {
                let key = (node.to_string(), d.to_string());
                if t.devices.contains_key(&key) {
                    t.devices.insert(key, Life::Dead("DDEATH"));
                }
            }
        });
    }

    /// Forget every birth: the subscriber reconnected, and what it saw
    /// before its outage may be out of date (a node may have died and been
    /// born again, with other aliases, while it was away).
    pub fn forget(&self) {
        self.with(|t| {
            t.nodes.clear();
            t.devices.clear();
        });
    }

    /// The nodes setpoints write to.
    pub fn nodes(&self) -> Vec<String> {
        self.with(|t| {
            let mut n: Vec<String> = t.watched.iter().map(|(n, ..)| n.clone()).collect();
            n.sort();
            n.dedup();
            n
        })
    }

    /// How `metric` of `node` (and `device`) was born in the current
    /// session, or why it cannot be written now.
    pub fn lookup(&self, node: &str, device: Option<&str>, metric: &str) -> Result<Born, String> {
        self.with(|t| {
            let metrics = match t.nodes.get(node) {
                None => {
                    return Err(format!(
                        "node \"{node}\" has not been born since the twin connected to the broker (no NBIRTH seen)"
                    ));
                }
                Some(Life::Dead(msg)) => {
                    return Err(format!(
                        "node \"{node}\" is dead ({msg}); writes wait for its next NBIRTH"
                    ));
                }
                Some(Life::Born(m)) => m,
            };
            let (metrics, what) = match device {
                None => (metrics, "NBIRTH"),
                Some(d) => match t.devices.get(&(node.to_string(), d.to_string())) {
                    None => {
                        return Err(format!(
                            "device \"{d}\" of node \"{node}\" has not been born since the node's NBIRTH (no DBIRTH seen)"
                        ));
                    }
                    Some(Life::Dead(msg)) => {
                        return Err(format!(
                            "device \"{d}\" of node \"{node}\" is dead ({msg}); writes wait for its next DBIRTH"
                        ));
                    }
                    Some(Life::Born(m)) => (m, "DBIRTH"),
                },
            };
            metrics.get(metric).copied().ok_or_else(|| {
                format!("metric \"{metric}\" was not born: the last {what} did not declare it")
            })
        })
    }
}

/// The name of a Sparkplug datatype, for messages.
fn type_name(dt: u32) -> String {
    match dt {
        datatype::INT8 => "Int8".into(),
        datatype::INT16 => "Int16".into(),
        datatype::INT32 => "Int32".into(),
        datatype::INT64 => "Int64".into(),
        datatype::UINT8 => "UInt8".into(),
        datatype::UINT16 => "UInt16".into(),
        datatype::UINT32 => "UInt32".into(),
        datatype::UINT64 => "UInt64".into(),
        datatype::FLOAT => "Float".into(),
        datatype::DOUBLE => "Double".into(),
        datatype::BOOLEAN => "Boolean".into(),
        datatype::STRING => "String".into(),
        datatype::DATETIME => "DateTime".into(),
        datatype::TEXT => "Text".into(),
        other => format!("datatype {other}"),
    }
}

/// `raw` as the value of a metric born as `dt`: integers must be whole and
/// in range (never rounded or saturated: a setpoint written as another
/// value is another setpoint), a Boolean 0 or 1.
fn metric_value(raw: f64, dt: u32) -> Result<MetricValue, String> {
    let int = |lo: f64, hi: f64| -> Result<f64, String> {
        let r = raw.round();
        if (raw - r).abs() > 1e-9 * raw.abs().max(1.0) {
            return Err(format!(
                "{raw} is not a whole number, and the metric is born as {}",
                type_name(dt)
            ));
        }
        if !(lo..=hi).contains(&r) {
            return Err(format!(
                "{raw} is outside the range of {}, {lo}..={hi}",
                type_name(dt)
            ));
        }
        Ok(r)
    };
    if !raw.is_finite() {
        return Err(format!("{raw} is not a finite number"));
    }
    Ok(match dt {
        // Signed integers travel as two's complement in the unsigned field.
        datatype::INT8 => MetricValue::Int(int(-128.0, 127.0)? as i32 as u32),
        datatype::INT16 => MetricValue::Int(int(-32768.0, 32767.0)? as i32 as u32),
        datatype::INT32 => {
            MetricValue::Int(int(f64::from(i32::MIN), f64::from(i32::MAX))? as i32 as u32)
        }
        datatype::UINT8 => MetricValue::Int(int(0.0, 255.0)? as u32),
        datatype::UINT16 => MetricValue::Int(int(0.0, 65535.0)? as u32),
        datatype::UINT32 => MetricValue::Int(int(0.0, f64::from(u32::MAX))? as u32),
        // 2^63 and 2^64 are the first values that do not fit.
        datatype::INT64 => {
            let v = int(-9_223_372_036_854_775_808.0, 9_223_372_036_854_775_807.0)?;
            if v >= 9_223_372_036_854_775_808.0 {
                return Err(format!("{raw} is outside the range of Int64"));
            }
            MetricValue::Long(v as i64 as u64)
        }
        datatype::UINT64 => {
            let v = int(0.0, 18_446_744_073_709_551_615.0)?;
            if v >= 18_446_744_073_709_551_616.0 {
                return Err(format!("{raw} is outside the range of UInt64"));
            }
            MetricValue::Long(v as u64)
        }
        datatype::FLOAT => {
            if raw.abs() > f64::from(f32::MAX) {
                return Err(format!("{raw} is outside the range of Float"));
            }
            MetricValue::Float(raw as f32)
        }
        datatype::DOUBLE => MetricValue::Double(raw),
        datatype::BOOLEAN => match raw {
            0.0 => MetricValue::Boolean(false),
            1.0 => MetricValue::Boolean(true),
            _ => {
                return Err(format!(
                    "{raw} is not 0 or 1, and the metric is born as Boolean"
                ));
            }
        },
        other => {
            return Err(format!(
                "the metric is born as {}, which a numeric setpoint cannot be written as",
                type_name(other)
            ));
        }
    })
}

/// The NCMD/DCMD payload that writes `raw` (in the metric's units) to the
/// metric born as `born`: by alias if it was born with one, by name
/// otherwise, with the born datatype; stamped `t_ms`.
pub fn command_payload(metric: &str, born: Born, raw: f64, t_ms: u64) -> Result<Vec<u8>, String> {
    let value = metric_value(raw, born.datatype)?;
    Ok(Payload {
        timestamp: Some(t_ms),
        metrics: vec![Metric {
            name: born.alias.is_none().then(|| metric.to_string()),
            alias: born.alias,
            timestamp: Some(t_ms),
            datatype: Some(born.datatype),
            is_historical: None,
            is_transient: None,
            is_null: None,
            value: Some(value),
        }],
        seq: None,
        uuid: None,
        body: None,
    }
    .encode_to_vec())
}

/// The command topic for a node's metric (NCMD) or a device's (DCMD).
pub fn command_topic(group: &str, node: &str, device: Option<&str>) -> String {
    match device {
        None => format!("spBv1.0/{group}/NCMD/{node}"),
        Some(d) => format!("spBv1.0/{group}/DCMD/{node}/{d}"),
    }
}

/// The setpoint writer of one Sparkplug source.
#[derive(Clone)]
pub struct SparkplugWriter {
    group: String,
    births: Births,
    link: CommandLink,
    /// (scale, offset) of each metric the config reads, to undo on write.
    scales: HashMap<Key, (f64, f64)>,
}

impl SparkplugWriter {
    /// The writer of Sparkplug source `source`, publishing through `link`,
    /// with the births its subscriber reports into `births`.
    pub fn new(
        cfg: &LoadedConfig,
        source: usize,
        births: Births,
        link: CommandLink,
    ) -> SparkplugWriter {
        let src = &cfg.config.sparkplug[source];
        SparkplugWriter {
            group: src.group.value.clone(),
            births,
            link,
            scales: src
                .metrics
                .iter()
                .map(|m| {
                    (
                        (
                            m.node.value.clone(),
                            m.device.as_ref().map(|d| d.value.clone()),
                            m.metric.value.clone(),
                        ),
                        (m.scale, m.offset),
                    )
                })
                .collect(),
        }
    }

    /// The command connection.
    pub fn link(&self) -> &CommandLink {
        &self.link
    }

    /// The topic and payload that write `value` (engineering units) to
    /// `metric`, decided at `t_ns`; or why it cannot be written now (not
    /// born, dead, not encodable as the born datatype).
    pub fn prepare(
        &self,
        node: &str,
        device: Option<&str>,
        metric: &str,
        value: f64,
        t_ns: i64,
    ) -> Result<(String, Vec<u8>), String> {
        let born = self.births.lookup(node, device, metric)?;
        let key = (
            node.to_string(),
            device.map(str::to_string),
            metric.to_string(),
        );
        let raw = match self.scales.get(&key) {
            Some(&(scale, offset)) if born.datatype != datatype::BOOLEAN => {
                crate::sources::modbus::writer::unscale(value, scale, offset)
            }
            _ => value,
        };
        let t_ms = u64::try_from(t_ns.div_euclid(1_000_000)).unwrap_or(0);
        let payload = command_payload(metric, born, raw, t_ms)
            .map_err(|e| format!("metric \"{metric}\": {e}"))?;
        Ok((command_topic(&self.group, node, device), payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(name: &str, alias: Option<u64>, dt: u32) -> Metric {
        Metric {
            name: Some(name.into()),
            alias,
            timestamp: None,
            datatype: Some(dt),
            is_historical: None,
            is_transient: None,
            is_null: None,
            value: None,
        }
    }

    fn births() -> Births {
        Births::new([
            ("n1".to_string(), None, "Speed SP".to_string()),
            (
                "n1".to_string(),
                Some("d1".to_string()),
                "Temp SP".to_string(),
            ),
        ])
    }

    #[test]
    fn only_metrics_born_in_the_current_session_can_be_written() {
        let b = births();
        let e = b.lookup("n1", None, "Speed SP").expect_err("not born yet");
        assert!(e.contains("has not been born"), "{e}");
        b.born(
            "n1",
            None,
            &[m("Speed SP", Some(4), datatype::FLOAT), m("Other", None, 9)],
        );
        assert_eq!(
            b.lookup("n1", None, "Speed SP"),
            Ok(Born {
                datatype: datatype::FLOAT,
                alias: Some(4)
            })
        );
        let e = b
            .lookup("n1", Some("d1"), "Temp SP")
            .expect_err("no DBIRTH");
        assert!(e.contains("no DBIRTH"), "{e}");
        b.born("n1", Some("d1"), &[m("Temp SP", None, datatype::INT16)]);
        assert!(b.lookup("n1", Some("d1"), "Temp SP").is_ok());
        // DDEATH ends the device only.
        b.died("n1", Some("d1"));
        let e = b.lookup("n1", Some("d1"), "Temp SP").expect_err("dead");
        assert!(e.contains("DDEATH"), "{e}");
        assert!(b.lookup("n1", None, "Speed SP").is_ok());
        // A new NBIRTH without the metric: not born in this session.
        b.born("n1", None, &[m("Other", None, 9)]);
        let e = b.lookup("n1", None, "Speed SP").expect_err("dropped");
        assert!(e.contains("did not declare"), "{e}");
        // NDEATH ends the node and its devices.
        b.born("n1", None, &[m("Speed SP", None, datatype::DOUBLE)]);
        b.born("n1", Some("d1"), &[m("Temp SP", None, datatype::INT16)]);
        b.died("n1", None);
        let e = b.lookup("n1", None, "Speed SP").expect_err("dead");
        assert!(e.contains("NDEATH"), "{e}");
        let e = b.lookup("n1", Some("d1"), "Temp SP").expect_err("dead");
        assert!(e.contains("NDEATH"), "{e}");
        // Nodes nobody writes to are not kept.
        b.born("ghost", None, &[m("Speed SP", None, 9)]);
        assert!(b.with(|t| !t.nodes.contains_key("ghost")));
        b.born("n1", None, &[m("Speed SP", None, datatype::DOUBLE)]);
        b.forget();
        assert!(b.lookup("n1", None, "Speed SP").is_err());
    }

    #[test]
    fn commands_use_the_born_alias_and_datatype() {
        let p = command_payload(
            "Temp SP",
            Born {
                datatype: datatype::INT16,
                alias: Some(7),
            },
            -12.0,
            1_000,
        )
        .expect("encodable");
        let p = Payload::decode(p.as_slice()).expect("decodes");
        let x = &p.metrics[0];
        assert_eq!((x.name.as_deref(), x.alias), (None, Some(7)));
        assert_eq!(x.datatype, Some(datatype::INT16));
        assert_eq!(x.value, Some(MetricValue::Int((-12i32) as u32)));
        assert_eq!(p.timestamp, Some(1_000));
        let named = Born {
            datatype: datatype::DOUBLE,
            alias: None,
        };
        let p = Payload::decode(
            command_payload("Speed SP", named, 2.5, 1)
                .expect("ok")
                .as_slice(),
        )
        .expect("decodes");
        assert_eq!(p.metrics[0].name.as_deref(), Some("Speed SP"));
        assert_eq!(p.metrics[0].value, Some(MetricValue::Double(2.5)));
        for (dt, v) in [
            (datatype::INT16, 2.5),
            (datatype::UINT8, 256.0),
            (datatype::UINT16, -1.0),
            (datatype::BOOLEAN, 0.5),
            (datatype::STRING, 1.0),
            (datatype::FLOAT, 1e300),
        ] {
            let b = Born {
                datatype: dt,
                alias: None,
            };
            assert!(command_payload("x", b, v, 0).is_err(), "{dt} {v}");
        }
        assert_eq!(command_topic("G", "n1", Some("d1")), "spBv1.0/G/DCMD/n1/d1");
        assert_eq!(command_topic("G", "n1", None), "spBv1.0/G/NCMD/n1");
    }
}
