//! The Modbus write capability: the second handle on a device's link, next
//! to the poller's reads, as tokio-modbus has a `Writer` next to its
//! `Reader`. It turns a setpoint's engineering value into the register
//! words (or coil) its target holds, sends it on the link's priority lane
//! and reports exactly what is known about the result; and it reads a
//! target back for the guard's verification.
//!
//! It lives in the adapter's folder, not in `sinks/`, because it is the
//! same adapter seen from the other side: it shares the link, the framing
//! and the codec with the poller. It is not a [`crate::sinks`] fan-out
//! output either: the guard calls it, one decision at a time, and waits for
//! the outcome.
//!
//! Writing is a separate, explicit capability: [`ModbusWriter::from_config`]
//! builds one only when a setpoint (in a mode that can write) or the
//! watchdog targets a Modbus register, and it writes only the registers
//! those entries name (its allowlist). Everything else is refused before a
//! byte is sent.
//!
//! What it decides itself, and why:
//! - **Reverse scaling**: raw = (value − offset) / scale, the exact inverse
//!   of the poller's [`crate::sources::apply_scale`].
//! - **Integer registers** round half away from zero (`f64::round`): the
//!   same answer whichever side of zero, and reported in
//!   [`WriteOutcome::Written`]'s `value`, so a read-back compares against
//!   what was really sent. (PLC conversions differ at exact halves; some
//!   round to even. That only matters for a value exactly half a count
//!   between two, and never for what is written here.) A value whose raw form does not fit the type is refused, never
//!   saturated: a PLC's own conversion may saturate, but a setpoint written
//!   as 65535 because 70000 was asked is a different setpoint.
//! - **Function codes**: a coil is FC5; a one-register type FC6; a
//!   multi-register type FC16, so its words change together (two FC6 writes
//!   would let the PLC see half a new f32).
//! - **A bit inside a holding register is refused.** Writing it needs a
//!   read-modify-write, which Modbus cannot make atomic: the PLC may change
//!   the other bits between the read and the write, and the write would
//!   silently undo that. (FC22, mask write register, is atomic but too
//!   rarely implemented to rely on.) Such a setpoint needs a coil or a
//!   register of its own.
//! - **Outcomes** keep the four cases apart, as an audit must: written (the
//!   device echoed it), refused (an exception, named), unknown (sent, then
//!   no trustworthy reply: the device may have applied it; never retried,
//!   see [`super::link`]), not sent (refused here, or the link was down).

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use tracing::{info, warn};

use super::codec;
use super::frame::{Exception, ReadData, ReadFn, ReadRequest, WriteData, WriteRequest};
use super::link::{Link, LinkError, WriteFailure};
use crate::config::guard::{ModbusTarget, WriteTarget};
use crate::config::{DataType, LoadedConfig, RegisterTable};
use crate::twin::Reason;

/// What became of one write.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// The device accepted it and echoed it back.
    Written {
        /// The words sent, in wire order (a coil: 0 or 1).
        raw: Vec<u16>,
        /// The engineering value those words stand for: the requested
        /// value after rounding to the register's type. Compare read-backs
        /// with this, not with the request.
        value: f64,
        /// When the echo arrived (wall clock, ns since the epoch).
        at_ns: i64,
    },
    /// The device refused it with a Modbus exception; nothing was written.
    Refused { exception: Exception },
    /// It was sent, and no trustworthy reply came: the device may or may
    /// not have applied it. Not retried; verify by reading back.
    Unknown { why: Unsure },
    /// Nothing was sent.
    NotSent { why: NotSent },
}

impl WriteOutcome {
    /// Whether the device may have changed: written, or unknown.
    pub fn may_have_applied(&self) -> bool {
        matches!(
            self,
            WriteOutcome::Written { .. } | WriteOutcome::Unknown { .. }
        )
    }
}

impl std::fmt::Display for WriteOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteOutcome::Written { raw, value, .. } => {
                write!(f, "written: {value} (raw {raw:04X?})")
            }
            WriteOutcome::Refused { exception } => write!(f, "refused by the device: {exception}"),
            WriteOutcome::Unknown { why } => write!(f, "outcome unknown: {why}"),
            WriteOutcome::NotSent { why } => write!(f, "not sent: {why}"),
        }
    }
}

/// Why a sent write's outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsure {
    #[error("no reply within the timeout")]
    Timeout,
    #[error("the connection was lost after sending ({0})")]
    ConnectionLost(Reason),
    /// A reply that was garbled or did not echo the request.
    #[error("invalid reply: {0}")]
    InvalidReply(String),
    #[error("the link shut down with the write in flight")]
    Closed,
}

/// Why a write was not sent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NotSent {
    #[error("{register}: {why}")]
    Unencodable { register: String, why: Unencodable },
    #[error(
        "{register} is not a write target: only registers a `[[setpoints]]` entry that can write, or the watchdog, names are written"
    )]
    NotAllowed { register: String },
    /// The link was down, not yet connected, or reconnected after the write
    /// was handed in.
    #[error("{register}: {error}")]
    Link { register: String, error: LinkError },
}

/// Why a value cannot be written to a target.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unencodable {
    #[error("{value} is not a finite number")]
    NotFinite { value: f64 },
    #[error(
        "{value} is {raw} raw (after reverse scaling), outside the range of {ty}, {min}..={max}"
    )]
    OutOfRange {
        value: f64,
        raw: f64,
        ty: &'static str,
        min: f64,
        max: f64,
    },
    #[error("a bool takes 0 or 1, not {raw} raw (from {value})")]
    NotABool { value: f64, raw: f64 },
    #[error("{0}")]
    Unsupported(&'static str),
}

/// A value ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub data: WriteData,
    /// The words (a coil: 0 or 1), in wire order.
    pub raw: Vec<u16>,
    /// The engineering value the words stand for.
    pub value: f64,
}

/// How a read-back came out.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadbackOutcome {
    /// The register holds the expected value, within the tolerance.
    Ok {
        read: f64,
    },
    Mismatch {
        read: f64,
        expected: f64,
    },
    /// Nothing could be read; the write is not verified.
    Failed {
        why: ReadbackFailure,
    },
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadbackFailure {
    #[error("the device refused the read: {0}")]
    Refused(Exception),
    #[error("{0}")]
    Link(LinkError),
    #[error("no read-back within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Undecodable(String),
    #[error("device #{0} has no link in this writer")]
    UnknownDevice(usize),
}

/// One device the writer can reach.
#[derive(Clone)]
struct Device {
    name: String,
    unit: u8,
    link: Link,
}

/// The write handle: the devices it may write and the registers on them.
#[derive(Clone, Default)]
pub struct ModbusWriter {
    /// By index into `PlantConfig::modbus`.
    devices: HashMap<usize, Device>,
    /// Writable address ranges by (device, table).
    allowed: HashMap<(usize, RegisterTable), Vec<Range<u32>>>,
}

impl ModbusWriter {
    /// A writer with no devices; add them with [`Self::add_device`] and
    /// their targets with [`Self::allow`].
    pub fn new() -> Self {
        ModbusWriter::default()
    }

    /// The writer the config asks for, on the poller's links (`links[i]`
    /// is device `i`'s, as [`super::links`] returns them). `None` when no
    /// setpoint in a mode that can write, and no watchdog, targets a Modbus
    /// register: then there is no write capability at all.
    pub fn from_config(cfg: &LoadedConfig, links: &[Link]) -> Option<ModbusWriter> {
        let mut w = ModbusWriter::new();
        let add = |w: &mut ModbusWriter, device: usize, table, address: u16, width: u16| {
            let (Some(d), Some(link)) = (cfg.config.modbus.get(device), links.get(device)) else {
                return;
            };
            w.add_device(device, d.name.value.clone(), d.unit_id, link.clone());
            w.allow(device, table, address, width);
        };
        for sp in &cfg.guard.setpoints {
            if let (true, WriteTarget::Modbus(t)) = (sp.mode.writes(), &sp.target) {
                add(&mut w, t.device, t.table, t.address, t.width());
            }
        }
        if let Some(wd) = &cfg.guard.watchdog {
            add(&mut w, wd.device, wd.table, wd.address, 1);
        }
        (!w.devices.is_empty()).then_some(w)
    }

    /// Let the writer reach `device` (an index into `PlantConfig::modbus`).
    pub fn add_device(&mut self, device: usize, name: impl Into<String>, unit: u8, link: Link) {
        self.devices.insert(
            device,
            Device {
                name: name.into(),
                unit,
                link,
            },
        );
    }

    /// Allow writes to `width` registers (or coils) of `table` from `address`.
    pub fn allow(&mut self, device: usize, table: RegisterTable, address: u16, width: u16) {
        let start = u32::from(address);
        self.allowed
            .entry((device, table))
            .or_default()
            .push(start..start + u32::from(width));
    }

    /// Whether `target` lies inside what this writer may write.
    pub fn allows(&self, target: &ModbusTarget) -> bool {
        let start = u32::from(target.address);
        let end = start + u32::from(target.width());
        self.devices.contains_key(&target.device)
            && self
                .allowed
                .get(&(target.device, target.table))
                .is_some_and(|rs| rs.iter().any(|r| r.start <= start && end <= r.end))
    }

    /// "device \"filler\" (unit 3) holding register 40", for messages.
    fn describe(&self, target: &ModbusTarget) -> String {
        let what = match target.bit {
            Some(bit) => format!("bit {bit} of {} {}", target.table.noun(), target.address),
            None => format!("{} {}", target.table.noun(), target.address),
        };
        match self.devices.get(&target.device) {
            Some(d) => format!("device \"{}\" (unit {}) {what}", d.name, d.unit),
            None => format!("Modbus device #{} {what}", target.device),
        }
    }

    /// Write `value` (engineering units) to `target`: once, on the link's
    /// priority lane, never retried.
    pub async fn write(&self, target: &ModbusTarget, value: f64) -> WriteOutcome {
        let register = self.describe(target);
        let not_sent = |why| {
            warn!(register = %register, value, reason = %why, "Modbus write not sent.");
            WriteOutcome::NotSent { why }
        };
        let device = match self.devices.get(&target.device) {
            Some(d) if self.allows(target) => d,
            _ => {
                return not_sent(NotSent::NotAllowed {
                    register: register.clone(),
                });
            }
        };
        let enc = match encode(target, value) {
            Ok(e) => e,
            Err(why) => {
                return not_sent(NotSent::Unencodable {
                    register: register.clone(),
                    why,
                });
            }
        };
        let req = WriteRequest {
            unit: device.unit,
            start: target.address,
            data: enc.data,
        };
        match device.link.write(req).await {
            Ok(Ok(())) => {
                info!(register = %register, value = enc.value, raw = ?enc.raw, "Modbus write acknowledged.");
                WriteOutcome::Written {
                    raw: enc.raw,
                    value: enc.value,
                    at_ns: crate::wallclock::now_ns(),
                }
            }
            Ok(Err(exception)) => {
                warn!(register = %register, value = enc.value, %exception, "Modbus device refused a write.");
                WriteOutcome::Refused { exception }
            }
            Err(WriteFailure { error, sent: false }) => not_sent(NotSent::Link {
                register: register.clone(),
                error,
            }),
            Err(WriteFailure { error, sent: true }) => {
                let why = match error {
                    LinkError::Timeout => Unsure::Timeout,
                    LinkError::Protocol(detail) => Unsure::InvalidReply(detail),
                    LinkError::Closed => Unsure::Closed,
                    other => Unsure::ConnectionLost(other.reason()),
                };
                warn!(register = %register, value = enc.value, reason = %why,
                    "Modbus write outcome unknown: the device may have applied it. Not retrying; read it back.");
                WriteOutcome::Unknown { why }
            }
        }
    }

    /// Read `target` back through the link's read path, within `timeout`,
    /// and compare it with `expected` (engineering units; pass the
    /// `value` of [`WriteOutcome::Written`]).
    pub async fn read_back(
        &self,
        target: &ModbusTarget,
        expected: f64,
        timeout: Duration,
        tolerance: f64,
    ) -> ReadbackOutcome {
        let failed = |why| ReadbackOutcome::Failed { why };
        let Some(device) = self.devices.get(&target.device) else {
            return failed(ReadbackFailure::UnknownDevice(target.device));
        };
        let function = match target.table {
            RegisterTable::Coil => ReadFn::Coils,
            RegisterTable::Discrete => ReadFn::DiscreteInputs,
            RegisterTable::Input => ReadFn::InputRegisters,
            RegisterTable::Holding => ReadFn::HoldingRegisters,
        };
        let count = if function.is_bits() || target.bit.is_some() {
            1
        } else {
            target.width()
        };
        let req = ReadRequest {
            unit: device.unit,
            function,
            start: target.address,
            count,
        };
        let data = match tokio::time::timeout(timeout, device.link.read(req)).await {
            Err(_) => return failed(ReadbackFailure::Timeout(timeout)),
            Ok(Err(e)) => return failed(ReadbackFailure::Link(e)),
            Ok(Ok(Err(exc))) => return failed(ReadbackFailure::Refused(exc)),
            Ok(Ok(Ok(data))) => data,
        };
        let read = match decode(target, &data) {
            Ok(v) => v,
            Err(e) => return failed(ReadbackFailure::Undecodable(e)),
        };
        // NaN never matches: a NaN read back is not the value written.
        if (read - expected).abs() <= tolerance {
            ReadbackOutcome::Ok { read }
        } else {
            warn!(register = %self.describe(target), read, expected, tolerance, "Modbus read-back does not match the value written.");
            ReadbackOutcome::Mismatch { read, expected }
        }
    }
}

/// The engineering value a read of `target` returned.
fn decode(target: &ModbusTarget, data: &ReadData) -> Result<f64, String> {
    let raw = match (data, target.bit) {
        (ReadData::Bits(bits), _) => {
            f64::from(u8::from(*bits.first().ok_or("the read returned no coil")?))
        }
        (ReadData::Words(words), Some(bit)) => {
            let w = *words.first().ok_or("the read returned no register")?;
            let w = if target.order.swaps_bytes() {
                w.swap_bytes()
            } else {
                w
            };
            f64::from(w >> bit & 1)
        }
        (ReadData::Words(words), None) => {
            codec::decode_words(target.data_type, target.order, words).ok_or_else(|| {
                format!(
                    "{} cannot be read back from {} registers",
                    target.data_type.a_name(),
                    words.len()
                )
            })?
        }
    };
    Ok(if target.data_type == DataType::Bool {
        raw
    } else {
        crate::sources::apply_scale(raw, target.scale, target.offset)
    })
}

/// The exact inverse of [`crate::sources::apply_scale`]: where that divides
/// by n for a scale of 1/n (so 538 × 0.1 reads as 53.8, not 53.800000000000004),
/// this multiplies by n.
pub fn unscale(value: f64, scale: f64, offset: f64) -> f64 {
    let v = value - offset;
    let inv = 1.0 / scale;
    if scale.abs() < 1.0 && (inv - inv.round()).abs() < 1e-9 * inv.abs() {
        v * inv.round()
    } else {
        v / scale
    }
}

/// The range of integer type `ty`, as (min, max, max is inclusive). The
/// 64-bit maxima are not representable in f64; their bound is the next
/// power of two, exclusive.
fn int_range(ty: DataType) -> Option<(f64, f64, bool)> {
    Some(match ty {
        DataType::U16 => (0.0, f64::from(u16::MAX), true),
        DataType::I16 => (f64::from(i16::MIN), f64::from(i16::MAX), true),
        DataType::U32 => (0.0, f64::from(u32::MAX), true),
        DataType::I32 => (f64::from(i32::MIN), f64::from(i32::MAX), true),
        DataType::U64 => (0.0, 18_446_744_073_709_551_616.0, false),
        DataType::I64 => (
            -9_223_372_036_854_775_808.0,
            9_223_372_036_854_775_808.0,
            false,
        ),
        _ => return None,
    })
}

/// The words (or coil) `value` is written as on `target`, and the function
/// code that carries them; refused when the value does not fit or the
/// target cannot be written safely (module docs).
pub fn encode(target: &ModbusTarget, value: f64) -> Result<Encoded, Unencodable> {
    let ty = target.data_type;
    match target.table {
        RegisterTable::Coil if ty != DataType::Bool => {
            return Err(Unencodable::Unsupported("a coil holds a bool"));
        }
        RegisterTable::Coil | RegisterTable::Holding => {}
        RegisterTable::Discrete | RegisterTable::Input => {
            return Err(Unencodable::Unsupported(
                "discrete inputs and input registers are read-only",
            ));
        }
    }
    if target.bit.is_some() {
        return Err(Unencodable::Unsupported(
            "a bit inside a holding register would need a read-modify-write, which is not atomic (the PLC may change the other bits in between, and the write would undo that); give the setpoint a coil or a register of its own",
        ));
    }
    if ty == DataType::String {
        return Err(Unencodable::Unsupported("text registers are not setpoints"));
    }
    if !value.is_finite() {
        return Err(Unencodable::NotFinite { value });
    }
    if ty == DataType::Bool {
        // Scale and offset do not apply to bools, as in the poller.
        let b = value.round();
        if (value - b).abs() > 1e-9 || !(b == 0.0 || b == 1.0) {
            return Err(Unencodable::NotABool { value, raw: value });
        }
        let on = b == 1.0;
        let data = match target.table {
            RegisterTable::Coil => WriteData::Coil(on),
            _ => WriteData::Register(u16::from(on)),
        };
        return Ok(Encoded {
            data,
            raw: vec![u16::from(on)],
            value: b,
        });
    }
    if target.scale == 0.0 || !target.scale.is_finite() || !target.offset.is_finite() {
        return Err(Unencodable::Unsupported(
            "the register's scale is 0 or not finite",
        ));
    }
    let raw = unscale(value, target.scale, target.offset);
    let out_of_range = |min: f64, max: f64| Unencodable::OutOfRange {
        value,
        raw,
        ty: ty.name(),
        min,
        max,
    };
    let raw = if let Some((min, max, inclusive)) = int_range(ty) {
        let r = raw.round();
        let over = if inclusive { r > max } else { r >= max };
        if !r.is_finite() || r < min || over {
            return Err(out_of_range(min, max));
        }
        r
    } else if ty == DataType::F32 {
        let max = f64::from(f32::MAX);
        // Would round to infinity in f32.
        if !raw.is_finite() || raw.abs() > max {
            return Err(out_of_range(-max, max));
        }
        raw
    } else {
        if !raw.is_finite() {
            return Err(out_of_range(f64::MIN, f64::MAX));
        }
        raw
    };
    let words = codec::encode_words(ty, target.order, raw);
    let back = codec::decode_words(ty, target.order, &words).unwrap_or(raw);
    let written = crate::sources::apply_scale(back, target.scale, target.offset);
    let data = match words.as_slice() {
        [w] => WriteData::Register(*w),
        _ => WriteData::Registers(words.clone()),
    };
    Ok(Encoded {
        data,
        raw: words,
        value: written,
    })
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
