//! The virtual plant (`twin sim`): what the twin talks to when there is no
//! real line at hand.
//!
//! It serves each Modbus device's register map from a real Modbus TCP server
//! and publishes each MQTT topic to a real broker (the embedded one, or an
//! external one). Values come from the truth model ([`truth`]): each line's
//! physics (the twin's own `LineModel`) for photo-eyes, counters, belt
//! speeds and motor loads, machine condition for temperatures and
//! vibration, and simple process models ([`signals`]) for the rest. Fault
//! scenarios ([`scenario`]) inject faults on a sim-time schedule; sim time
//! runs `--speed` times wall time. What it served is optionally written to
//! a truth log, with ground-truth fault labels next to it, so tests and
//! training can compare the twin's view with the plant's. [`run_headless`]
//! does the same without servers or a clock, as fast as it goes.

pub mod lockstep;
pub mod modbus_server;
pub mod scenario;
pub mod signals;
pub mod truth;
pub mod writable;
pub mod write_log;
pub use write_log::{WriteLog, WriteRecord};

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
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
use scenario::Scenario;
use truth::{Label, Truth};

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
    pub truth: Option<PathBuf>,
    /// Write the ground-truth fault labels, as JSONL, here.
    pub labels: Option<PathBuf>,
    /// Faults to inject.
    pub scenario: Option<Scenario>,
    /// Sim time runs this many times wall time (≥ 1).
    pub speed: f64,
    /// Stop (cancel the shutdown token) once sim time reaches this.
    pub until: Option<Duration>,
    /// Append every write request a device receives, as JSONL, here.
    pub write_log: Option<PathBuf>,
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
            labels: None,
            scenario: None,
            speed: 1.0,
            until: None,
            write_log: None,
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
    #[error("cannot write {path}: {source}")]
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
    /// Every write request the devices received, with their answers.
    pub writes: Arc<WriteLog>,
}

/// One served tag: where its value goes, and what was last served.
struct SimTag {
    /// Index in the tag table (and in the truth model).
    index: usize,
    name: String,
    target: Target,
    /// Last value served, to log the truth only on change.
    served_last: Option<serde_json::Value>,
}

enum Target {
    Register {
        unit: u8,
        /// The device's register images; `None` in a headless run.
        images: Option<Images>,
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

/// The served tags of a config, in tag-table order (Sparkplug tags are not
/// served: the virtual plant has no edge node).
fn sim_tags(
    cfg: &LoadedConfig,
    device_images: &HashMap<usize, Images>,
    headless: bool,
) -> Vec<SimTag> {
    let c = &cfg.config;
    let mut tags = Vec::new();
    for (index, def) in cfg.tags.iter().enumerate() {
        let target = match def.source {
            TagSource::Modbus { device, register } => {
                let d = &c.modbus[device];
                let images = device_images.get(&device).cloned();
                if images.is_none() && !headless {
                    continue;
                }
                Target::Register {
                    unit: d.unit_id,
                    images,
                    reg: Box::new(d.registers[register].clone()),
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
            // Only recordings provide these; the virtual plant does not
            // invent them.
            TagSource::Recorded { .. } => continue,
        };
        tags.push(SimTag {
            index,
            name: def.name.clone(),
            target,
            served_last: None,
        });
    }
    tags
}

/// Where sim time 0 of a headless run is put on the calendar, so two runs
/// write byte-identical files: 2026-01-01T00:00:00Z.
pub const HEADLESS_EPOCH_NS: i64 = 1_767_225_600_000_000_000;

/// The truth log and the label file, both JSONL (docs/sim.md).
struct Logs {
    truth: Option<std::io::BufWriter<std::fs::File>>,
    labels: Option<std::io::BufWriter<std::fs::File>>,
    /// Wall time that sim time 0 stands for.
    epoch_ns: i64,
}

impl Logs {
    fn open(truth: Option<&Path>, labels: Option<&Path>, epoch_ns: i64) -> Result<Self, SimError> {
        let open = |p: &Path| {
            std::fs::File::create(p)
                .map(std::io::BufWriter::new)
                .map_err(|source| SimError::Truth {
                    path: p.display().to_string(),
                    source,
                })
        };
        Ok(Logs {
            truth: truth.map(open).transpose()?,
            labels: labels.map(open).transpose()?,
            epoch_ns,
        })
    }

    fn value(&mut self, sim: Duration, tag: &str, v: &serde_json::Value) -> std::io::Result<()> {
        if let Some(w) = self.truth.as_mut() {
            let t_ns = self
                .epoch_ns
                .saturating_add(i64::try_from(sim.as_nanos()).unwrap_or(i64::MAX));
            let line =
                json!({"t": rfc3339(t_ns), "sim_t": sim.as_secs_f64(), "tag": tag, "value": v});
            writeln!(w, "{line}")?;
        }
        Ok(())
    }

    fn labels(&mut self, labels: &[Label]) -> std::io::Result<()> {
        for l in labels {
            info!(kind = l.kind, edge = ?l.edge, fault = l.fault, target = %l.target, sim_t = l.t.as_secs_f64(), "Fault scenario event.");
            if let Some(w) = self.labels.as_mut() {
                writeln!(w, "{}", l.to_json(self.epoch_ns))?;
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.truth.as_mut() {
            w.flush()?;
        }
        if let Some(w) = self.labels.as_mut() {
            w.flush()?;
        }
        Ok(())
    }
}

/// What a headless run did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadlessReport {
    /// Sim time run.
    pub sim: Duration,
    /// Truth lines written (value changes).
    pub values: u64,
    /// Labels written.
    pub labels: u64,
}

/// A headless run: no servers, no clock; the truth model is stepped as fast
/// as it goes for `opts.duration` of sim time, and what the servers would
/// have served (after the same register encoding or MQTT rounding, MQTT
/// topics every `publish`) is written to the truth log, with the labels.
/// The training-data source; byte-identical for the same inputs.
pub fn run_headless(
    cfg: &LoadedConfig,
    scenario: Option<&Scenario>,
    opts: &HeadlessOptions,
) -> Result<HeadlessReport, SimError> {
    let mut logs = Logs::open(
        opts.truth.as_deref(),
        opts.labels.as_deref(),
        HEADLESS_EPOCH_NS,
    )?;
    let mut truth = Truth::new(cfg, scenario, opts.seed);
    let mut tags = sim_tags(cfg, &HashMap::new(), true);
    let step = if truth.has_lines() {
        opts.update.min(LINE_UPDATE)
    } else {
        opts.update
    }
    .max(truth::PHYSICS_DT);
    let write_err = |e: std::io::Error| SimError::Truth {
        path: opts
            .truth
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        source: e,
    };
    let mut report = HeadlessReport {
        sim: Duration::ZERO,
        values: 0,
        labels: 0,
    };
    let mut next_publish = Duration::ZERO;
    loop {
        let now = truth.now();
        let labels = truth.drain_labels();
        report.labels += labels.len() as u64;
        logs.labels(&labels).map_err(write_err)?;
        let publish_now = now >= next_publish;
        if publish_now {
            next_publish = now + opts.publish;
        }
        for tag in tags.iter_mut() {
            let Some(eng) = truth.value(tag.index) else {
                continue;
            };
            let served = match &tag.target {
                Target::Register { reg, .. } => encode_register(reg, eng, now.as_secs_f64()).1,
                Target::Mqtt { scale, offset, .. } => {
                    if !publish_now {
                        continue;
                    }
                    json!(crate::sources::apply_scale(
                        mqtt_raw(eng, *scale, *offset),
                        *scale,
                        *offset
                    ))
                }
            };
            if tag.served_last.as_ref() != Some(&served) {
                logs.value(now, &tag.name, &served).map_err(write_err)?;
                report.values += 1;
                tag.served_last = Some(served);
            }
        }
        if now >= opts.duration
            || opts
                .stop
                .as_ref()
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        {
            break;
        }
        truth.advance(step.min(opts.duration - now));
    }
    logs.flush().map_err(write_err)?;
    report.sim = truth.now();
    log_line_summary(&line_names(cfg), &truth, "Headless line summary.");
    Ok(report)
}

/// Each line's id and its conveyors' ids, for [`log_line_summary`].
fn line_names(cfg: &LoadedConfig) -> Vec<(String, Vec<String>)> {
    cfg.config
        .lines
        .iter()
        .map(|l| {
            (
                l.id.value.clone(),
                l.conveyors.iter().map(|c| c.id.value.clone()).collect(),
            )
        })
        .collect()
}

/// The plant's own count of each line at the end of a run: what it took,
/// put out and lost, and each belt's drive energy (the truth a closed-loop
/// comparison is judged by, docs/sim.md).
fn log_line_summary(lines: &[(String, Vec<String>)], truth: &Truth, msg: &'static str) {
    for (l, (id, belts)) in lines.iter().enumerate() {
        let Some(n) = truth.line_counts(l) else {
            continue;
        };
        let energy: Vec<String> = belts
            .iter()
            .enumerate()
            .filter_map(|(k, b)| {
                let kj = truth.belt_energy_j(l, k)? / 1000.0;
                Some(format!("{b}={kj:.1}"))
            })
            .collect();
        info!(
            line = %id,
            sim_s = truth.now().as_secs_f64(),
            spawned = n.spawned,
            out = n.out,
            lost = n.lost,
            infeed_blocked = n.infeed_blocked,
            belt_energy_kj = %energy.join(" "),
            "{msg}"
        );
    }
}

/// Options of [`run_headless`].
#[derive(Debug, Clone)]
pub struct HeadlessOptions {
    /// Sim time to run.
    pub duration: Duration,
    pub seed: u64,
    /// Sim time between samples of the served values.
    pub update: Duration,
    /// Sim time between MQTT publishes.
    pub publish: Duration,
    pub truth: Option<PathBuf>,
    pub labels: Option<PathBuf>,
    /// Set (by SIGINT or SIGTERM) to stop at the next step, the files
    /// flushed as at the end of `duration`.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// How often the register images are refreshed (wall time) when the plant
/// has lines: a 70 mm bottle at 0.6 m/s blocks a beam for about 115 ms, and
/// a 40 ms poll must find it in the image.
pub const LINE_UPDATE: Duration = Duration::from_millis(10);

/// The value an MQTT sensor sends for `eng`: three decimals of the raw
/// value, as a field sensor would.
fn mqtt_raw(eng: f64, scale: f64, offset: f64) -> f64 {
    (((eng - offset) / scale) * 1000.0).round() / 1000.0
}

/// The register images of every Modbus device, by configured address:
/// devices sharing an endpoint share a listener (a gateway) and its images,
/// told apart by unit id. Every mapped address starts at 0 (false).
fn register_images(cfg: &LoadedConfig) -> BTreeMap<String, (Images, Vec<usize>)> {
    let mut groups: BTreeMap<String, (Images, Vec<usize>)> = BTreeMap::new();
    for (i, d) in cfg.config.modbus.iter().enumerate() {
        let g = groups
            .entry(d.address.value.clone())
            .or_insert_with(|| (Arc::new(RwLock::new(HashMap::new())), Vec::new()));
        g.1.push(i);
        let mut images = g.0.write().unwrap_or_else(|p| p.into_inner());
        let img = images.entry(d.unit_id).or_default();
        img.device = d.name.value.clone();
        for w in writable::writable_tags(cfg) {
            let def = cfg.tags.iter().nth(w.tag);
            if let Some(def) = def
                && let TagSource::Modbus { device, register } = def.source
                && device == i
            {
                img.writable.push(modbus_server::WritableReg {
                    tag: w.tag,
                    name: def.name.clone(),
                    reg: d.registers[register].clone(),
                    accept: w.accept,
                });
            }
        }
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
    groups
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

    let write_log = Arc::new(match &opts.write_log {
        Some(p) => WriteLog::to_file(p).map_err(|source| SimError::Truth {
            path: p.display().to_string(),
            source,
        })?,
        None => WriteLog::default(),
    });
    let mut endpoints = Endpoints::default();
    let groups = register_images(cfg);
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
        let local = modbus_server::serve(bind, images.clone(), write_log.clone(), shutdown.clone())
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
    // By source index; `None` for a source the virtual plant does not serve.
    let mut clients: Vec<Option<AsyncClient>> = Vec::new();
    for (i, m) in c.mqtt.iter().enumerate() {
        let (host, port) = if let Some(url) = opts.mqtt_urls.get(&m.name.value) {
            crate::sources::mqtt::parse_url(url).ok_or_else(|| SimError::BadUrl(url.clone()))?
        } else {
            match &m.connection.broker.value {
                Broker::Tcp { .. } if m.connection.tls => {
                    // It used to publish in plain text to the TLS broker's
                    // address and write that plain URL to the endpoints, so
                    // `twin run --endpoints` (and `twin demo`) sent the
                    // source's username and password unencrypted to the
                    // configured broker. Not served, the twin keeps the
                    // configured TLS connection.
                    warn!(source = %m.name.value,
                        "The virtual plant publishes over plain MQTT only, so it does not serve this TLS source; the twin connects to its configured broker. To simulate it, point it at a plain listener with --mqtt SOURCE=mqtt://HOST:PORT.");
                    clients.push(None);
                    continue;
                }
                Broker::Tcp { host, port } => (host.clone(), *port),
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
        clients.push(Some(client));
    }

    let mut tags = sim_tags(cfg, &device_images, false);
    // Per Modbus device: its unit id and images, to mark it offline.
    let devices: Vec<(usize, u8, Images)> = device_images
        .iter()
        .map(|(&i, img)| (i, c.modbus[i].unit_id, img.clone()))
        .collect();
    let mut truth = Truth::new(cfg, opts.scenario.as_ref(), opts.seed);
    // Fill the images before anyone learns the ports (they are printed
    // once this returns): a client that connects at once reads the
    // plant's values at sim time 0, not zeros, and a device's write
    // faults hold from its first request. The truth log is written by
    // the loop, as before.
    for tag in &tags {
        if let Target::Register {
            unit,
            images: Some(images),
            reg,
        } = &tag.target
            && let Some(eng) = truth.value(tag.index)
        {
            serve_register(images, *unit, tag.index, reg, eng, 0.0);
        }
    }
    for (d, unit, images) in &devices {
        if let Ok(mut imgs) = images.write()
            && let Some(img) = imgs.get_mut(unit)
        {
            img.offline = truth.device_offline(*d);
            img.write_fault = truth.write_fault(*d);
        }
    }
    let start_ns = wallclock::now_ns();
    let mut logs = Logs::open(opts.truth.as_deref(), opts.labels.as_deref(), start_ns)?;
    let update = if truth.has_lines() {
        opts.update.min(LINE_UPDATE)
    } else {
        opts.update
    };
    let speed = if opts.speed.is_finite() && opts.speed >= 1.0 {
        opts.speed
    } else {
        1.0
    };

    let writes = write_log.clone();
    let names = line_names(cfg);
    let task = tokio::spawn(async move {
        let t0 = wallclock::monotonic();
        let mut tick = tokio::time::interval(update);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_publish: Option<std::time::Instant> = None;
        let mut log_ok = true;
        let mut behind_warned = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            // Sim time runs `speed` times wall time. A stalled process
            // catches up, but by at most 2 s of sim time per update, so a
            // plant too big for the speed asked runs slower rather than
            // spiralling.
            let want = wallclock::since(t0).mul_f64(speed);
            let behind = want.saturating_sub(truth.now());
            let cap = Duration::from_secs(2).max(update.mul_f64(speed * 2.0));
            if behind > cap && !behind_warned {
                warn!(
                    speed,
                    behind_s = behind.as_secs_f64(),
                    "The virtual plant cannot keep up with --speed; sim time runs slower."
                );
                behind_warned = true;
            }
            let step = match opts.until {
                Some(u) => behind.min(cap).min(u.saturating_sub(truth.now())),
                None => behind.min(cap),
            };
            // Accepted writes reach the plant at the start of the next
            // update, as a PLC scan picks up a new reference.
            for (_, unit, images) in &devices {
                let pending = match images.write() {
                    Ok(mut imgs) => imgs
                        .get_mut(unit)
                        .map(|img| std::mem::take(&mut img.pending))
                        .unwrap_or_default(),
                    Err(_) => Vec::new(),
                };
                for (tag, value) in pending {
                    truth.apply_setpoint(tag, value);
                }
            }
            truth.advance(step);
            let now = truth.now();
            write_log.set_sim(u64::try_from(now.as_nanos()).unwrap_or(u64::MAX));
            let t = now.as_secs_f64();
            let now_ns = wallclock::now_ns();
            for (d, unit, images) in &devices {
                let offline = truth.device_offline(*d);
                let write_fault = truth.write_fault(*d);
                if let Ok(mut imgs) = images.write()
                    && let Some(img) = imgs.get_mut(unit)
                {
                    img.offline = offline;
                    img.write_fault = write_fault;
                }
            }
            let labels = truth.drain_labels();
            let publish_now = last_publish.is_none_or(|p| wallclock::since(p) >= opts.publish);
            let mut mqtt_out: BTreeMap<(usize, String), Vec<(Payload, f64)>> = BTreeMap::new();
            let mut errors = logs.labels(&labels).err();
            for tag in tags.iter_mut() {
                // `None`: its device is disconnected; the image keeps the
                // last values and the server does not answer.
                let Some(eng) = truth.value(tag.index) else {
                    continue;
                };
                let served = match &tag.target {
                    Target::Register {
                        unit, images, reg, ..
                    } => images
                        .as_ref()
                        .and_then(|images| serve_register(images, *unit, tag.index, reg, eng, t)),
                    Target::Mqtt {
                        source,
                        topic,
                        payload,
                        scale,
                        offset,
                    } => {
                        if publish_now {
                            let raw = mqtt_raw(eng, *scale, *offset);
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
                    if let Err(e) = logs.value(now, &tag.name, &v) {
                        errors = Some(e);
                    }
                    tag.served_last = Some(v);
                }
            }
            if let Err(e) = logs.flush() {
                errors = Some(e);
            }
            if let Some(e) = errors
                && log_ok
            {
                warn!(error = %e, "Cannot write the truth log or labels; values are still served.");
                log_ok = false;
            }
            if publish_now {
                last_publish = Some(wallclock::monotonic());
                for ((source, topic), values) in mqtt_out {
                    let body = encode_payload(&values, now_ns);
                    if let Some(Some(client)) = clients.get(source)
                        && let Err(e) =
                            client.try_publish(topic.clone(), QoS::AtLeastOnce, false, body)
                    {
                        debug!(topic = %topic, error = %e, "Virtual plant could not queue an MQTT publish.");
                    }
                }
            }
            if opts.until.is_some_and(|u| now >= u) {
                info!(
                    sim_s = now.as_secs_f64(),
                    "Virtual plant reached the end of its run."
                );
                shutdown.cancel();
                break;
            }
        }
        log_line_summary(&names, &truth, "Virtual plant line summary.");
    });

    Ok(SimHandle {
        endpoints,
        task,
        writes,
    })
}

/// How a register holds a value: the bits or words to write, and what a
/// client decodes from them (after quantisation), as JSON for the truth log.
enum Encoded {
    Bit(bool),
    /// A bit of a word: read-modify-write, the word's other bits belong to
    /// other tags.
    WordBit(u8, bool),
    Words(Vec<u16>),
}

fn encode_register(reg: &Register, eng: f64, t: f64) -> (Encoded, serde_json::Value) {
    if reg.table.is_bits() {
        return (Encoded::Bit(eng != 0.0), json!(eng != 0.0));
    }
    match (reg.data_type, reg.bit) {
        (DataType::String, _) => {
            // A batch code that changes every minute.
            let text = format!("LOT-{:05}", 1 + (t / 60.0) as u32);
            let words = codec::encode_string(reg.order, &text, reg.length);
            let v = json!(codec::decode_string(reg.order, &words));
            (Encoded::Words(words), v)
        }
        (DataType::Bool, Some(bit)) => (Encoded::WordBit(bit, eng != 0.0), json!(eng != 0.0)),
        (DataType::Bool, None) => (
            Encoded::Words(vec![u16::from(eng != 0.0)]),
            json!(eng != 0.0),
        ),
        (ty, _) => {
            let raw = (eng - reg.offset) / reg.scale;
            let words = codec::encode_words(ty, reg.order, raw);
            let back = codec::decode_words(ty, reg.order, &words).unwrap_or(raw);
            let v = json!(crate::sources::apply_scale(back, reg.scale, reg.offset));
            (Encoded::Words(words), v)
        }
    }
}

/// Write a tag's engineering value into the register image, the way the
/// device's PLC program would, and return what a client will decode from it
/// (after quantisation), as JSON for the truth log. `None`: a write to it
/// is waiting for the truth model, and the register keeps what was written
/// until then.
fn serve_register(
    images: &Images,
    unit: u8,
    tag: usize,
    reg: &Register,
    eng: f64,
    t: f64,
) -> Option<serde_json::Value> {
    let Ok(mut imgs) = images.write() else {
        return Some(serde_json::Value::Null);
    };
    let Some(img) = imgs.get_mut(&unit) else {
        return Some(serde_json::Value::Null);
    };
    if img.pending.iter().any(|(t, _)| *t == tag) {
        return None;
    }
    let (encoded, v) = encode_register(reg, eng, t);
    let key = (reg.table, reg.address.value);
    match encoded {
        Encoded::Bit(b) => {
            img.bits.insert(key, b);
        }
        Encoded::WordBit(bit, on) => {
            let word = img.words.get(&key).copied().unwrap_or(0);
            let value = if reg.order.swaps_bytes() {
                word.swap_bytes()
            } else {
                word
            };
            let value = if on {
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
        }
        Encoded::Words(words) => {
            for (k, w) in words.iter().enumerate() {
                img.words
                    .insert((reg.table, reg.address.value.wrapping_add(k as u16)), *w);
            }
        }
    }
    Some(v)
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
        assert_eq!(one(&a, &body), (Some(Value::Num(1.25)), None));
        assert_eq!(one(&b, &body), (Some(Value::Num(3.0)), Some(t)));
        let n = encode_payload(&[(Payload::Number, 21.125)], t);
        assert_eq!(one(&Payload::Number, &n), (Some(Value::Num(21.125)), None));
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
            assert_eq!(one(&s, &body), (Some(Value::Num(2.5)), Some(t)), "{unit:?}");
        }
    }
}
