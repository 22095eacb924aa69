//! The virtual plant (`twin sim`): what the twin talks to when there is no
//! real line at hand.
//!
//! It serves each Modbus device's register map from a real Modbus TCP server
//! and publishes each MQTT topic to a real broker (the embedded one, or an
//! external one). Signals come from simple process models ([`signals`]). What
//! it served is optionally written to a truth log, so tests and training can
//! compare the twin's view with the plant's.

pub mod modbus_server;
pub mod signals;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{Broker, DataType, LoadedConfig, Payload, Register, TagSource};
use crate::endpoints::Endpoints;
use crate::sources::modbus::codec;
use crate::twin::events::rfc3339;
use crate::wallclock;
use modbus_server::Images;
use signals::{Model, Rng};

#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Device name (or `*`) → port to serve it on; 0 picks a free port.
    pub modbus_ports: BTreeMap<String, u16>,
    /// Port of the embedded broker; 0 picks a free port. Default: the config's.
    pub mqtt_port: Option<u16>,
    /// MQTT source name → external broker URL to publish to instead.
    pub mqtt_urls: BTreeMap<String, String>,
    /// Signal update period.
    pub update: Duration,
    /// MQTT publish period.
    pub publish: Duration,
    pub seed: u64,
    /// Write what was served, as JSONL, here.
    pub truth: Option<std::path::PathBuf>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            modbus_ports: BTreeMap::new(),
            mqtt_port: None,
            mqtt_urls: BTreeMap::new(),
            update: Duration::from_millis(100),
            publish: Duration::from_secs(1),
            seed: 1,
            truth: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "cannot serve Modbus device \"{device}\" on {addr}: {source}; pick another port with --modbus-port {device}=PORT (0 = any free port)"
    )]
    Bind {
        device: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("device \"{0}\" has address \"{1}\" without a valid port")]
    Address(String, String),
    #[error("--modbus-port names unknown device \"{0}\"; known: {1}")]
    UnknownDevice(String, String),
    #[error("--mqtt names unknown MQTT source \"{0}\"; known: {1}")]
    UnknownMqtt(String, String),
    #[error("invalid MQTT URL \"{0}\": expected mqtt://host:port")]
    BadUrl(String),
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error("cannot write the truth log {path}: {source}")]
    Truth {
        path: String,
        source: std::io::Error,
    },
}

/// A running virtual plant.
pub struct SimHandle {
    /// Where its devices and brokers actually listen.
    pub endpoints: Endpoints,
    pub task: tokio::task::JoinHandle<()>,
}

struct SimTag {
    name: String,
    model: Model,
    /// Shared load of the tag's machine (its speed relative to nominal).
    machine: Option<String>,
    is_speed: bool,
    target: Target,
    /// Latest engineering value of a speed signal (drives its machine's load).
    last: Option<f64>,
    /// Last value served, to log the truth only on change.
    served_last: Option<serde_json::Value>,
}

enum Target {
    Register {
        unit: u8,
        images: Images,
        reg: Box<Register>,
    },
    Mqtt {
        source: usize,
        topic: String,
        payload: Payload,
        scale: f64,
        offset: f64,
    },
}

/// Start the virtual plant. Returns once every server listens.
pub async fn start(
    cfg: &LoadedConfig,
    opts: SimOptions,
    shutdown: CancellationToken,
) -> Result<SimHandle, SimError> {
    let c = &cfg.config;
    let device_names: Vec<&str> = c.modbus.iter().map(|d| d.name.value.as_str()).collect();
    for name in opts.modbus_ports.keys() {
        if name != "*" && !device_names.contains(&name.as_str()) {
            return Err(SimError::UnknownDevice(
                name.clone(),
                device_names.join(", "),
            ));
        }
    }
    let mqtt_names: Vec<&str> = c.mqtt.iter().map(|m| m.name.value.as_str()).collect();
    for name in opts.mqtt_urls.keys() {
        if !mqtt_names.contains(&name.as_str()) {
            return Err(SimError::UnknownMqtt(name.clone(), mqtt_names.join(", ")));
        }
    }

    // Devices sharing a configured endpoint share a listener (a gateway).
    let mut endpoints = Endpoints::default();
    let mut groups: BTreeMap<String, (Images, Vec<usize>)> = BTreeMap::new();
    for (i, d) in c.modbus.iter().enumerate() {
        let g = groups
            .entry(d.address.value.clone())
            .or_insert_with(|| (Arc::new(RwLock::new(HashMap::new())), Vec::new()));
        g.1.push(i);
        let mut images = g.0.write().unwrap_or_else(|p| p.into_inner());
        let img = images.entry(d.unit_id).or_default();
        for r in &d.registers {
            if r.table.is_bits() {
                img.bits.insert((r.table, r.address.value), false);
            } else {
                for k in 0..r.width() {
                    img.words.insert((r.table, r.address.value + k), 0);
                }
            }
        }
    }
    let mut device_images: HashMap<usize, Images> = HashMap::new();
    for (address, (images, devices)) in &groups {
        let configured_port = address
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .ok_or_else(|| {
                SimError::Address(c.modbus[devices[0]].name.value.clone(), address.clone())
            })?;
        let port = devices
            .iter()
            .find_map(|&i| opts.modbus_ports.get(&c.modbus[i].name.value))
            .or_else(|| opts.modbus_ports.get("*"))
            .copied()
            .unwrap_or(configured_port);
        // The virtual plant only ever listens on loopback.
        let bind = SocketAddr::from(([127, 0, 0, 1], port));
        let local = modbus_server::serve(bind, images.clone(), shutdown.clone())
            .await
            .map_err(|source| SimError::Bind {
                device: c.modbus[devices[0]].name.value.clone(),
                addr: bind,
                source,
            })?;
        for &i in devices {
            let d = &c.modbus[i];
            info!(device = %d.name.value, unit = d.unit_id, address = %local, "Virtual Modbus device serving.");
            endpoints
                .modbus
                .insert(d.name.value.clone(), local.to_string());
            device_images.insert(i, images.clone());
        }
    }

    // Brokers: an external URL if given, else the configured one; an embedded
    // broker is started once per listen address.
    let mut started: HashMap<SocketAddr, SocketAddr> = HashMap::new();
    let mut clients: Vec<AsyncClient> = Vec::new();
    for (i, m) in c.mqtt.iter().enumerate() {
        let (host, port) = if let Some(url) = opts.mqtt_urls.get(&m.name.value) {
            crate::sources::mqtt::parse_url(url).ok_or_else(|| SimError::BadUrl(url.clone()))?
        } else {
            match &m.broker.value {
                Broker::Tcp { host, port } => {
                    if m.tls {
                        warn!(source = %m.name.value,
                            "The virtual plant publishes over plain MQTT only; point it at a plain listener with --mqtt SOURCE=mqtt://HOST:PORT.");
                    }
                    (host.clone(), *port)
                }
                Broker::Embedded { listen } => {
                    let listen =
                        SocketAddr::new(listen.ip(), opts.mqtt_port.unwrap_or(listen.port()));
                    let addr = match started.get(&listen) {
                        Some(a) => *a,
                        None => {
                            let a = crate::broker::start_embedded(listen)?;
                            started.insert(listen, a);
                            a
                        }
                    };
                    (addr.ip().to_string(), addr.port())
                }
            }
        };
        let url = format!("mqtt://{host}:{port}");
        info!(source = %m.name.value, broker = %url, "Virtual plant publishing MQTT.");
        endpoints.mqtt.insert(m.name.value.clone(), url);
        let mut o = MqttOptions::new(format!("twin-sim-{}-{}", m.name.value, i), host, port);
        o.set_keep_alive(Duration::from_secs(5));
        let (client, mut el) = AsyncClient::new(o, 1024);
        let stop = shutdown.clone();
        let name = m.name.value.clone();
        tokio::spawn(async move {
            let mut down = false;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    ev = el.poll() => match ev {
                        Ok(_) => down = false,
                        Err(e) => {
                            if !down {
                                warn!(source = %name, error = %e, "Virtual plant lost its MQTT broker; retrying.");
                            }
                            down = true;
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            }
        });
        clients.push(client);
    }

    let mut tags: Vec<SimTag> = Vec::new();
    for def in cfg.tags.iter() {
        let role = def
            .role
            .clone()
            .unwrap_or_else(|| def.name.rsplit('.').next().unwrap_or(&def.name).to_string());
        let model = Model::pick(&role, def.unit.as_deref().unwrap_or(""), def.is_bool);
        let is_speed = matches!(model, Model::Speed { .. });
        let target = match def.source {
            TagSource::Modbus { device, register } => {
                let d = &c.modbus[device];
                let r = &d.registers[register];
                let Some(images) = device_images.get(&device).cloned() else {
                    continue;
                };
                Target::Register {
                    unit: d.unit_id,
                    images,
                    reg: Box::new(r.clone()),
                }
            }
            TagSource::Mqtt { source, topic } => {
                let t = &c.mqtt[source].topics[topic];
                Target::Mqtt {
                    source,
                    // A concrete topic the entry's pattern matches.
                    topic: t.pattern.instance(def.machine.as_deref(), "sim"),
                    payload: t.payload.clone(),
                    scale: t.scale,
                    offset: t.offset,
                }
            }
            // The virtual plant has no Sparkplug edge node yet; the interop
            // tests use a real one (pysparkplug).
            TagSource::Sparkplug { .. } => continue,
        };
        tags.push(SimTag {
            name: def.name.clone(),
            model,
            machine: def.machine.clone(),
            is_speed,
            target,
            last: None,
            served_last: None,
        });
    }

    let mut truth = match &opts.truth {
        Some(p) => Some(std::io::BufWriter::new(std::fs::File::create(p).map_err(
            |source| SimError::Truth {
                path: p.display().to_string(),
                source,
            },
        )?)),
        None => None,
    };

    let task = tokio::spawn(async move {
        let mut rng = Rng::new(opts.seed);
        let t0 = wallclock::monotonic();
        let dt = opts.update.as_secs_f64();
        let mut tick = tokio::time::interval(opts.update);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_publish: Option<std::time::Instant> = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let t = wallclock::since(t0).as_secs_f64();
            let now_ns = wallclock::now_ns();
            // Each machine's load follows its speed signal (1.0 at nominal).
            let mut load: HashMap<String, f64> = HashMap::new();
            for tag in tags.iter_mut().filter(|t| t.is_speed) {
                let v = tag.model.step(t, dt, 1.0, &mut rng);
                if let (Some(m), Model::Speed { nominal }) = (&tag.machine, &tag.model) {
                    load.insert(m.clone(), (v / nominal).clamp(0.0, 1.5));
                }
                tag.last = Some(v);
            }
            let publish_now = last_publish.is_none_or(|p| wallclock::since(p) >= opts.publish);
            let mut mqtt_out: BTreeMap<(usize, String), Vec<(Payload, f64)>> = BTreeMap::new();
            for tag in tags.iter_mut() {
                let l = tag
                    .machine
                    .as_ref()
                    .and_then(|m| load.get(m))
                    .copied()
                    .unwrap_or(1.0);
                let eng = if tag.is_speed {
                    tag.last.unwrap_or(0.0)
                } else {
                    tag.model.step(t, dt, l, &mut rng)
                };
                let served = match &tag.target {
                    Target::Register { unit, images, reg } => {
                        Some(serve_register(images, *unit, reg, eng, t))
                    }
                    Target::Mqtt {
                        source,
                        topic,
                        payload,
                        scale,
                        offset,
                    } => {
                        if publish_now {
                            // Three decimals on the wire, as a field sensor would send.
                            let raw = (((eng - offset) / scale) * 1000.0).round() / 1000.0;
                            mqtt_out
                                .entry((*source, topic.clone()))
                                .or_default()
                                .push((payload.clone(), raw));
                            Some(json!(crate::sources::apply_scale(raw, *scale, *offset)))
                        } else {
                            None
                        }
                    }
                };
                if let Some(v) = served
                    && tag.served_last.as_ref() != Some(&v)
                {
                    tag.served_last = Some(v.clone());
                    if let Some(w) = truth.as_mut() {
                        let line = json!({"t": rfc3339(now_ns), "tag": tag.name, "value": v});
                        let _ = writeln!(w, "{line}");
                    }
                }
            }
            if let Some(w) = truth.as_mut() {
                let _ = w.flush();
            }
            if publish_now {
                last_publish = Some(wallclock::monotonic());
                for ((source, topic), values) in mqtt_out {
                    let body = encode_payload(&values, now_ns);
                    if let Some(client) = clients.get(source)
                        && let Err(e) =
                            client.try_publish(topic.clone(), QoS::AtLeastOnce, false, body)
                    {
                        debug!(topic = %topic, error = %e, "Virtual plant could not queue an MQTT publish.");
                    }
                }
            }
        }
    });

    Ok(SimHandle { endpoints, task })
}

/// Write a tag's engineering value into the register image, the way the
/// device's PLC program would, and return what a client will decode from it
/// (after quantisation), as JSON for the truth log.
fn serve_register(
    images: &Images,
    unit: u8,
    reg: &Register,
    eng: f64,
    t: f64,
) -> serde_json::Value {
    let Ok(mut imgs) = images.write() else {
        return serde_json::Value::Null;
    };
    let Some(img) = imgs.get_mut(&unit) else {
        return serde_json::Value::Null;
    };
    let at = |k: u16| reg.address.value.wrapping_add(k);
    if reg.table.is_bits() {
        img.bits.insert((reg.table, reg.address.value), eng != 0.0);
        return json!(eng != 0.0);
    }
    match (reg.data_type, reg.bit) {
        (DataType::String, _) => {
            // A batch code that changes every minute.
            let text = format!("LOT-{:05}", 1 + (t / 60.0) as u32);
            let words = codec::encode_string(reg.order, &text, reg.length);
            for (k, w) in words.iter().enumerate() {
                img.words.insert((reg.table, at(k as u16)), *w);
            }
            json!(codec::decode_string(reg.order, &words))
        }
        (DataType::Bool, Some(bit)) => {
            // Read-modify-write: other bits of the word belong to other tags.
            let key = (reg.table, reg.address.value);
            let word = img.words.get(&key).copied().unwrap_or(0);
            let value = if reg.order.swaps_bytes() {
                word.swap_bytes()
            } else {
                word
            };
            let value = if eng != 0.0 {
                value | 1 << bit
            } else {
                value & !(1 << bit)
            };
            let word = if reg.order.swaps_bytes() {
                value.swap_bytes()
            } else {
                value
            };
            img.words.insert(key, word);
            json!(eng != 0.0)
        }
        (DataType::Bool, None) => {
            img.words
                .insert((reg.table, reg.address.value), u16::from(eng != 0.0));
            json!(eng != 0.0)
        }
        (ty, _) => {
            let raw = (eng - reg.offset) / reg.scale;
            let words = codec::encode_words(ty, reg.order, raw);
            let back = codec::decode_words(ty, reg.order, &words).unwrap_or(raw);
            for (k, w) in words.iter().enumerate() {
                img.words.insert((reg.table, at(k as u16)), *w);
            }
            json!(crate::sources::apply_scale(back, reg.scale, reg.offset))
        }
    }
}

/// One topic's payload: a bare number, or a JSON document holding every
/// field mapped to that topic (with its timestamp where the entry reads
/// one; a `json_samples` entry gets a one-sample array).
fn encode_payload(values: &[(Payload, f64)], now_ns: i64) -> Vec<u8> {
    if let [(Payload::Number, v)] = values {
        return v.to_string().into_bytes();
    }
    let mut root = serde_json::Value::Object(Default::default());
    let mut samples: BTreeMap<Vec<String>, serde_json::Value> = BTreeMap::new();
    for (p, v) in values {
        match p {
            Payload::Number => {}
            Payload::Json { field, time } => {
                set_path(&mut root, field, json!(v));
                if let Some(t) = time {
                    set_path(&mut root, &t.path, encode_time(t.unit, now_ns));
                }
            }
            Payload::JsonSamples { array, field, time } => {
                let element = samples
                    .entry(array.clone())
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                set_path(element, field, json!(v));
                set_path(element, &time.path, encode_time(time.unit, now_ns));
            }
        }
    }
    for (array, element) in samples {
        if array.is_empty() {
            root = json!([element]);
        } else {
            set_path(&mut root, &array, json!([element]));
        }
    }
    root.to_string().into_bytes()
}

fn encode_time(unit: crate::config::TimeUnit, ns: i64) -> serde_json::Value {
    use crate::config::TimeUnit;
    match unit {
        TimeUnit::Seconds => json!((ns / 1_000_000) as f64 / 1000.0),
        TimeUnit::Millis => json!(ns / 1_000_000),
        TimeUnit::Micros => json!(ns / 1_000),
        TimeUnit::Nanos => json!(ns),
        TimeUnit::Rfc3339 => json!(rfc3339(ns)),
    }
}

/// Put `v` at a dot path, creating objects on the way.
fn set_path(root: &mut serde_json::Value, path: &[String], v: serde_json::Value) {
    let mut cur = root;
    for seg in path {
        if !cur.is_object() {
            *cur = serde_json::Value::Object(Default::default());
        }
        let serde_json::Value::Object(m) = cur else {
            return;
        };
        cur = m.entry(seg.clone()).or_insert(serde_json::Value::Null);
    }
    *cur = v;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_through_the_decoder() {
        use crate::config::{TimeField, TimeUnit};
        use crate::sources::mqtt::payload::decode;
        use crate::twin::Value;
        let one = |spec: &Payload, body: &[u8]| {
            let d = decode(spec, body).expect("decodes");
            assert_eq!(d.readings.len(), 1, "{}", String::from_utf8_lossy(body));
            (d.readings[0].value.clone(), d.readings[0].time_ns)
        };
        let t = 1_732_800_000_123_000_000;
        let a = Payload::Json {
            field: vec!["data".into(), "rms".into()],
            time: None,
        };
        let b = Payload::Json {
            field: vec!["data".into(), "peak".into()],
            time: Some(TimeField {
                path: vec!["ts".into()],
                unit: TimeUnit::Rfc3339,
            }),
        };
        let body = encode_payload(&[(a.clone(), 1.25), (b.clone(), 3.0)], t);
        assert_eq!(one(&a, &body), (Value::Num(1.25), None));
        assert_eq!(one(&b, &body), (Value::Num(3.0), Some(t)));
        let n = encode_payload(&[(Payload::Number, 21.125)], t);
        assert_eq!(one(&Payload::Number, &n), (Value::Num(21.125), None));
        for unit in [TimeUnit::Seconds, TimeUnit::Millis, TimeUnit::Nanos] {
            let s = Payload::JsonSamples {
                array: Vec::new(),
                field: vec!["v".into()],
                time: TimeField {
                    path: vec!["ts".into()],
                    unit,
                },
            };
            let body = encode_payload(&[(s.clone(), 2.5)], t);
            assert_eq!(one(&s, &body), (Value::Num(2.5), Some(t)), "{unit:?}");
        }
    }
}
