//! `[[sources.modbus]]`: Modbus TCP devices and the registers read from
//! them (table, address, data type, byte/word order, scaling, sentinels).

use std::time::Duration;

use super::decode::{HOUR, Loc, MS, Sink, Table, check_tag_name};
use super::diagnostics::Diagnostic;

#[derive(Debug, Clone)]
pub struct ModbusDevice {
    pub name: Loc<String>,
    /// `host:port` as written; resolved when connecting, not when checking.
    pub address: Loc<String>,
    pub unit_id: u8,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub stale_after: Option<Duration>,
    pub framing: ModbusFraming,
    /// Unmapped addresses a read may bridge to merge two ranges into one
    /// request. 0 (the default) never reads an address the map does not name.
    pub max_gap: u16,
    /// Requests sent before the first reply (pipelining). 1 is the safe default.
    pub max_in_flight: u16,
    /// Largest read in registers (protocol limit 125); some devices take fewer.
    pub max_read_registers: u16,
    /// Largest read in bits (protocol limit 2000).
    pub max_read_bits: u16,
    pub registers: Vec<Register>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RegisterTable {
    Coil,
    Discrete,
    Input,
    Holding,
}

impl RegisterTable {
    pub const NAMES: &'static [&'static str] = &["coil", "discrete", "input", "holding"];

    pub(super) fn from_name(s: &str) -> Self {
        match s {
            "coil" => RegisterTable::Coil,
            "discrete" => RegisterTable::Discrete,
            "input" => RegisterTable::Input,
            _ => RegisterTable::Holding,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RegisterTable::Coil => "coil",
            RegisterTable::Discrete => "discrete",
            RegisterTable::Input => "input",
            RegisterTable::Holding => "holding",
        }
    }

    /// What one entry of the table is called, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            RegisterTable::Coil => "coil",
            RegisterTable::Discrete => "discrete input",
            RegisterTable::Input => "input register",
            RegisterTable::Holding => "holding register",
        }
    }

    /// [`RegisterTable::noun`] with its article: "a coil", "an input register".
    pub fn one(self) -> String {
        let noun = self.noun();
        let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        format!("{article} {noun}")
    }

    /// Other spellings integrators bring from PLC tools and Modbus docs, for
    /// the did-you-mean.
    pub const ALIASES: &'static [(&'static str, &'static str)] = &[
        ("coils", "coil"),
        ("discrete_input", "discrete"),
        ("discrete_inputs", "discrete"),
        ("input_register", "input"),
        ("input_registers", "input"),
        ("holding_register", "holding"),
        ("holding_registers", "holding"),
    ];

    /// Coils and discrete inputs hold bits; the other two hold 16-bit words.
    pub fn is_bits(self) -> bool {
        matches!(self, RegisterTable::Coil | RegisterTable::Discrete)
    }

    /// Tables a client may write to (needed for setpoints).
    pub fn is_writable(self) -> bool {
        matches!(self, RegisterTable::Coil | RegisterTable::Holding)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U16,
    I16,
    U32,
    I32,
    F32,
    U64,
    I64,
    F64,
    /// ASCII text over `length` registers, two characters per register.
    String,
}

impl DataType {
    pub const NAMES: &'static [&'static str] = &[
        "bool", "u16", "i16", "u32", "i32", "f32", "u64", "i64", "f64", "string",
    ];

    pub(super) fn from_name(s: &str) -> Self {
        match s {
            "bool" => DataType::Bool,
            "u16" => DataType::U16,
            "i16" => DataType::I16,
            "u32" => DataType::U32,
            "i32" => DataType::I32,
            "f32" => DataType::F32,
            "u64" => DataType::U64,
            "i64" => DataType::I64,
            "string" => DataType::String,
            _ => DataType::F64,
        }
    }

    pub fn name(self) -> &'static str {
        DataType::NAMES[self as usize]
    }

    /// The name with its article, for messages: "a u32", "an f32".
    pub fn a_name(self) -> String {
        let name = self.name();
        let article = if name.starts_with(['i', 'f']) {
            "an"
        } else {
            "a"
        };
        format!("{article} {name}")
    }

    /// Other spellings of the types, from IEC 61131-3 and common tools, for
    /// the did-you-mean (`type = "float"` means `f32`).
    pub const ALIASES: &'static [(&'static str, &'static str)] = &[
        ("boolean", "bool"),
        ("uint", "u16"),
        ("uint16", "u16"),
        ("word", "u16"),
        ("int", "i16"),
        ("int16", "i16"),
        ("short", "i16"),
        ("udint", "u32"),
        ("uint32", "u32"),
        ("dword", "u32"),
        ("dint", "i32"),
        ("int32", "i32"),
        ("float", "f32"),
        ("float32", "f32"),
        ("real", "f32"),
        ("ulint", "u64"),
        ("uint64", "u64"),
        ("lint", "i64"),
        ("int64", "i64"),
        ("double", "f64"),
        ("float64", "f64"),
        ("lreal", "f64"),
        ("str", "string"),
        ("ascii", "string"),
        ("text", "string"),
    ];

    /// Number of 16-bit registers (or bits, for bit tables) the value spans;
    /// for strings see [`Register::width`].
    pub fn width(self) -> u16 {
        match self {
            DataType::Bool | DataType::U16 | DataType::I16 | DataType::String => 1,
            DataType::U32 | DataType::I32 | DataType::F32 => 2,
            DataType::U64 | DataType::I64 | DataType::F64 => 4,
        }
    }
}

/// Byte and word order of a multi-byte value, named by where the bytes of
/// the big-endian value `ABCD` end up on the wire. Applies to 64-bit values by
/// extension (CDAB = words reversed, BADC = bytes swapped in each word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum WordOrder {
    /// Big-endian bytes and words: the Modbus default.
    #[default]
    Abcd,
    /// Little-endian bytes and words.
    Dcba,
    /// Big-endian words, bytes swapped within each word.
    Badc,
    /// Little-endian word order, big-endian bytes within words (the common
    /// "word swap" of many PLCs).
    Cdab,
}

impl WordOrder {
    pub const NAMES: &'static [&'static str] = &["ABCD", "DCBA", "BADC", "CDAB"];

    pub(super) fn from_name(s: &str) -> Self {
        match s {
            "DCBA" => WordOrder::Dcba,
            "BADC" => WordOrder::Badc,
            "CDAB" => WordOrder::Cdab,
            _ => WordOrder::Abcd,
        }
    }

    /// Other spellings seen in device manuals, for the did-you-mean.
    pub const ALIASES: &'static [(&'static str, &'static str)] = &[
        ("abcd", "ABCD"),
        ("dcba", "DCBA"),
        ("badc", "BADC"),
        ("cdab", "CDAB"),
        ("big", "ABCD"),
        ("big_endian", "ABCD"),
        ("little", "DCBA"),
        ("little_endian", "DCBA"),
        ("word_swap", "CDAB"),
        ("byte_swap", "BADC"),
    ];

    /// Whether bytes are swapped within each 16-bit word.
    pub fn swaps_bytes(self) -> bool {
        matches!(self, WordOrder::Dcba | WordOrder::Badc)
    }

    /// Whether the order of the 16-bit words is reversed.
    pub fn reverses_words(self) -> bool {
        matches!(self, WordOrder::Dcba | WordOrder::Cdab)
    }
}

/// How requests are framed on the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ModbusFraming {
    /// Modbus TCP (MBAP header).
    #[default]
    Tcp,
    /// RTU frames with CRC, tunnelled over TCP (serial gateways).
    RtuOverTcp,
}

#[derive(Debug, Clone)]
pub struct Register {
    pub tag: Loc<String>,
    pub table: RegisterTable,
    pub address: Loc<u16>,
    pub data_type: DataType,
    /// For `bool` in a register table: the bit (0 = least significant).
    pub bit: Option<u8>,
    /// For `string`: the number of registers.
    pub length: u16,
    pub order: WordOrder,
    /// Raw values that mean "no valid value" (sentinels such as 0xFFFF or
    /// -32768); they make the tag bad with reason `invalid_value`.
    pub invalid: Vec<f64>,
    /// Overrides the device's poll interval for this register.
    pub poll_interval: Option<Duration>,
    /// Engineering value = raw * scale + offset.
    pub scale: f64,
    pub offset: f64,
    pub unit: Option<String>,
    /// Overrides the device's (and the plant's) `stale_after` for this tag.
    pub stale_after: Option<Duration>,
}

impl Register {
    /// Registers (or bits) the value occupies.
    pub fn width(&self) -> u16 {
        if self.data_type == DataType::String {
            self.length
        } else {
            self.data_type.width()
        }
    }
}

pub(super) fn decode_modbus(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<ModbusDevice> {
    let name = t.req_str(sink, "name");
    let address = t.req_str(sink, "address");
    if let Some(a) = &address {
        check_host_port(sink, &t.key_path("address"), a);
    }
    let unit_id = t
        .opt_int(sink, "unit_id", 0, 255)
        .map(|v| v.value as u8)
        .unwrap_or(1);
    let poll_interval = t
        .opt_duration(sink, "poll_interval", Duration::from_millis(10), HOUR)
        .map(|d| d.value)
        .unwrap_or(Duration::from_secs(1));
    let timeout = t
        .opt_duration(
            sink,
            "timeout",
            Duration::from_millis(10),
            Duration::from_secs(60),
        )
        .map(|d| d.value)
        .unwrap_or(Duration::from_secs(1));
    let stale_after = t
        .opt_duration(sink, "stale_after", MS, HOUR)
        .map(|d| d.value);
    let framing = match t.opt_enum(sink, "framing", &["tcp", "rtu_over_tcp"]) {
        Some(f) if f.value == "rtu_over_tcp" => ModbusFraming::RtuOverTcp,
        _ => ModbusFraming::Tcp,
    };
    let max_gap = t
        .opt_int(sink, "max_gap", 0, 124)
        .map_or(0, |v| v.value as u16);
    let max_in_flight = t
        .opt_int(sink, "max_in_flight", 1, 64)
        .map_or(1, |v| v.value as u16);
    if framing == ModbusFraming::RtuOverTcp
        && max_in_flight > 1
        && let Some(span) = t.key_span("max_in_flight")
    {
        sink.push(
            Diagnostic::error(
                span,
                t.key_path("max_in_flight"),
                "RTU framing has no transaction ids, so only one request can be in flight",
            )
            .expected("max_in_flight = 1 with framing = \"rtu_over_tcp\""),
        );
    }
    let max_read_registers = t
        .opt_int(sink, "max_read_registers", 1, 125)
        .map_or(125, |v| v.value as u16);
    let max_read_bits = t
        .opt_int(sink, "max_read_bits", 1, 2000)
        .map_or(2000, |v| v.value as u16);
    let registers: Vec<Register> = t
        .opt_table_array(sink, "registers")
        .into_iter()
        .filter_map(|r| decode_register(sink, r))
        .collect();
    t.finish(sink);
    let (Some(name), Some(address)) = (name, address) else {
        sink.broken_tags
            .extend(registers.into_iter().map(|r| r.tag.value));
        return None;
    };
    Some(ModbusDevice {
        name,
        address,
        unit_id,
        poll_interval,
        timeout,
        stale_after,
        framing,
        max_gap,
        max_in_flight,
        max_read_registers,
        max_read_bits,
        registers,
    })
}

fn check_host_port(sink: &mut Sink, path: &str, a: &Loc<String>) {
    let ok = a
        .value
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !ok {
        sink.push(
            Diagnostic::error(
                a.span.clone(),
                path,
                format!("invalid address \"{}\"", a.value),
            )
            .expected("host:port, e.g. \"192.168.10.21:502\" or \"plc-7.local:502\""),
        );
    }
}

/// A word swap on a value of one register, or any order on a bit, reads
/// exactly as ABCD would. Copying `order = "CDAB"` from a float onto a u16
/// is a common slip, and the user meant something by it: say that it does
/// nothing rather than let the value look decoded as asked. A warning, since
/// the file means what it meant before.
fn check_order_fits(
    sink: &mut Sink,
    path: &str,
    loc: &Loc<&str>,
    order: WordOrder,
    dt: DataType,
    table: Option<RegisterTable>,
) {
    let bits = table.filter(|t| t.is_bits());
    let why = if let Some(t) = bits {
        Some(format!(
            "{} is a single bit: no byte or word order applies",
            t.one()
        ))
    } else if matches!(dt, DataType::U16 | DataType::I16 | DataType::Bool)
        && order == WordOrder::Cdab
    {
        Some(format!(
            "{} fits in one register: CDAB swaps words, so it reads as ABCD",
            dt.a_name()
        ))
    } else {
        None
    };
    if let Some(why) = why {
        sink.push(
            Diagnostic::warning(
                loc.span.clone(),
                path,
                format!("order \"{}\" has no effect: {why}", loc.value),
            )
            .help(if bits.is_some() {
                "remove `order`".to_string()
            } else {
                "remove `order`, or use \"BADC\" if the device swaps the two bytes of the register"
                    .to_string()
            }),
        );
    }
}

fn decode_register(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Register> {
    let tag = t.req_str(sink, "tag");
    if let Some(tag) = &tag {
        check_tag_name(sink, &t.key_path("tag"), tag);
    }
    let table = t
        .req_enum(sink, "table", RegisterTable::NAMES, RegisterTable::ALIASES)
        .map(|v| RegisterTable::from_name(&v));
    let address = t
        .req_int(sink, "address", 0, 65535)
        .map(|a| Loc::new(a.value as u16, a.span));
    // An unknown type is reported and then read as the default, so the
    // register still counts as declared and nothing cascades from it.
    let type_loc = t.opt_enum_aliased(sink, "type", DataType::NAMES, DataType::ALIASES);
    let scale = t.opt_f64(sink, "scale");
    let offset = t.opt_f64(sink, "offset").map(|v| v.value).unwrap_or(0.0);
    let unit = t.opt_str(sink, "unit").map(|u| u.value);
    let stale_after = t
        .opt_duration(sink, "stale_after", MS, HOUR)
        .map(|d| d.value);
    let bit = t.opt_int(sink, "bit", 0, 15);
    let length = t.opt_int(sink, "length", 1, 125);
    let order_loc = t.opt_enum_aliased(sink, "order", WordOrder::NAMES, WordOrder::ALIASES);
    let order = order_loc
        .as_ref()
        .map_or(WordOrder::Abcd, |o| WordOrder::from_name(o.value));
    let invalid = t.opt_f64_array(sink, "invalid").unwrap_or_default();
    let poll_interval = t
        .opt_duration(sink, "poll_interval", Duration::from_millis(10), HOUR)
        .map(|d| d.value);
    // A `bit` implies a boolean read out of a register.
    let type_loc = match (&type_loc, &bit) {
        (None, Some(b)) => Some(Loc::new("bool", b.span.clone())),
        _ => type_loc,
    };
    let data_type = match (table, &type_loc) {
        (Some(table), Some(ty)) => {
            let dt = DataType::from_name(ty.value);
            if table.is_bits() && dt != DataType::Bool {
                sink.push(
                    Diagnostic::error(
                        ty.span.clone(),
                        t.key_path("type"),
                        format!(
                            "{} holds a single bit, so its type cannot be {}",
                            table.one(),
                            dt.name()
                        ),
                    )
                    .expected("type = \"bool\" (or leave `type` out)")
                    .help(format!(
                        "to read {} use table = \"holding\" or \"input\"",
                        dt.a_name()
                    )),
                );
                // Reported; read it as the bit it is so nothing cascades.
                Some(DataType::Bool)
            } else {
                Some(dt)
            }
        }
        (Some(table), None) if table.is_bits() => Some(DataType::Bool),
        (Some(_), None) => Some(DataType::U16),
        (None, _) => None,
    };
    if let Some(b) = &bit {
        let bad = match (table, data_type) {
            (Some(tb), _) if tb.is_bits() => Some(format!(
                "{} is already a single bit; `bit` selects a bit inside a register",
                tb.one()
            )),
            (_, Some(dt)) if dt != DataType::Bool => Some(format!(
                "`bit` reads one bit as a bool, but type is {}",
                dt.name()
            )),
            _ => None,
        };
        if let Some(msg) = bad {
            sink.push(
                Diagnostic::error(b.span.clone(), t.key_path("bit"), msg)
                    .expected("`bit` only with type = \"bool\" on a holding or input register"),
            );
        }
    }
    let length = match (data_type, length) {
        (Some(DataType::String), Some(l)) => l.value as u16,
        (Some(DataType::String), None) => {
            sink.push(
                Diagnostic::error(
                    t.span(),
                    t.key_path("length"),
                    "missing required key `length` for type = \"string\"",
                )
                .expected(
                    "the number of registers the string spans (two characters each), 1..=125",
                ),
            );
            1
        }
        (_, Some(l)) => {
            sink.push(
                Diagnostic::error(
                    l.span.clone(),
                    t.key_path("length"),
                    "`length` only applies to type = \"string\"",
                )
                .help("remove `length`; numeric types have a fixed width"),
            );
            0
        }
        (_, None) => 0,
    };
    if data_type == Some(DataType::String) {
        for key in ["scale", "offset", "invalid"] {
            if let Some(span) = t.key_span(key) {
                sink.push(
                    Diagnostic::error(
                        span,
                        t.key_path(key),
                        format!("`{key}` does not apply to a string"),
                    )
                    .help(format!("remove `{key}`")),
                );
            }
        }
    }
    if let (Some(o), Some(dt)) = (&order_loc, data_type) {
        check_order_fits(sink, &t.key_path("order"), o, order, dt, table);
    }
    if let Some(s) = &scale
        && s.value == 0.0
    {
        sink.push(
            Diagnostic::error(s.span.clone(), t.key_path("scale"), "scale must not be 0")
                .expected("a non-zero number; engineering value = raw * scale + offset"),
        );
    }
    t.finish(sink);
    match (tag, table, address, data_type) {
        (Some(tag), Some(table), Some(address), Some(data_type)) => Some(Register {
            tag,
            table,
            address,
            data_type,
            bit: bit.map(|b| b.value as u8),
            length,
            order,
            invalid,
            poll_interval,
            scale: scale.map(|s| s.value).unwrap_or(1.0),
            offset,
            unit,
            stale_after,
        }),
        (tag, ..) => {
            sink.broken_tags.extend(tag.map(|t| t.value));
            None
        }
    }
}
