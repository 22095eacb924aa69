//! Lockstep simulation (`twin demo --headless`): the virtual plant and the
//! twin on one simulated clock, as fast as the CPU allows.
//!
//! Nothing here reads a clock or opens a socket, yet the twin sees what it
//! sees live: the truth model writes its register images as the live plant
//! does, each Modbus poll group reads its blocks out of them on its own
//! `poll_interval` and decodes them with the poller's own `decode_block`,
//! and each MQTT topic is published every `publish` as the live plant
//! encodes it and parsed by the MQTT source's own message handler. Every
//! sample is stamped on the simulated clock and goes through
//! [`Driver::push_batch`] before the tick that applies it, and every tick
//! through [`Driver::step`], so each sink (event stream, recorder) sees the
//! stream a live run would have pushed.
//!
//! What is not modelled is the network's jitter: a reply or a message
//! arrives [`TRANSPORT_LATENCY`] after it was sent, always. A disconnected
//! device does not answer within its `timeout` (or, behind a gateway whose
//! other units are up, the gateway answers exception 0x0B at once); the
//! poll group polls again when its reads give up, as the poller's
//! `MissedTickBehavior::Delay` interval does, and the connection is dropped
//! and retried on the link's backoff ([`LinkModel`]). Sparkplug tags get no
//! samples: the virtual plant has no edge node (as live).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use rumqttc::{Publish, QoS};
use tracing::info;

use super::modbus_server::{Images, RegisterImage};
use super::scenario::Scenario;
use super::truth::{self, Truth};
use super::{
    HEADLESS_EPOCH_NS, LINE_UPDATE, Logs, SimError, SimTag, Target, encode_payload, mqtt_raw,
    register_images, serve_register, sim_tags,
};
use crate::config::{LoadedConfig, Payload, TagId};
use crate::runtime::Driver;
use crate::sinks::{Sink, SinkError, TickOutput};
use crate::sources::backoff::Backoff;
use crate::sources::modbus::decode_block;
use crate::sources::modbus::frame::{Exception, ReadData};
use crate::sources::modbus::link::{BACKOFF_MAX, BACKOFF_MIN, LinkError, MAX_CONSECUTIVE_TIMEOUTS};
use crate::sources::modbus::plan::{self, PollGroup, ReadBlock};
use crate::sources::mqtt::{DropLog, Endpoint, MqttSubscriber};
use crate::twin::{Reason, Sample};

/// Time from a Modbus request to its reply, and from an MQTT publish to its
/// delivery: loopback takes a fraction of a millisecond live. Fixed, so that
/// a sample read at a tick's time is applied on the next tick, as it is live
/// (it arrives just after the tick).
pub const TRANSPORT_LATENCY: Duration = Duration::from_millis(1);

/// Options of [`run`].
#[derive(Debug, Clone)]
pub struct LockstepOptions {
    /// Sim time to run.
    pub duration: Duration,
    /// Seed of the plant's noise.
    pub seed: u64,
    /// How often the plant updates its signals and register images (as
    /// `twin sim --update`; a plant with lines updates at least every
    /// [`LINE_UPDATE`]).
    pub update: Duration,
    /// How often the plant publishes each MQTT topic (`twin sim --publish`).
    pub publish: Duration,
    /// Write the ground-truth fault labels, as JSONL, here.
    pub labels: Option<PathBuf>,
    /// Set (by SIGINT or SIGTERM) to stop at the next tick, the outputs
    /// closed as at the end of `duration`.
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

impl LockstepOptions {
    /// The live demo's cadences (`twin sim`'s defaults) for `duration`.
    pub fn new(duration: Duration) -> Self {
        let d = super::SimOptions::default();
        LockstepOptions {
            duration,
            seed: d.seed,
            update: d.update,
            publish: d.publish,
            labels: None,
            stop: None,
        }
    }
}

/// What a lockstep run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Sim time run: the time of the last tick, from sim time 0.
    pub sim: Duration,
    pub ticks: u64,
    pub events: u64,
    /// Samples pushed to the driver.
    pub samples: u64,
    /// Modbus block reads and MQTT messages delivered.
    pub reads: u64,
    pub messages: u64,
    /// Labels written.
    pub labels: u64,
    /// The run stopped early because an output's reader went away.
    pub closed: bool,
    /// The run stopped early on `LockstepOptions::stop` (a signal).
    pub stopped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LockstepError {
    #[error(transparent)]
    Labels(#[from] SimError),
    #[error(transparent)]
    Models(#[from] crate::ml::MlSetupError),
    #[error("cannot set up the parser of MQTT source \"{name}\": {source}")]
    Mqtt {
        name: String,
        #[source]
        source: Box<crate::sources::mqtt::SetupError>,
    },
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// One poll group of one device, and when it polls next (sim ns).
struct Poller {
    device: usize,
    unit: u8,
    /// Index of its device's link in the run's links.
    link: usize,
    group: PollGroup,
    next_ns: i64,
}

/// The poller's connection to one listener, as the source's link keeps it
/// (`sources::modbus::link`): a device that stops answering times out, the
/// connection is dropped after [`MAX_CONSECUTIVE_TIMEOUTS`], and new
/// connections are tried on the link's own backoff (same bounds, same
/// jitter seeded by the link's name), failing every read in between. That
/// backoff is what delays a live twin's recovery by seconds after a PLC is
/// back, so it is modelled rather than skipped.
struct LinkModel {
    /// The images of the listener (a gateway's units share them).
    images: Images,
    timeout_ns: i64,
    up: bool,
    /// The connection has had a reply (then a half-open one is replaced at
    /// once rather than after a backoff step).
    answered: bool,
    consecutive_timeouts: u32,
    retry_at: i64,
    /// Why reads fail while down.
    down: LinkError,
    backoff: Backoff,
}

impl LinkModel {
    fn new(name: &str, images: Images, timeout: Duration) -> Self {
        LinkModel {
            images,
            timeout_ns: ns(timeout),
            up: false,
            answered: false,
            consecutive_timeouts: 0,
            retry_at: 0,
            down: LinkError::Lost(Reason::ConnectionLost),
            backoff: Backoff::new(name, BACKOFF_MIN, BACKOFF_MAX),
        }
    }
}

/// Samples on their way to the driver, by arrival time (then send order).
type InFlight = BTreeMap<(i64, u64), Vec<Sample>>;

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// Run `cfg`'s virtual plant (with `scenario`'s faults) and the twin on one
/// simulated clock for `opts.duration`, every tick going to `sinks`.
/// Sim time 0 is [`HEADLESS_EPOCH_NS`] on the calendar, so the same config,
/// scenario and seed give byte-identical output.
pub fn run(
    cfg: &LoadedConfig,
    scenario: Option<&Scenario>,
    opts: &LockstepOptions,
    sinks: Vec<Box<dyn Sink>>,
) -> Result<Report, LockstepError> {
    let mut logs = Logs::open(None, opts.labels.as_deref(), HEADLESS_EPOCH_NS)?;
    let labels_err = |e: std::io::Error| SimError::Truth {
        path: opts
            .labels
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        source: e,
    };
    let c = &cfg.config;
    let subscribers = (0..c.mqtt.len())
        .map(|i| {
            // Never connected: only its message handling is used.
            let ep = Endpoint {
                host: "127.0.0.1".to_string(),
                port: 1883,
                tls: false,
            };
            MqttSubscriber::new(cfg, i, ep).map_err(|e| LockstepError::Mqtt {
                name: c.mqtt[i].name.value.clone(),
                source: Box::new(e),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut drops: Vec<DropLog> = subscribers.iter().map(|_| DropLog::default()).collect();

    let groups = register_images(cfg);
    let mut device_images = std::collections::HashMap::new();
    let mut pollers = Vec::new();
    let mut links = Vec::new();
    for (images, devices) in groups.values() {
        // One link per listener, named and timed as `modbus::links` does.
        let name = devices
            .iter()
            .map(|&d| c.modbus[d].name.value.as_str())
            .collect::<Vec<_>>()
            .join("+");
        let timeout = devices
            .iter()
            .map(|&d| c.modbus[d].timeout)
            .max()
            .unwrap_or_default();
        links.push(LinkModel::new(&name, images.clone(), timeout));
        for &d in devices {
            device_images.insert(d, images.clone());
            let dev = &c.modbus[d];
            for group in plan::plan(dev) {
                pollers.push(Poller {
                    device: d,
                    unit: dev.unit_id,
                    link: links.len() - 1,
                    group,
                    next_ns: 0,
                });
            }
        }
    }
    let register_tags: Vec<Vec<TagId>> = c
        .modbus
        .iter()
        .map(|dev| {
            dev.registers
                .iter()
                .map(|r| cfg.tags.id(&r.tag.value).unwrap_or(TagId(u32::MAX)))
                .collect()
        })
        .collect();
    let mut tags = sim_tags(cfg, &device_images, false);
    let devices: Vec<(usize, u8, Images)> = device_images
        .iter()
        .map(|(&i, img)| (i, c.modbus[i].unit_id, img.clone()))
        .collect();

    let mut truth = Truth::new(cfg, scenario, opts.seed);
    let update = if truth.has_lines() {
        opts.update.min(LINE_UPDATE)
    } else {
        opts.update
    }
    .max(truth::PHYSICS_DT);
    let (update_ns, publish_ns, latency_ns) = (ns(update), ns(opts.publish), ns(TRANSPORT_LATENCY));
    let end_ns = ns(opts.duration);

    let mut driver = Driver::new(cfg, HEADLESS_EPOCH_NS).with_models(cfg)?;
    for s in sinks {
        driver.add_sink(s)?;
    }
    let mut report = Report::default();
    let mut in_flight = InFlight::new();
    let mut seq = 0u64;
    let (mut next_update, mut truth_ns, mut next_publish) = (0i64, 0i64, 0i64);
    let mut failed = None;
    loop {
        let tick_abs = driver.next_tick_ns();
        let tick_ns = tick_abs.saturating_sub(HEADLESS_EPOCH_NS);
        if tick_ns > end_ns {
            break;
        }
        // A long headless run (hours of sim time) used to die on Ctrl-C
        // with its recording unfinished; it now ends here, cleanly.
        if opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed))
        {
            report.stopped = true;
            break;
        }
        // The plant's side up to and including the tick's time: at equal
        // times the images are refreshed before they are read.
        loop {
            let next_poll = pollers.iter().map(|p| p.next_ns).min().unwrap_or(i64::MAX);
            let t = next_update.min(next_poll);
            if t > tick_ns {
                break;
            }
            if next_update == t {
                truth.advance(Duration::from_nanos((t - truth_ns).max(0) as u64));
                truth_ns = t;
                next_update = t.saturating_add(update_ns);
                let labels = truth.drain_labels();
                report.labels += labels.len() as u64;
                logs.labels(&labels).map_err(labels_err)?;
                let publish = t >= next_publish;
                if publish {
                    next_publish = t.saturating_add(publish_ns);
                }
                let messages = serve(&truth, &mut tags, &devices, publish, t);
                let recv = HEADLESS_EPOCH_NS
                    .saturating_add(t)
                    .saturating_add(latency_ns);
                for ((source, topic), body) in messages {
                    let (Some(sub), Some(drops)) = (subscribers.get(source), drops.get_mut(source))
                    else {
                        continue;
                    };
                    let p = Publish::new(topic, QoS::AtLeastOnce, body);
                    let samples = sub.samples(&p, recv, drops);
                    report.messages += 1;
                    if !samples.is_empty() {
                        seq += 1;
                        in_flight.insert((recv, seq), samples);
                    }
                }
            }
            for p in pollers.iter_mut().filter(|p| p.next_ns == t) {
                let Some(link) = links.get_mut(p.link) else {
                    continue;
                };
                let done = poll(
                    p,
                    link,
                    &c.modbus[p.device].registers,
                    &register_tags[p.device],
                    t,
                    latency_ns,
                );
                report.reads += done.len() as u64;
                let mut last = t;
                for (at, samples) in done {
                    last = last.max(at);
                    seq += 1;
                    in_flight.insert((HEADLESS_EPOCH_NS.saturating_add(at), seq), samples);
                }
                // The next poll is due an interval on, or when this one
                // ended if that is later (tokio's `Delay`).
                p.next_ns = t.saturating_add(ns(p.group.interval)).max(last);
            }
        }
        // What has arrived by the tick's time is with the core for it.
        while let Some(entry) = in_flight.first_entry() {
            if entry.key().0 > tick_abs {
                break;
            }
            driver.push_batch(entry.remove());
        }
        driver.step();
        // A failed output ends the run: a reader that went away (`| head`)
        // normally, anything else with its error.
        if let Some(e) = driver.take_failures().into_iter().next() {
            match e {
                SinkError::Closed { .. } => {
                    info!(error = %e, "An output's reader went away; stopping.");
                    report.closed = true;
                }
                SinkError::Io { .. } | SinkError::Stopped { .. } => failed = Some(e),
            }
            break;
        }
    }
    logs.flush().map_err(labels_err)?;
    let finish = driver.finish();
    if let Some(e) = failed {
        return Err(e.into());
    }
    if let Some(e) = finish
        .into_iter()
        .find(|e| matches!(e, SinkError::Io { .. }))
    {
        return Err(e.into());
    }
    let stats = driver.stats();
    report.sim = Duration::from_nanos(
        u64::try_from(driver.clock().now_ns().saturating_sub(HEADLESS_EPOCH_NS)).unwrap_or(0),
    );
    report.ticks = stats.ticks;
    report.events = stats.events;
    report.samples = stats.samples;
    Ok(report)
}

/// The plant's update at sim time `t_ns`, as the live plant's loop does it:
/// offline flags and register images refreshed, and, when `publish`, each
/// MQTT topic's payload encoded. Returns the payloads by (source, topic).
fn serve(
    truth: &Truth,
    tags: &mut [SimTag],
    devices: &[(usize, u8, Images)],
    publish: bool,
    t_ns: i64,
) -> BTreeMap<(usize, String), Vec<u8>> {
    for (d, unit, images) in devices {
        let offline = truth.device_offline(*d);
        if let Ok(mut imgs) = images.write()
            && let Some(img) = imgs.get_mut(unit)
        {
            img.offline = offline;
        }
    }
    let t = t_ns as f64 / 1e9;
    let mut out: BTreeMap<(usize, String), Vec<(Payload, f64)>> = BTreeMap::new();
    for tag in tags.iter_mut() {
        let Some(eng) = truth.value(tag.index) else {
            continue;
        };
        match &tag.target {
            Target::Register {
                unit, images, reg, ..
            } => {
                if let Some(images) = images {
                    serve_register(images, *unit, tag.index, reg, eng, t);
                }
            }
            Target::Mqtt {
                source,
                topic,
                payload,
                scale,
                offset,
            } => {
                if publish {
                    out.entry((*source, topic.clone()))
                        .or_default()
                        .push((payload.clone(), mqtt_raw(eng, *scale, *offset)));
                }
            }
        }
    }
    let now_ns = HEADLESS_EPOCH_NS.saturating_add(t_ns);
    out.into_iter()
        .map(|(k, values)| (k, encode_payload(&values, now_ns)))
        .collect()
}

/// One poll of a group at sim time `t_ns` over `link`: each block read out
/// of the device's image and decoded as the poller decodes a reply, or
/// failed as the link fails it. Returns each block's samples with the sim
/// time they arrive.
fn poll(
    p: &Poller,
    link: &mut LinkModel,
    registers: &[crate::config::Register],
    tags: &[TagId],
    t_ns: i64,
    latency_ns: i64,
) -> Vec<(i64, Vec<Sample>)> {
    let images = link.images.clone();
    let Ok(images) = images.read() else {
        return Vec::new();
    };
    let all_offline = !images.is_empty() && images.values().all(|i| i.offline);
    let bad = |b: &ReadBlock, reason: Reason, at: i64| {
        let stamp = HEADLESS_EPOCH_NS.saturating_add(at);
        let samples = b
            .items
            .iter()
            .map(|&(ri, _)| Sample::bad(tags[ri], reason, stamp))
            .collect();
        (at, samples)
    };
    if !link.up {
        if t_ns < link.retry_at {
            let reason = link.down.reason();
            return p
                .group
                .blocks
                .iter()
                .map(|b| bad(b, reason, t_ns))
                .collect();
        }
        if all_offline {
            // The listener accepts and closes at once: the connection is
            // lost before any reply, and the next try waits a backoff step.
            link.retry_at = t_ns.saturating_add(ns(link.backoff.step()));
            link.down = LinkError::Lost(Reason::ConnectionLost);
            let at = t_ns.saturating_add(latency_ns);
            let reason = link.down.reason();
            return p.group.blocks.iter().map(|b| bad(b, reason, at)).collect();
        }
        link.up = true;
        link.answered = false;
        link.consecutive_timeouts = 0;
    }
    if all_offline {
        // No reply: every read of the poll times out together (they are
        // in flight together), and enough timeouts drop the connection.
        let at = t_ns.saturating_add(link.timeout_ns);
        link.consecutive_timeouts = link
            .consecutive_timeouts
            .saturating_add(p.group.blocks.len() as u32);
        if link.consecutive_timeouts >= MAX_CONSECUTIVE_TIMEOUTS {
            link.up = false;
            link.down = LinkError::Timeout;
            link.retry_at = if link.answered {
                at
            } else {
                at.saturating_add(ns(link.backoff.step()))
            };
        }
        return p
            .group
            .blocks
            .iter()
            .map(|b| bad(b, Reason::Timeout, at))
            .collect();
    }
    link.answered = true;
    link.consecutive_timeouts = 0;
    link.backoff.reset();
    let at = t_ns.saturating_add(latency_ns);
    let stamp = HEADLESS_EPOCH_NS.saturating_add(at);
    p.group
        .blocks
        .iter()
        .map(|b| {
            // A gateway answers for a unit that is gone: exception 0x0B.
            let data = images
                .get(&p.unit)
                .filter(|img| !img.offline)
                .ok_or(Exception(0x0B))
                .and_then(|img| read_block(img, b).ok_or(Exception(0x02)));
            match data {
                Ok(data) => (at, decode_block(registers, tags, b, &data, stamp).collect()),
                Err(exc) => bad(b, exc.reason(), at),
            }
        })
        .collect()
}

/// A block's values from a unit's image, as the virtual plant's server
/// answers them; `None` when an address is outside the map (the server
/// answers IllegalDataAddress).
fn read_block(img: &RegisterImage, b: &ReadBlock) -> Option<ReadData> {
    let addrs = (0..b.count).map(|i| b.start.checked_add(i));
    if b.table.is_bits() {
        addrs
            .map(|a| img.bits.get(&(b.table, a?)).copied())
            .collect::<Option<Vec<_>>>()
            .map(ReadData::Bits)
    } else {
        addrs
            .map(|a| img.words.get(&(b.table, a?)).copied())
            .collect::<Option<Vec<_>>>()
            .map(ReadData::Words)
    }
}

/// The event stream of a lockstep run: every tick's lines written straight
/// to the file, waiting for the disk when it is slow. There is no live
/// plant to keep up with, so nothing is ever dropped (unlike the live
/// stream's bounded buffer), and the file is the same however fast the
/// disk is.
pub struct EventFile {
    out: std::io::BufWriter<Box<dyn Write + Send>>,
    target: String,
}

impl EventFile {
    /// `-` is stdout; anything else a file, created or truncated.
    pub fn create(target: &str) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = if target == "-" {
            Box::new(std::io::stdout())
        } else {
            let path = std::path::Path::new(target);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            Box::new(std::fs::File::create(path)?)
        };
        Ok(Self::from_writer(out, target))
    }

    pub fn from_writer(out: Box<dyn Write + Send>, target: &str) -> Self {
        EventFile {
            out: std::io::BufWriter::with_capacity(256 * 1024, out),
            target: target.to_string(),
        }
    }

    fn error(&self, source: std::io::Error) -> SinkError {
        if source.kind() == std::io::ErrorKind::BrokenPipe {
            SinkError::Closed {
                sink: "event stream",
                target: self.target.clone(),
            }
        } else {
            SinkError::Io {
                sink: "event stream",
                target: self.target.clone(),
                source,
            }
        }
    }
}

impl Sink for EventFile {
    fn write_tick(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        self.out.write_all(out.jsonl).map_err(|e| self.error(e))
    }

    fn write_end(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        self.write_tick(out)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.out.flush().map_err(|e| self.error(e))
    }
}
