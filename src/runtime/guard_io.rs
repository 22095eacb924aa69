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
//! The writer must not block the tick, and a Modbus write is async: the
//! [`AsyncModbus`] adapter hands each intent to a task on the runtime and
//! returns `Sent` at once ("handed to the link"). What the device answered
//! (refused, unknown, not sent) and a register read-back come back through
//! a channel that [`GuardIo::before_tick`] drains into
//! `GuardState::report_outcome`. A replay never builds a `GuardIo`: it has
//! no writer and writes nothing.

use std::sync::Arc;
use std::sync::mpsc;

use tracing::{error, info};

use crate::config::LoadedConfig;
use crate::config::guard::{Readback, WriteTarget};
use crate::guard::audit::AuditLog;
use crate::guard::{self, Link, SetpointWriter, WriteIntent, WriteOutcome};
use crate::sources::health::HealthBoard;
use crate::sources::modbus::writer::{self as mw, ModbusWriter, ReadbackOutcome};
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

/// Writes Modbus targets on the runtime without blocking the tick. Other
/// targets (MQTT, Sparkplug) have no writer yet: reported not sent.
pub struct AsyncModbus {
    writer: Option<Arc<ModbusWriter>>,
    handle: tokio::runtime::Handle,
    tx: mpsc::Sender<Reported>,
    /// Per setpoint name: (read-back timeout, tolerance), for a register
    /// read-back.
    readback: Vec<(String, std::time::Duration, f64)>,
}

impl AsyncModbus {
    pub fn new(
        cfg: &LoadedConfig,
        writer: Option<Arc<ModbusWriter>>,
        handle: tokio::runtime::Handle,
        tx: mpsc::Sender<Reported>,
    ) -> AsyncModbus {
        AsyncModbus {
            writer,
            handle,
            tx,
            readback: cfg
                .guard
                .setpoints
                .iter()
                .map(|s| (s.name.clone(), s.readback_timeout, s.readback_tolerance))
                .collect(),
        }
    }
}

impl SetpointWriter for AsyncModbus {
    fn write(&mut self, intent: &WriteIntent) -> WriteOutcome {
        let WriteTarget::Modbus(target) = &intent.target else {
            return WriteOutcome::NotSent(
                "this build writes Modbus targets only; MQTT and Sparkplug writes are not wired"
                    .into(),
            );
        };
        let Some(writer) = self.writer.clone() else {
            return WriteOutcome::NotSent("no Modbus write capability for this target".into());
        };
        let (timeout, tolerance) = self
            .readback
            .iter()
            .find(|(n, ..)| *n == intent.name)
            .map_or((std::time::Duration::from_secs(1), 0.0), |(_, t, tol)| {
                (*t, *tol)
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
