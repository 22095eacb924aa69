//! The live run's side of the guard: the audit log, the writer and the
//! links' health, carried out around every tick (docs/guard.md, "Wiring in
//! a live run").
//!
//! The core decides and does no I/O; this is where its decisions meet the
//! disk and the plant. Before a tick: write outcomes that came back from
//! the write tasks and the links' up/down flags go into the guard as
//! inputs, taken at that tick's time. After a tick: `guard::carry_out`
//! appends the tick's records (fsync'd, on the tick thread) and only then
//! hands the intents to the writer.
//!
//! The writer must not block the tick, and every write is async: the
//! [`LiveWriter`] dispatches each intent by its target (a Modbus register,
//! an MQTT command topic, a Sparkplug metric) to that adapter's writer on a
//! task of the runtime and returns `Sent` at once ("handed to the link").
//! What the device or broker answered (refused, acknowledged, unknown, not
//! sent) and a register read-back come back through a channel that
//! [`GuardIo::before_tick`] drains into `GuardState::report_outcome`. A replay never builds a `GuardIo`: it has
//! no writer and writes nothing.

use std::sync::Arc;
use std::sync::mpsc;

use tracing::{error, info, warn};

use crate::config::guard::{ModbusTarget, Readback, WriteTarget};
use crate::config::{LoadedConfig, TagSource};
use crate::guard::audit::AuditLog;
use crate::guard::{self, Link, SetpointWriter, WriteIntent, WriteOutcome};
use crate::sources::health::HealthBoard;
use crate::sources::modbus::writer::{self as mw, ModbusWriter, ReadbackOutcome};
use crate::sources::mqtt::SetupError;
use crate::sources::mqtt::writer::{Command, CommandLink, PublishOutcome};
use crate::sources::sparkplug::writer::SparkplugWriter;
use crate::twin::TwinCore;

/// An outcome that came back from a write task: (intent id, outcome).
pub type Reported = (u64, WriteOutcome);

/// What a live run carries the guard's decisions out with.
pub struct GuardIo {
    /// `None`: a shadow-only run without `--audit`; its records are dropped
    /// (the events still carry every decision).
    log: Option<AuditLog>,
    writer: Option<Box<dyn SetpointWriter + Send>>,
    outcomes: mpsc::Receiver<Reported>,
    /// Kept so the channel never reads as closed while the run lives.
    _tx: mpsc::Sender<Reported>,
    /// Source name on the health board → the guard's link.
    links: Vec<(String, Link)>,
    health: HealthBoard,
    /// The last flag given per link, so a change is logged once.
    last_up: Vec<Option<bool>>,
    heartbeat: Option<Heartbeat>,
}

impl GuardIo {
    /// The guard I/O for `cfg`: an audit log if one is given, a writer if
    /// a setpoint can write (both attached to the core's guard, if it has
    /// one), and the watchdog's heartbeat if one is given.
    pub fn new(
        core: &mut TwinCore,
        cfg: &LoadedConfig,
        log: Option<AuditLog>,
        writer: Option<Box<dyn SetpointWriter + Send>>,
        outcomes: (mpsc::Sender<Reported>, mpsc::Receiver<Reported>),
        health: HealthBoard,
        heartbeat: Option<Heartbeat>,
    ) -> GuardIo {
        if let Some(mut st) = guard::state_mut(core) {
            if log.is_some() {
                st.attach_audit();
            }
            if writer.is_some() {
                st.attach_writer();
            }
        }
        let c = &cfg.config;
        let links: Vec<(String, Link)> = c
            .modbus
            .iter()
            .enumerate()
            .map(|(i, d)| (d.name.value.clone(), Link::Modbus(i)))
            .chain(
                c.mqtt
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (d.name.value.clone(), Link::Mqtt(i))),
            )
            .chain(
                c.sparkplug
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (d.name.value.clone(), Link::Sparkplug(i))),
            )
            .collect();
        let last_up = vec![None; links.len()];
        GuardIo {
            log,
            writer,
            outcomes: outcomes.1,
            _tx: outcomes.0,
            links,
            health,
            last_up,
            heartbeat,
        }
    }

    /// Inputs for the next tick: outcomes reported since the last one, and
    /// each link's flag from the sources' health. A source not (yet) on the
    /// board, or not yet delivering, is down: no write before the device
    /// answered a read (fail closed).
    pub fn before_tick(&mut self, core: &mut TwinCore) {
        let Some(mut st) = guard::state_mut(core) else {
            return;
        };
        while let Ok((intent, outcome)) = self.outcomes.try_recv() {
            st.report_outcome(intent, outcome);
        }
        let health = self.health.snapshot();
        for (k, (name, link)) in self.links.iter().enumerate() {
            let up = health.iter().any(|(n, h)| n == name && h.up);
            if self.last_up[k] != Some(up) {
                info!(source = %name, up, "Setpoint link state changed for the guard.");
                self.last_up[k] = Some(up);
            }
            st.set_link_up(*link, up);
        }
    }

    /// Carry out the tick's decisions: records appended, then intents
    /// written (`guard::carry_out`).
    pub fn after_tick(&mut self, core: &mut TwinCore) {
        // The heartbeat beats from the tick, not from a timer of its own:
        // a tick loop that hangs stops it, which is what the PLC watches.
        if let Some(h) = &mut self.heartbeat {
            h.tick();
        }
        let Some(mut st) = guard::state_mut(core) else {
            return;
        };
        match &mut self.log {
            Some(log) => {
                let w = self
                    .writer
                    .as_deref_mut()
                    .map(|w| w as &mut dyn SetpointWriter);
                guard::carry_out(&mut st, log, w);
            }
            // Without a log nothing was attached: the outboxes only hold
            // what a test put there. Dropping is what the guard would do.
            None => {
                st.take_outputs();
            }
        }
    }

    /// The audit log's last seq and chain head, for the shutdown log line.
    pub fn audit_head(&self) -> Option<(u64, String)> {
        self.log.as_ref().map(|l| (l.seq(), l.head().to_string()))
    }
}

/// The live run's setpoint writer: one [`SetpointWriter`] that hands each
/// intent to its target's adapter (Modbus, MQTT, Sparkplug B) on a task of
/// the runtime, so the tick never waits for a device or a broker.
///
/// `write` returns `Sent` at once, meaning "handed to the link". What came
/// of it follows on the outcome channel: for Modbus the device's answer
/// (and a register read-back); for MQTT and Sparkplug `Sent` again when the
/// broker acknowledged the publish (PUBACK), `Failed` when it did not in
/// time (the outcome is unknown), `NotSent` when it never left. A target
/// that cannot be written now (no capability, a Sparkplug metric not born,
/// a value its type cannot carry) is `NotSent` at once, with the reason.
pub struct LiveWriter {
    modbus: Option<Arc<ModbusWriter>>,
    /// By MQTT source index: its command connection, if a setpoint writes
    /// through it.
    mqtt: Vec<Option<CommandLink>>,
    /// By Sparkplug source index, likewise.
    sparkplug: Vec<Option<SparkplugWriter>>,
    handle: tokio::runtime::Handle,
    tx: mpsc::Sender<Reported>,
    setpoints: Vec<SetpointIo>,
}

/// What the writer needs to know of one setpoint beyond its intent.
struct SetpointIo {
    name: String,
    /// For a register read-back, and how long a broker has to acknowledge.
    timeout: std::time::Duration,
    tolerance: f64,
    /// The (scale, offset) its tag is read with, from an MQTT topic: what
    /// a JSON command undoes.
    mqtt_scale: (f64, f64),
}

impl LiveWriter {
    /// The writer for `cfg`: Modbus through `modbus` (the pollers' links),
    /// and a command connection for each MQTT or Sparkplug source a
    /// setpoint in a writing mode is written through (`built`: where they
    /// connect, and the Sparkplug births), until `shutdown`.
    pub fn new(
        cfg: &LoadedConfig,
        modbus: Option<Arc<ModbusWriter>>,
        built: &crate::sources::Built,
        handle: tokio::runtime::Handle,
        tx: mpsc::Sender<Reported>,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<LiveWriter, SetupError> {
        let writes = |f: &dyn Fn(&WriteTarget) -> bool| {
            cfg.guard
                .setpoints
                .iter()
                .any(|s| s.mode.writes() && f(&s.target))
        };
        let base = crate::sources::mqtt::config_dir(cfg);
        let mut mqtt = Vec::new();
        for (i, src) in cfg.config.mqtt.iter().enumerate() {
            let used = writes(&|t| matches!(t, WriteTarget::Mqtt { source, .. } if *source == i));
            mqtt.push(match (used, built.mqtt.get(i)) {
                (true, Some(ep)) => Some(CommandLink::start(&src.into(), ep, &base, shutdown)?),
                _ => None,
            });
        }
        let mut sparkplug = Vec::new();
        for (i, src) in cfg.config.sparkplug.iter().enumerate() {
            let used =
                writes(&|t| matches!(t, WriteTarget::Sparkplug { source, .. } if *source == i));
            sparkplug.push(match (used, built.sparkplug.get(i)) {
                (true, Some((ep, births))) => {
                    let link = CommandLink::start(&src.into(), ep, &base, shutdown)?;
                    Some(SparkplugWriter::new(cfg, i, births.clone(), link))
                }
                _ => None,
            });
        }
        let setpoints = cfg
            .guard
            .setpoints
            .iter()
            .map(|s| SetpointIo {
                name: s.name.clone(),
                timeout: s.readback_timeout,
                tolerance: s.readback_tolerance,
                mqtt_scale: match cfg.tags.get(s.tag).source {
                    TagSource::Mqtt { source, topic } => {
                        let t = &cfg.config.mqtt[source].topics[topic];
                        (t.scale, t.offset)
                    }
                    _ => (1.0, 0.0),
                },
            })
            .collect();
        Ok(LiveWriter {
            modbus,
            mqtt,
            sparkplug,
            handle,
            tx,
            setpoints,
        })
    }

    fn setpoint(&self, name: &str) -> Option<&SetpointIo> {
        self.setpoints.iter().find(|s| s.name == name)
    }

    fn write_modbus(&mut self, intent: &WriteIntent, target: &ModbusTarget) -> WriteOutcome {
        let Some(writer) = self.modbus.clone() else {
            return WriteOutcome::NotSent("no Modbus write capability for this target".into());
        };
        let (timeout, tolerance) = self
            .setpoint(&intent.name)
            .map_or((std::time::Duration::from_secs(1), 0.0), |s| {
                (s.timeout, s.tolerance)
            });
        let target = target.clone();
        let (id, value, readback, tx) = (intent.id, intent.value, intent.readback, self.tx.clone());
        let name = intent.name.clone();
        self.handle.spawn(async move {
            let report = |o: WriteOutcome| {
                // The run is over when the receiver is gone; nothing to tell.
                let _ = tx.send((id, o));
            };
            match writer.write(&target, value).await {
                mw::WriteOutcome::Written { value: sent, .. } => {
                    if readback == Readback::Target {
                        match writer.read_back(&target, sent, timeout, tolerance).await {
                            ReadbackOutcome::Ok { read } | ReadbackOutcome::Mismatch { read, .. } => {
                                report(WriteOutcome::ReadBack(read));
                            }
                            ReadbackOutcome::Failed { why } => {
                                report(WriteOutcome::Failed(format!("read-back failed: {why}")));
                            }
                        }
                    }
                    // With a read-back tag the guard watches the tag itself.
                }
                mw::WriteOutcome::Refused { exception } => {
                    report(WriteOutcome::Refused(exception.to_string()));
                }
                mw::WriteOutcome::Unknown { why } => {
                    error!(setpoint = %name, reason = %why, "A setpoint write's outcome is unknown.");
                    report(WriteOutcome::Failed(why.to_string()));
                }
                mw::WriteOutcome::NotSent { why } => {
                    report(WriteOutcome::NotSent(why.to_string()));
                }
            }
        });
        // Handed to the link; the device's answer follows as an outcome.
        WriteOutcome::Sent
    }

    fn write_mqtt(&mut self, intent: &WriteIntent, source: usize, topic: &str) -> WriteOutcome {
        let Some(link) = self.mqtt.get(source).and_then(Option::as_ref) else {
            return WriteOutcome::NotSent(
                "no MQTT write capability for this source in this run".into(),
            );
        };
        let Some(sp) = self.setpoint(&intent.name) else {
            return WriteOutcome::NotSent(format!("\"{}\" is not a setpoint", intent.name));
        };
        let command = match Command::new(
            &intent.name,
            intent.value,
            sp.mqtt_scale,
            intent.id,
            intent.proposal,
            intent.t_ns,
        ) {
            Ok(c) => c.to_json(),
            Err(why) => return WriteOutcome::NotSent(why),
        };
        let (link, timeout) = (link.clone(), sp.timeout);
        self.publish(intent, link, topic.to_string(), command, timeout)
    }

    fn write_sparkplug(
        &mut self,
        intent: &WriteIntent,
        source: usize,
        (node, device, metric): (&str, Option<&str>, &str),
    ) -> WriteOutcome {
        let Some(w) = self.sparkplug.get(source).and_then(Option::as_ref) else {
            return WriteOutcome::NotSent(
                "no Sparkplug write capability for this source in this run".into(),
            );
        };
        let timeout = self
            .setpoint(&intent.name)
            .map_or(crate::config::guard::DEFAULT_READBACK_TIMEOUT, |s| {
                s.timeout
            });
        match w.prepare(node, device, metric, intent.value, intent.t_ns) {
            Ok((topic, payload)) => {
                let link = w.link().clone();
                self.publish(intent, link, topic, payload, timeout)
            }
            Err(why) => {
                warn!(setpoint = %intent.name, reason = %why, "A Sparkplug setpoint write was not sent.");
                WriteOutcome::NotSent(why)
            }
        }
    }

    /// Publish a command on a task; its outcome follows on the channel.
    fn publish(
        &mut self,
        intent: &WriteIntent,
        link: CommandLink,
        topic: String,
        payload: Vec<u8>,
        ack_timeout: std::time::Duration,
    ) -> WriteOutcome {
        let (id, tx, name) = (intent.id, self.tx.clone(), intent.name.clone());
        self.handle.spawn(async move {
            let o = match link.publish(topic, payload, ack_timeout).await {
                // The broker has it; the read-back tag tells whether the
                // device took it.
                PublishOutcome::Acked => WriteOutcome::Sent,
                PublishOutcome::Unknown(why) => {
                    error!(setpoint = %name, link = %link.name(), reason = %why, "A setpoint write's outcome is unknown.");
                    WriteOutcome::Failed(why)
                }
                PublishOutcome::NotSent(why) => WriteOutcome::NotSent(why),
            };
            // The run is over when the receiver is gone; nothing to tell.
            let _ = tx.send((id, o));
        });
        WriteOutcome::Sent
    }
}

impl SetpointWriter for LiveWriter {
    fn write(&mut self, intent: &WriteIntent) -> WriteOutcome {
        match &intent.target {
            WriteTarget::Modbus(t) => self.write_modbus(intent, t),
            WriteTarget::Mqtt { source, topic } => self.write_mqtt(intent, *source, topic),
            WriteTarget::Sparkplug {
                source,
                node,
                device,
                metric,
            } => self.write_sparkplug(intent, *source, (node, device.as_deref(), metric)),
        }
    }
}

/// `[guard].watchdog`: a heartbeat register written every `every_ticks`
/// ticks (docs/guard.md, "Watchdog"). A holding register counts 1, 2, ...
/// 65535, 0, 1, ...; a coil toggles. One beat at a time: a beat still in
/// flight when the next is due makes that one skipped, so a slow device
/// sees a slower heartbeat, never a queue of old ones.
pub struct Heartbeat {
    writer: Arc<ModbusWriter>,
    target: crate::config::guard::ModbusTarget,
    every_ticks: u32,
    ticks: u32,
    beat: u64,
    busy: Arc<std::sync::atomic::AtomicBool>,
    handle: tokio::runtime::Handle,
}

impl Heartbeat {
    pub fn new(
        wd: &crate::config::guard::Watchdog,
        writer: Arc<ModbusWriter>,
        handle: tokio::runtime::Handle,
    ) -> Heartbeat {
        use crate::config::{DataType, RegisterTable, WordOrder};
        let data_type = if wd.table == RegisterTable::Coil {
            DataType::Bool
        } else {
            DataType::U16
        };
        Heartbeat {
            writer,
            target: crate::config::guard::ModbusTarget {
                device: wd.device,
                table: wd.table,
                address: wd.address,
                data_type,
                bit: None,
                order: WordOrder::Abcd,
                scale: 1.0,
                offset: 0.0,
                own_register: false,
            },
            every_ticks: wd.every_ticks.max(1),
            ticks: 0,
            beat: 0,
            busy: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            handle,
        }
    }

    fn tick(&mut self) {
        use std::sync::atomic::Ordering;
        self.ticks += 1;
        if self.ticks < self.every_ticks {
            return;
        }
        self.ticks = 0;
        if self.busy.swap(true, Ordering::AcqRel) {
            tracing::debug!("Watchdog beat skipped: the last one is still in flight.");
            return;
        }
        self.beat += 1;
        let value = if self.target.data_type == crate::config::DataType::Bool {
            (self.beat % 2) as f64
        } else {
            (self.beat % 65_536) as f64
        };
        let (writer, target, busy) = (self.writer.clone(), self.target.clone(), self.busy.clone());
        self.handle.spawn(async move {
            let o = writer.write(&target, value).await;
            if !matches!(o, mw::WriteOutcome::Written { .. }) {
                tracing::warn!(outcome = %o, "Watchdog heartbeat not written.");
            }
            busy.store(false, Ordering::Release);
        });
    }
}
