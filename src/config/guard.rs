//! The guard's view of the config: every `[[setpoints]]` entry and the
//! `[guard]` table, resolved against the plant and ready to decide on.
//!
//! Decoding ([`super::setpoint`]) reads the keys as written; validation
//! (`validate::setpoints`) resolves them: tags to ids, the default write
//! target and read-back, interlocks parsed and type-checked, defaults
//! filled in, durations also as whole ticks. The guard reads only this, so
//! it never re-derives a target or a default itself.

use std::ops::Range;
use std::time::Duration;

use super::interlock::Interlock;
use super::{DataType, RegisterTable, TagId, WordOrder};

config_words! {
    /// What the guard does with a proposal for a setpoint.
    Mode {
        /// Nothing: proposals are not even considered.
        Off = "off",
        /// Decide as if writing, and log the decision; never write.
        Shadow = "shadow",
        /// Queue the proposal for an operator's approval.
        Advisory = "advisory",
        /// Write what passes every rule.
        ClosedLoop = "closed_loop",
    }
}

impl Mode {
    /// Other spellings, for the did-you-mean.
    pub const ALIASES: &'static [(&'static str, &'static str)] = &[
        ("closed-loop", "closed_loop"),
        ("closedloop", "closed_loop"),
        ("closed", "closed_loop"),
        ("auto", "closed_loop"),
        ("automatic", "closed_loop"),
        ("manual", "advisory"),
        ("advise", "advisory"),
        ("approval", "advisory"),
        ("dry_run", "shadow"),
        ("dry-run", "shadow"),
        ("log", "shadow"),
        ("disabled", "off"),
        ("none", "off"),
    ];

    /// Whether the mode can lead to a write (with or without approval).
    pub fn writes(self) -> bool {
        matches!(self, Mode::Advisory | Mode::ClosedLoop)
    }
}

config_words! {
    /// What happens to a proposal outside `min..=max`.
    OutOfRange {
        /// Block it.
        Reject = "reject",
        /// Write the nearest bound instead (and audit it as clamped).
        Clamp = "clamp",
    }
}

/// Default `mode`: decide and log, never write.
pub const DEFAULT_MODE: Mode = Mode::Shadow;
/// Default `readback_timeout`.
pub const DEFAULT_READBACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Default read-back tolerance where the written value is not rounded by
/// an integer register: MQTT, Sparkplug, 64-bit floats.
pub const DEFAULT_READBACK_TOLERANCE: f64 = 1e-6;
/// Default `[guard].advisory_expiry`.
pub const DEFAULT_ADVISORY_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// Default `[guard].watchdog.every`.
pub const DEFAULT_WATCHDOG_EVERY: Duration = Duration::from_millis(500);

/// `[guard]` and every `[[setpoints]]` entry, resolved.
#[derive(Debug, Clone, Default)]
pub struct GuardConfig {
    /// In file order, `off` ones included.
    pub setpoints: Vec<GuardedSetpoint>,
    /// `[guard].kill_switch`: when true nothing is written, whatever the
    /// modes say.
    pub kill_switch: bool,
    /// `[guard].kill_tag`: nothing is written while this tag is true or
    /// non-zero (or not good: the guard fails closed).
    pub kill_tag: Option<TagId>,
    pub watchdog: Option<Watchdog>,
    /// How long an advisory proposal waits for approval before it expires.
    pub advisory_expiry: Duration,
    /// `advisory_expiry` in ticks, rounded up.
    pub advisory_expiry_ticks: u32,
}

impl GuardConfig {
    /// The setpoint on tag `id`, if there is one.
    pub fn setpoint(&self, id: TagId) -> Option<&GuardedSetpoint> {
        self.setpoints.iter().find(|s| s.tag == id)
    }
}

/// One `[[setpoints]]` entry, resolved.
#[derive(Debug, Clone)]
pub struct GuardedSetpoint {
    pub tag: TagId,
    pub name: String,
    /// `enabled = false` has already made this `Off`.
    pub mode: Mode,
    /// Hard bounds, in engineering units.
    pub min: f64,
    pub max: f64,
    /// Largest change in one write; `None`: no step limit.
    pub max_step: Option<f64>,
    pub out_of_range: OutOfRange,
    /// Largest rate of change, in units per second; `None`: no limit.
    pub max_rate: Option<f64>,
    /// Least time between two writes; `None`: no limit.
    pub min_interval: Option<Duration>,
    /// `min_interval` in ticks, rounded up (0 without one).
    pub min_interval_ticks: u32,
    /// Changes smaller than this are not written; 0 writes every change.
    pub deadband: f64,
    /// Largest age of every input a proposal used; `None`: each input's own
    /// `stale_after` (a stale input always blocks).
    pub max_input_age: Option<Duration>,
    /// Largest age of the proposal itself; defaults to `[plant].stale_after`.
    pub max_proposal_age: Duration,
    /// All must hold for a write.
    pub interlocks: Vec<Interlock>,
    pub target: WriteTarget,
    pub readback: Readback,
    pub readback_timeout: Duration,
    /// `readback_timeout` in ticks, rounded up.
    pub readback_timeout_ticks: u32,
    /// Largest difference between written and read-back value that counts
    /// as a match, in engineering units.
    pub readback_tolerance: f64,
    /// The `tag` value of the entry, for messages.
    pub span: Range<usize>,
}

/// Where a setpoint is written.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteTarget {
    /// A coil (FC5/FC15) or holding register (FC6/FC16) on the device the
    /// setpoint's tag is read from, through the same link.
    Modbus(ModbusTarget),
    /// A JSON command published at QoS 1 on the tag's MQTT source.
    Mqtt { source: usize, topic: String },
    /// An NCMD (no `device`) or DCMD for `metric` of the edge node the tag
    /// comes from. Whether the metric was born is known only at run time.
    Sparkplug {
        source: usize,
        node: String,
        device: Option<String>,
        metric: String,
    },
}

/// A register to write, with everything needed to encode the value.
#[derive(Debug, Clone, PartialEq)]
pub struct ModbusTarget {
    /// Index into `PlantConfig::modbus`.
    pub device: usize,
    /// `Coil` or `Holding`.
    pub table: RegisterTable,
    pub address: u16,
    pub data_type: DataType,
    /// A bool in one bit of a holding register (a masked write).
    pub bit: Option<u8>,
    pub order: WordOrder,
    /// Raw = (value - offset) / scale.
    pub scale: f64,
    pub offset: f64,
    /// The tag's own register: `target` was not written.
    pub own_register: bool,
}

impl ModbusTarget {
    /// Registers (or coils) the value occupies.
    pub fn width(&self) -> u16 {
        self.data_type.width()
    }
}

/// How a write is verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readback {
    /// Wait for this tag to show the written value.
    Tag(TagId),
    /// Read the written register back through the link (an explicit Modbus
    /// `target` without `readback`: the setpoint's tag measures something
    /// else).
    Target,
}

/// `[guard].watchdog`: a heartbeat the PLC watches to fall back to local
/// control when the twin stops.
#[derive(Debug, Clone, PartialEq)]
pub struct Watchdog {
    /// Index into `PlantConfig::modbus`.
    pub device: usize,
    /// A holding register gets a counter (0, 1, ... 65535, 0, ...); a coil
    /// is toggled.
    pub table: RegisterTable,
    pub address: u16,
    pub every: Duration,
    /// `every` in ticks, rounded up.
    pub every_ticks: u32,
}
