//! `[[setpoints]]` and `[guard]`: the tags the twin may write back, with the
//! rules every write must pass (bounds, rates, freshness, interlocks), where
//! it goes and how it is verified; and the plant-wide kill switch and
//! watchdog.
//!
//! This reads the keys as written and checks each where it stands (types,
//! ranges, keys that contradict each other in one table). What needs the
//! rest of the plant (tags, their sources, interlock tags) is checked and
//! resolved into [`super::guard::GuardConfig`] by `validate::setpoints`.

use std::ops::Range;
use std::time::Duration;

use super::decode::{HOUR, Loc, MS, Sink, Table, positive};
use super::diagnostics::Diagnostic;
use super::guard::{Mode, OutOfRange};
use super::{DataType, RegisterTable, WordOrder};

/// A `[[setpoints]]` entry as written. Every key but `tag`, `min` and `max`
/// is optional; `LoadedConfig::guard` has them resolved with defaults.
#[derive(Debug, Clone)]
pub struct Setpoint {
    pub tag: Loc<String>,
    pub min: Loc<f64>,
    pub max: Loc<f64>,
    pub max_step: Option<Loc<f64>>,
    pub enabled: Option<Loc<bool>>,
    pub mode: Option<Loc<Mode>>,
    pub out_of_range: Option<Loc<OutOfRange>>,
    pub max_rate: Option<Loc<f64>>,
    pub min_interval: Option<Loc<Duration>>,
    pub deadband: Option<Loc<f64>>,
    pub max_input_age: Option<Loc<Duration>>,
    pub max_proposal_age: Option<Loc<Duration>>,
    /// The expressions as written; parsed once the tags are known.
    pub interlocks: Vec<Loc<String>>,
    pub target: Option<TargetDecl>,
    pub command_topic: Option<Loc<String>>,
    pub readback: Option<Loc<String>>,
    pub readback_timeout: Option<Loc<Duration>>,
    pub readback_tolerance: Option<Loc<f64>>,
    /// The whole entry.
    pub span: Range<usize>,
}

impl Setpoint {
    /// The mode as decided by `mode` and `enabled`: `enabled = false` is
    /// `off` (as it always was), no `mode` is shadow.
    pub fn effective_mode(&self) -> Mode {
        match (&self.enabled, &self.mode) {
            (Some(e), _) if !e.value => Mode::Off,
            (_, Some(m)) => m.value,
            _ => super::guard::DEFAULT_MODE,
        }
    }
}

/// `target = { ... }` as written. Modbus keys (`table`, `address`, `type`,
/// `order`, `scale`, `offset`) name a register on the tag's own device;
/// `metric` names a Sparkplug metric of the tag's own edge node. Which keys
/// apply depends on the tag's source, checked once the tag is known.
#[derive(Debug, Clone)]
pub struct TargetDecl {
    pub span: Range<usize>,
    /// As written: an unwritable table is reported already, and resolves
    /// to no target.
    pub table: Option<Loc<RegisterTable>>,
    pub address: Option<Loc<u16>>,
    pub data_type: Option<Loc<DataType>>,
    pub order: Option<Loc<WordOrder>>,
    pub scale: Option<Loc<f64>>,
    pub offset: Option<Loc<f64>>,
    pub metric: Option<Loc<String>>,
}

impl TargetDecl {
    /// The Modbus keys that are set, with their spans.
    pub fn modbus_keys(&self) -> Vec<(&'static str, Range<usize>)> {
        let mut out = Vec::new();
        let mut add = |k, s: Option<Range<usize>>| out.extend(s.map(|s| (k, s)));
        add("table", self.table.as_ref().map(|v| v.span.clone()));
        add("address", self.address.as_ref().map(|v| v.span.clone()));
        add("type", self.data_type.as_ref().map(|v| v.span.clone()));
        add("order", self.order.as_ref().map(|v| v.span.clone()));
        add("scale", self.scale.as_ref().map(|v| v.span.clone()));
        add("offset", self.offset.as_ref().map(|v| v.span.clone()));
        out
    }
}

/// Largest `min_interval`: a setpoint changed at most once a day.
const DAY: Duration = Duration::from_secs(24 * 3600);

pub(super) fn decode_setpoint(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Setpoint> {
    let tag = t.req_str(sink, "tag");
    let min = t.req_f64(sink, "min");
    let max = t.req_f64(sink, "max");
    let max_step = t.opt_f64(sink, "max_step");
    let enabled = t.opt_bool(sink, "enabled");
    if let (Some(lo), Some(hi)) = (&min, &max)
        && lo.value >= hi.value
    {
        sink.push(
            Diagnostic::error(
                hi.span.clone(),
                t.key_path("max"),
                format!("max ({}) must be greater than min ({})", hi.value, lo.value),
            )
            .expected("min < max")
            .maybe_help((lo.value > hi.value).then(|| "the bounds look swapped".to_string())),
        );
    }
    if let Some(s) = &max_step
        && s.value <= 0.0
    {
        sink.push(
            Diagnostic::error(
                s.span.clone(),
                t.key_path("max_step"),
                "max_step must be positive",
            )
            .expected("a number > 0"),
        );
    }
    let mode = t
        .opt_enum_aliased(sink, "mode", Mode::NAMES, Mode::ALIASES)
        .and_then(|m| Mode::from_name(m.value).map(|v| Loc::new(v, m.span)));
    if let (Some(on), Some(m)) = (&enabled, &mode) {
        contradiction(sink, &t, on, m);
    }
    let out_of_range = t
        .opt_enum(sink, "out_of_range", OutOfRange::NAMES)
        .and_then(|m| OutOfRange::from_name(m.value).map(|v| Loc::new(v, m.span)));
    let max_rate = t.opt_f64(sink, "max_rate");
    let max_rate = positive(sink, &t, "max_rate", max_rate, "units per second");
    let min_interval = t.opt_duration(sink, "min_interval", MS, DAY);
    let deadband = t.opt_f64(sink, "deadband");
    let deadband = deadband.filter(|d| at_least_zero(sink, &t, "deadband", d));
    if let (Some(d), Some(lo), Some(hi)) = (&deadband, &min, &max)
        && lo.value < hi.value
        && d.value >= hi.value - lo.value
    {
        sink.push(
            Diagnostic::error(
                d.span.clone(),
                t.key_path("deadband"),
                format!(
                    "deadband ({}) is not smaller than the range max - min ({})",
                    d.value,
                    hi.value - lo.value
                ),
            )
            .expected(format!("a number >= 0 and < {}", hi.value - lo.value))
            .help(
                "a deadband that wide would hold back every change; it is usually a few raw counts",
            ),
        );
    }
    let max_input_age = t.opt_duration(sink, "max_input_age", MS, HOUR);
    let max_proposal_age = t.opt_duration(sink, "max_proposal_age", MS, HOUR);
    let interlocks = t.opt_str_array(sink, "interlocks").unwrap_or_default();
    let target = t
        .opt_table(sink, "target")
        .map(|tt| decode_target(sink, tt));
    let command_topic = t.opt_str(sink, "command_topic");
    if let Some(c) = &command_topic {
        check_command_topic(sink, &t.key_path("command_topic"), c);
    }
    let readback = t.opt_str(sink, "readback");
    let readback_timeout =
        t.opt_duration(sink, "readback_timeout", 10 * MS, Duration::from_secs(60));
    let readback_tolerance = t.opt_f64(sink, "readback_tolerance");
    let readback_tolerance =
        readback_tolerance.filter(|d| at_least_zero(sink, &t, "readback_tolerance", d));
    let span = t.span();
    t.finish(sink);
    Some(Setpoint {
        tag: tag?,
        min: min?,
        max: max?,
        max_step,
        enabled,
        mode,
        out_of_range,
        max_rate,
        min_interval,
        deadband,
        max_input_age,
        max_proposal_age,
        interlocks,
        target,
        command_topic,
        readback,
        readback_timeout,
        readback_tolerance,
        span,
    })
}

/// `enabled` and `mode` both written, and saying different things.
fn contradiction(sink: &mut Sink, t: &Table<'_, '_>, on: &Loc<bool>, m: &Loc<Mode>) {
    let help = match (on.value, m.value) {
        (false, Mode::Off) | (true, Mode::Shadow | Mode::Advisory | Mode::ClosedLoop) => return,
        (false, mode) => {
            format!("remove `enabled = false` to run in {mode} mode, or write `mode = \"off\"`")
        }
        (true, _) => {
            "remove `enabled = true`: `mode = \"off\"` alone turns the setpoint off".to_string()
        }
    };
    sink.push(
        Diagnostic::error(
            m.span.clone(),
            t.key_path("mode"),
            format!(
                "`enabled = {}` and `mode = \"{}\"` contradict each other",
                on.value, m.value
            ),
        )
        .expected("`mode` alone; `enabled = false` is the older way to write `mode = \"off\"`")
        .help(help),
    );
}

fn at_least_zero(sink: &mut Sink, t: &Table<'_, '_>, key: &str, v: &Loc<f64>) -> bool {
    if v.value >= 0.0 {
        return true;
    }
    sink.push(
        Diagnostic::error(
            v.span.clone(),
            t.key_path(key),
            format!("{key} must not be negative, found {}", v.value),
        )
        .expected("a number >= 0, in the tag's units"),
    );
    false
}

/// A topic the twin publishes commands to: one concrete topic.
fn check_command_topic(sink: &mut Sink, path: &str, c: &Loc<String>) {
    let v = &c.value;
    let problem = if v.is_empty() {
        Some(("must not be empty".to_string(), None))
    } else if v.contains(['+', '#']) {
        Some((
            format!("command topic \"{v}\" contains a wildcard"),
            Some(
                "`+` and `#` only subscribe; a command is published to one topic, e.g. \"plant/filler/speed/set\"",
            ),
        ))
    } else if v.contains(super::MACHINE_CAPTURE) {
        Some((
            format!("command topic \"{v}\" contains `{{machine}}`"),
            Some("a setpoint is one tag on one machine; write its machine's topic out"),
        ))
    } else if v.starts_with('$') {
        Some((
            format!("command topic \"{v}\" starts with `$`"),
            Some("topics starting with `$` belong to the broker ($SYS) and are not for commands"),
        ))
    } else if v.contains('\0') {
        Some((
            format!("command topic {v:?} contains a NUL character"),
            None,
        ))
    } else {
        None
    };
    if let Some((msg, help)) = problem {
        sink.push(
            Diagnostic::error(c.span.clone(), path, msg)
                .expected("a topic to publish to, without `+`, `#` or `{machine}`")
                .maybe_help(help.map(str::to_string)),
        );
    }
}

fn decode_target(sink: &mut Sink, mut t: Table<'_, '_>) -> TargetDecl {
    let table = t
        .opt_enum_aliased(sink, "table", RegisterTable::NAMES, RegisterTable::ALIASES)
        .map(|v| Loc::new(RegisterTable::from_name(v.value), v.span));
    if let Some(tb) = &table
        && !tb.value.is_writable()
    {
        sink.push(
            Diagnostic::error(
                tb.span.clone(),
                t.key_path("table"),
                format!(
                    "{} cannot be written: Modbus has no write function for it",
                    tb.value.one()
                ),
            )
            .expected("table = \"holding\" or \"coil\"")
            .help("name the holding register (or coil) the PLC takes this setpoint from"),
        );
    }
    let address = t
        .opt_int(sink, "address", 0, 65535)
        .map(|a| Loc::new(a.value as u16, a.span));
    let data_type = t
        .opt_enum_aliased(sink, "type", DataType::NAMES, DataType::ALIASES)
        .map(|v| Loc::new(DataType::from_name(v.value), v.span));
    if let Some(dt) = &data_type {
        let bits = table.as_ref().is_some_and(|tb| tb.value.is_bits());
        let bad = match dt.value {
            DataType::String => Some("a setpoint is a number; a string register cannot be one"),
            DataType::Bool if !bits => Some(
                "a bool in a holding register needs `bit`, which a target cannot name; write to a coil, or map the register as a tag",
            ),
            d if bits && d != DataType::Bool => {
                Some("a coil holds a single bit, so its type is bool")
            }
            _ => None,
        };
        if let Some(msg) = bad {
            sink.push(
                Diagnostic::error(dt.span.clone(), t.key_path("type"), msg)
                    .expected("a numeric type (u16, i16, u32, i32, f32, u64, i64, f64) for a holding register, bool for a coil"),
            );
        }
    }
    let order = t
        .opt_enum_aliased(sink, "order", WordOrder::NAMES, WordOrder::ALIASES)
        .map(|v| Loc::new(WordOrder::from_name(v.value), v.span));
    let scale = t.opt_f64(sink, "scale");
    if let Some(s) = &scale
        && s.value == 0.0
    {
        sink.push(
            Diagnostic::error(s.span.clone(), t.key_path("scale"), "scale must not be 0")
                .expected("a non-zero number; raw = (value - offset) / scale"),
        );
    }
    let offset = t.opt_f64(sink, "offset");
    let metric = t.opt_str(sink, "metric");
    if let Some(m) = &metric
        && m.value.trim().is_empty()
    {
        sink.push(
            Diagnostic::error(m.span.clone(), t.key_path("metric"), "must not be empty")
                .expected("the name of a metric the edge node births, e.g. \"Setpoints/Speed\""),
        );
    }
    if let Some(a) = &address
        && let Some(dt) = &data_type
        && u32::from(a.value) + u32::from(dt.value.width()) > 65536
    {
        sink.push(
            Diagnostic::error(
                a.span.clone(),
                t.key_path("address"),
                format!(
                    "{} at address {} runs past the last register (65535)",
                    dt.value.a_name(),
                    a.value
                ),
            )
            .expected(format!(
                "an address <= {}",
                65536 - u32::from(dt.value.width())
            )),
        );
    }
    let span = t.span();
    t.finish(sink);
    TargetDecl {
        span,
        table,
        address,
        data_type,
        order,
        scale: scale.filter(|s| s.value != 0.0),
        offset,
        metric,
    }
}

/// `[guard]` as written; all defaults when absent.
#[derive(Debug, Clone, Default)]
pub struct GuardDecl {
    pub kill_switch: Option<Loc<bool>>,
    pub kill_tag: Option<Loc<String>>,
    pub watchdog: Option<WatchdogDecl>,
    pub advisory_expiry: Option<Loc<Duration>>,
}

/// `[guard].watchdog = { device, table, address, every }` as written.
#[derive(Debug, Clone)]
pub struct WatchdogDecl {
    pub device: Loc<String>,
    pub table: Loc<RegisterTable>,
    pub address: Loc<u16>,
    pub every: Option<Loc<Duration>>,
    pub span: Range<usize>,
}

pub(super) fn decode_guard(sink: &mut Sink, mut t: Table<'_, '_>) -> GuardDecl {
    let kill_switch = t.opt_bool(sink, "kill_switch");
    let kill_tag = t.opt_str(sink, "kill_tag");
    let watchdog = t
        .opt_table(sink, "watchdog")
        .and_then(|w| decode_watchdog(sink, w));
    let advisory_expiry = t.opt_duration(
        sink,
        "advisory_expiry",
        Duration::from_secs(1),
        Duration::from_secs(24 * 3600),
    );
    t.finish(sink);
    GuardDecl {
        kill_switch,
        kill_tag,
        watchdog,
        advisory_expiry,
    }
}

fn decode_watchdog(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<WatchdogDecl> {
    let device = t.req_str(sink, "device");
    let table = t
        .req_enum(sink, "table", RegisterTable::NAMES, RegisterTable::ALIASES)
        .map(|v| Loc::new(RegisterTable::from_name(v.value), v.span));
    if let Some(tb) = &table
        && !tb.value.is_writable()
    {
        sink.push(
            Diagnostic::error(
                tb.span.clone(),
                t.key_path("table"),
                format!(
                    "{} cannot be written, so it cannot carry a heartbeat",
                    tb.value.one()
                ),
            )
            .expected("table = \"holding\" (a counter) or \"coil\" (toggled)"),
        );
    }
    let address = t
        .req_int(sink, "address", 0, 65535)
        .map(|a| Loc::new(a.value as u16, a.span));
    let every = t.opt_duration(sink, "every", 10 * MS, Duration::from_secs(60));
    let span = t.span();
    t.finish(sink);
    Some(WatchdogDecl {
        device: device?,
        table: table.filter(|tb| tb.value.is_writable())?,
        address: address?,
        every,
        span,
    })
}

#[cfg(test)]
#[path = "setpoint_tests.rs"]
mod tests;
