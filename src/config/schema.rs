//! The typed plant config (schema v1) and its decoder.
//!
//! Everything here is plain data. Decoding checks each value where it stands
//! (types, ranges, enumerations, unknown keys); [`super::validate`] then checks
//! how values relate to each other (duplicates, overlaps, references).

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use toml::de::DeTable;

use super::decode::{Loc, Sink, Table};
use super::diagnostics::{Diagnostic, closest};

/// Current schema version. Files may omit `version`; it then means 1.
pub const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, Clone)]
pub struct PlantConfig {
    pub version: i64,
    pub plant: Plant,
    pub modbus: Vec<ModbusDevice>,
    pub mqtt: Vec<MqttSource>,
    pub sparkplug: Vec<super::sparkplug::SparkplugSource>,
    pub machines: Vec<Machine>,
    pub lines: Vec<Line>,
    pub models: Vec<Model>,
    pub setpoints: Vec<Setpoint>,
}

#[derive(Debug, Clone)]
pub struct Plant {
    pub name: String,
    /// Period of the twin's fixed tick.
    pub tick: Duration,
    /// Default age after which a tag without fresh data turns stale.
    pub stale_after: Duration,
}

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

    fn from_name(s: &str) -> Self {
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

    fn from_name(s: &str) -> Self {
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

    fn from_name(s: &str) -> Self {
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

#[derive(Debug, Clone, PartialEq)]
pub enum Broker {
    /// An MQTT broker inside the `twin` process (rumqttd), listening here.
    Embedded { listen: SocketAddr },
    /// An external broker at `mqtt://host:port`.
    Tcp { host: String, port: u16 },
}

/// Largest MQTT packet the protocol allows: a remaining length of
/// 268,435,455 bytes (MQTT 3.1.1, 2.2.3) plus the fixed header.
pub const MQTT_PROTOCOL_MAX_PACKET: usize = 268_435_455 + 5;

#[derive(Debug, Clone)]
pub struct MqttSource {
    pub name: Loc<String>,
    pub broker: Loc<Broker>,
    pub client_id: String,
    pub keep_alive: Duration,
    pub stale_after: Option<Duration>,
    /// false (the default): a persistent session, so QoS 1 messages published
    /// while the twin is away are queued by the broker and delivered on
    /// reconnect.
    pub clean_session: bool,
    /// Largest PUBLISH packet accepted, in bytes; bigger ones are counted and
    /// dropped.
    pub max_packet_size: usize,
    pub username: Option<Loc<String>>,
    pub password: Option<Secret>,
    /// Connect with TLS: the broker was written `mqtts://`.
    pub tls: bool,
    pub tls_files: TlsFiles,
    pub topics: Vec<TopicMap>,
}

/// Where a secret is read from at start-up. Never the config text itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Secret {
    /// The value of this environment variable.
    Env(Loc<String>),
    /// The contents of this file (one trailing newline removed); a relative
    /// path starts from the config file's folder.
    File(Loc<String>),
}

/// PEM files for `mqtts://`; relative paths start from the config file's
/// folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsFiles {
    /// CA certificates to trust; without it, the system's trust store.
    pub ca_file: Option<Loc<String>>,
    /// Client certificate and key, for brokers that authenticate clients by
    /// certificate. Both or neither.
    pub cert_file: Option<Loc<String>>,
    pub key_file: Option<Loc<String>>,
}

/// How a timestamp inside a payload is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
    /// An RFC 3339 string, e.g. "2026-11-28T16:07:16.803Z".
    Rfc3339,
}

impl TimeUnit {
    pub const NAMES: &'static [&'static str] = &["s", "ms", "us", "ns", "rfc3339"];

    fn from_name(s: &str) -> Self {
        match s {
            "s" => TimeUnit::Seconds,
            "us" => TimeUnit::Micros,
            "ns" => TimeUnit::Nanos,
            "rfc3339" => TimeUnit::Rfc3339,
            _ => TimeUnit::Millis,
        }
    }

    pub const ALIASES: &'static [(&'static str, &'static str)] = &[
        ("sec", "s"),
        ("seconds", "s"),
        ("epoch", "s"),
        ("unix", "s"),
        ("millis", "ms"),
        ("milliseconds", "ms"),
        ("epoch_ms", "ms"),
        ("micros", "us"),
        ("microseconds", "us"),
        ("nanos", "ns"),
        ("nanoseconds", "ns"),
        ("iso8601", "rfc3339"),
        ("iso", "rfc3339"),
        ("datetime", "rfc3339"),
    ];
}

/// A timestamp field of a JSON payload: the device's own measurement time.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeField {
    pub path: Vec<String>,
    pub unit: TimeUnit,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// The payload is a number as text, e.g. `21.5` (also `true`/`false`).
    Number,
    /// The payload is a JSON object; the value sits at this field path, and
    /// its timestamp, if configured, at `time`.
    Json {
        field: Vec<String>,
        time: Option<TimeField>,
    },
    /// The payload is a JSON array of samples, each carrying its own
    /// timestamp: `[{"ts": 1732800000123, "v": 1.2}, ...]`. `array` is the
    /// path to the array (empty: the payload is the array); `field` and
    /// `time` are paths inside each element.
    JsonSamples {
        array: Vec<String>,
        field: Vec<String>,
        time: TimeField,
    },
}

/// One level of a topic pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicLevel {
    Exact(String),
    /// `+`: any one level.
    Any,
    /// `#`: any number of levels, including none; always last.
    Rest,
    /// `{machine}`: any one level, which names the machine (and so the tag).
    Machine,
}

/// A topic as written in the config, split into levels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPattern {
    pub levels: Vec<TopicLevel>,
}

impl TopicPattern {
    /// The subscription filter: captures become `+`.
    pub fn filter(&self) -> String {
        self.levels
            .iter()
            .map(|l| match l {
                TopicLevel::Exact(s) => s.as_str(),
                TopicLevel::Any | TopicLevel::Machine => "+",
                TopicLevel::Rest => "#",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Whether the pattern is one concrete topic (no wildcard, no capture).
    pub fn is_exact(&self) -> bool {
        self.levels
            .iter()
            .all(|l| matches!(l, TopicLevel::Exact(_)))
    }

    /// Whether the pattern has a `{machine}` capture.
    pub fn captures_machine(&self) -> bool {
        self.levels.contains(&TopicLevel::Machine)
    }

    /// A concrete topic the pattern matches, for a publisher (the virtual
    /// plant): `{machine}` becomes `machine`, `+` and `#` become `fill`.
    pub fn instance(&self, machine: Option<&str>, fill: &str) -> String {
        self.levels
            .iter()
            .map(|l| match l {
                TopicLevel::Exact(s) => s.as_str(),
                TopicLevel::Machine => machine.unwrap_or(fill),
                TopicLevel::Any | TopicLevel::Rest => fill,
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// The capture a topic may name; see [`TopicPattern`].
pub const MACHINE_CAPTURE: &str = "{machine}";

#[derive(Debug, Clone)]
pub struct TopicMap {
    /// The topic as written (may hold `+`, `#` and `{machine}`).
    pub topic: Loc<String>,
    pub pattern: TopicPattern,
    /// The tag as written; with a `{machine}` capture it holds `{machine}`
    /// too, and declares one tag per entry of `machines`.
    pub tag: Loc<String>,
    /// With a `{machine}` capture: the machines whose topics are mapped.
    pub machines: Vec<Loc<String>>,
    /// With a `{machine}` capture: the role the tags play in their machine.
    pub role: Option<Loc<String>>,
    pub payload: Payload,
    pub qos: u8,
    pub scale: f64,
    pub offset: f64,
    pub unit: Option<String>,
    /// Overrides the source's (and the plant's) `stale_after` for this tag.
    pub stale_after: Option<Duration>,
}

impl TopicMap {
    /// The tags this entry declares, with the machine each one is for: one
    /// tag, or one per listed machine with a `{machine}` capture.
    pub fn tag_names(&self) -> Vec<(String, Option<&str>)> {
        if self.pattern.captures_machine() {
            self.machines
                .iter()
                .map(|m| {
                    (
                        self.tag.value.replace(MACHINE_CAPTURE, &m.value),
                        Some(m.value.as_str()),
                    )
                })
                .collect()
        } else {
            vec![(self.tag.value.clone(), None)]
        }
    }

    /// The role tags of a `{machine}` capture play: `role`, else the tag
    /// with `{machine}` and the separator after it removed
    /// (`{machine}.vibration` → `vibration`).
    pub fn capture_role(&self) -> Option<String> {
        if let Some(r) = &self.role {
            return Some(r.value.clone());
        }
        let rest = self
            .tag
            .value
            .replace(MACHINE_CAPTURE, "")
            .trim_matches(['.', '_', '-'])
            .to_string();
        (!rest.is_empty()).then_some(rest)
    }
}

#[derive(Debug, Clone)]
pub struct Machine {
    pub id: Loc<String>,
    pub kind: Loc<&'static str>,
    pub name: Option<String>,
    /// Role name → tag name, in file order.
    pub tags: Vec<(Loc<String>, Loc<String>)>,
}

pub const MACHINE_KINDS: &[&str] = &[
    "conveyor",
    "filler",
    "capper",
    "labeller",
    "inspector",
    "case_packer",
    "palletizer",
    "wrapper",
    "robot",
    "mixer",
    "pump",
    "oven",
    "press",
    "generic",
];

/// A production line: which machines it is made of, in flow order, and
/// optionally its geometry for the physics twin (`crate::physics`):
/// conveyors, the product, stations, photo-eyes, pushers and diverters.
/// Other transfers join the geometry later.
#[derive(Debug, Clone)]
pub struct Line {
    pub id: Loc<String>,
    pub name: Option<String>,
    pub machines: Vec<Loc<String>>,
    pub conveyors: Vec<Conveyor>,
    /// The product the line starts with: its first type (see `products`),
    /// with the arrival keys (`spawn_interval`, `infeed_counter_tag`) in it
    /// whichever table they were written in. Code that knows one product
    /// per line reads this.
    pub product: Option<Product>,
    /// Every product type (SKU) the line can run, in file order: the
    /// `[[lines.products]]` entries, or the single `[lines.product]` as one
    /// type (id `"product"`, code 1). A `Line` built by hand may leave it
    /// empty: [`Line::product_types`] then falls back to `product`.
    pub products: Vec<ProductType>,
    /// The tag that says which type runs now: a text value matches a type's
    /// `id`, a number its `code` (`[[lines.products]]` only).
    pub product_tag: Option<Loc<String>>,
    /// Whether the types come from `[[lines.products]]`, whose arrival keys
    /// are keys of the line table (for diagnostics' key paths).
    pub products_listed: bool,
    pub stations: Vec<Station>,
    pub photo_eyes: Vec<PhotoEye>,
    /// Reject pushers, each fired by a coil tag.
    pub pushers: Vec<Pusher>,
    /// Diverters onto branch conveyors, each fired by a coil tag.
    pub diverters: Vec<Diverter>,
    /// Named stretches of belt whose products the twin counts (buffers,
    /// accumulation sections), besides the per-conveyor counts.
    pub zones: Vec<Zone>,
    /// How far a measured photo-eye edge may be from the expected one and
    /// still be on time (`None`: the twin's default, 500 ms).
    pub residual_tolerance: Option<Duration>,
    /// How long an eye must read blocked while products should pass it
    /// before a jam or stuck-on verdict (`None`: 5 s).
    pub jam_after: Option<Duration>,
}

/// A place on a belt where each product stops for one cycle (fill, cap,
/// label, inspect).
#[derive(Debug, Clone)]
pub struct Station {
    pub id: Loc<String>,
    /// Id of the conveyor (in the same line) the station stands at.
    pub conveyor: Loc<String>,
    /// Metres along that conveyor's belt, from its start.
    pub position: Loc<f64>,
    pub cycle: StationCycle,
}

/// Where a station's cycle time comes from: exactly one of the two keys.
#[derive(Debug, Clone)]
pub enum StationCycle {
    /// `cycle_time_tag`: the tag's current value, in seconds.
    Tag(Loc<String>),
    /// `cycle_time`: a fixed duration.
    Fixed(Duration),
}

/// A named stretch of one conveyor's belt, `from` to `to` metres along it:
/// the twin reports how many products are on it (an accumulation section
/// before a station, a buffer).
#[derive(Debug, Clone)]
pub struct Zone {
    pub id: Loc<String>,
    pub conveyor: Loc<String>,
    pub from: Loc<f64>,
    pub to: Loc<f64>,
}

/// A photo-eye across a belt, bound to the digital input it drives.
#[derive(Debug, Clone)]
pub struct PhotoEye {
    pub id: Loc<String>,
    pub conveyor: Loc<String>,
    /// Metres along the conveyor's belt, from its start.
    pub position: Loc<f64>,
    /// The measured input tag (blocked = true).
    pub tag: Loc<String>,
}

/// A reject pusher beside a belt, bound to the PLC coil that fires it:
/// while the coil is on, its paddle strokes across the belt and pushes the
/// product in front of it off the far side (see `crate::physics`).
#[derive(Debug, Clone)]
pub struct Pusher {
    pub id: Loc<String>,
    pub conveyor: Loc<String>,
    /// Metres along the conveyor's belt, from its start, to the middle of
    /// the paddle.
    pub position: Loc<f64>,
    /// The coil (fired = true, or a number: non-zero is fired).
    pub coil_tag: Loc<String>,
}

/// A diverter on a belt, bound to the PLC coil that fires it: while the
/// coil is on, products reaching it are steered sideways off the belt onto
/// the branch conveyor `to` (a reject lane, a second packing line); while
/// off, they pass straight on (see `crate::physics`).
#[derive(Debug, Clone)]
pub struct Diverter {
    pub id: Loc<String>,
    /// The main conveyor the diverter stands on.
    pub conveyor: Loc<String>,
    /// Metres along the main conveyor's belt, from its start, to the middle
    /// of the diverter.
    pub position: Loc<f64>,
    /// The coil (fired = true, or a number: non-zero is fired).
    pub coil_tag: Loc<String>,
    /// Id of the branch conveyor (in the same line) products are sent to.
    pub to: Loc<String>,
}

/// A belt conveyor: a chain of straight segments, each starting where the
/// previous one ends. Plan coordinates: x east, y north, metres; headings in
/// degrees counter-clockwise from +x.
#[derive(Debug, Clone)]
pub struct Conveyor {
    pub id: Loc<String>,
    /// The tag carrying the belt's *measured* speed in m/s.
    pub speed_tag: Loc<String>,
    pub width: Loc<f64>,
    /// Height of the belt surface above the floor.
    pub height: f64,
    /// Plan position (x, y) where the first segment starts.
    pub origin: [f64; 2],
    pub segments: Vec<Segment>,
    /// For a zero-pressure accumulation conveyor: the length of its zones,
    /// metres from its start (`None`: a plain belt). See
    /// `physics::zones`.
    pub accumulation_zone: Option<Loc<f64>>,
}

/// One piece of a conveyor's centre line: straight, or a curve.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Along the centre line, metres; for a curve its arc length
    /// (`radius × turn`), located at its `radius` key.
    pub length: Loc<f64>,
    /// Direction of travel where the segment starts.
    pub heading: f64,
    /// `Some` for a curved segment.
    pub curve: Option<Curve>,
}

/// A curved belt (a curve conveyor module): the centre line is a circular
/// arc.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Curve {
    /// Radius of the centre line, metres.
    pub radius: f64,
    /// How far the direction of travel turns, degrees; positive turns left
    /// (counter-clockwise).
    pub turn: f64,
}

/// Most a curve's direction turns over one of the straight chords it is
/// laid out with (physics, plan drawing, geometry checks). 7.5° keeps a
/// chord's mid-point within `r (1 - cos 3.75°)` = 0.2 % of the radius of
/// the true arc (2 mm on a 1 m curve), and the joints between chords shallow
/// enough that a product rides over them.
pub const CHORD_DEG: f64 = 7.5;

impl Segment {
    /// Direction of travel where the segment ends.
    pub fn end_heading(&self) -> f64 {
        self.heading + self.curve.map_or(0.0, |c| c.turn)
    }
}

impl Conveyor {
    /// The centre line as straight pieces, each with the index of the
    /// configured segment it belongs to: a straight segment as it is, a
    /// curve as equal chords of at most [`CHORD_DEG`], each heading along
    /// the arc at its middle. A chord is given the arc's length over the
    /// number of chords (0.07 % longer than the true chord at 7.5°), so
    /// that a position along the belt means the same metres as in the
    /// config.
    pub fn chords(&self) -> Vec<(usize, Segment)> {
        let mut out = Vec::with_capacity(self.segments.len());
        for (k, s) in self.segments.iter().enumerate() {
            match s.curve {
                None => out.push((k, s.clone())),
                Some(c) => {
                    let n = (c.turn.abs() / CHORD_DEG).ceil().max(1.0);
                    let step = c.turn / n;
                    for i in 0..n as usize {
                        out.push((
                            k,
                            Segment {
                                length: Loc::new(s.length.value / n, s.length.span.clone()),
                                heading: s.heading + step * (i as f64 + 0.5),
                                curve: None,
                            },
                        ));
                    }
                }
            }
        }
        out
    }

    /// This conveyor with its curves laid out as straight chords
    /// ([`Conveyor::chords`]): what the physics and the drawing use.
    pub fn chorded(&self) -> Conveyor {
        Conveyor {
            segments: self.chords().into_iter().map(|(_, s)| s).collect(),
            ..self.clone()
        }
    }
}

/// A line's product: a box with its mass and friction, spawned at the start
/// of the line's first conveyor, and how products arrive. A line with
/// several types (`[[lines.products]]`) has its first type here, the
/// line-level arrival keys copied in (see [`Line::product`]).
#[derive(Debug, Clone)]
pub struct Product {
    /// Along the direction of travel.
    pub length: f64,
    pub width: f64,
    pub height: f64,
    pub mass: f64,
    pub friction: f64,
    /// The nominal interval between arrivals at the infeed. The twin
    /// spawns at it when there is no `infeed_counter_tag`; the what-if
    /// lookahead and the virtual plant use it as the arrival rate. `None`:
    /// products are only placed explicitly or by the counter.
    pub spawn_interval: Option<Duration>,
    /// A counter tag (products that entered the line): each increment puts
    /// a product at the start of the first conveyor. This is how the twin
    /// follows the real arrivals, so that its expected photo-eye states line
    /// up with the measured ones.
    pub infeed_counter_tag: Option<Loc<String>>,
}

/// One product type (SKU) of a line, `[[lines.products]]`: a line runs one
/// at a time and changes over between them, as the PLC's `product_tag`
/// says.
#[derive(Debug, Clone)]
pub struct ProductType {
    pub id: Loc<String>,
    /// The recipe number a numeric `product_tag` value names; its 1-based
    /// position when not given (then located at the `id`).
    pub code: Loc<i64>,
    /// Along the direction of travel.
    pub length: f64,
    pub width: f64,
    pub height: f64,
    pub mass: f64,
    pub friction: f64,
}

impl ProductType {
    /// The single `[lines.product]` as a type: id `"product"`, code 1.
    pub fn from_product(p: &Product, span: Range<usize>) -> Self {
        ProductType {
            id: Loc::new("product".to_string(), span.clone()),
            code: Loc::new(1, span),
            length: p.length,
            width: p.width,
            height: p.height,
            mass: p.mass,
            friction: p.friction,
        }
    }

    /// `arrivals`' arrival keys with this type's body.
    pub fn to_product(&self, arrivals: &Product) -> Product {
        Product {
            length: self.length,
            width: self.width,
            height: self.height,
            mass: self.mass,
            friction: self.friction,
            ..arrivals.clone()
        }
    }
}

impl Line {
    /// Every product type of the line, in config order: `products`, or the
    /// lone `product` of a line built without them; empty without a
    /// product.
    pub fn product_types(&self) -> Vec<ProductType> {
        if self.products.is_empty() {
            self.product
                .iter()
                .map(|p| ProductType::from_product(p, self.id.span.clone()))
                .collect()
        } else {
            self.products.clone()
        }
    }

    /// The largest length, width and height over the types (each its own
    /// maximum), for what must fit every product.
    pub fn product_envelope(&self) -> Option<(f64, f64, f64)> {
        self.product_types().iter().fold(None, |acc, t| {
            let (l, w, h) = acc.unwrap_or((0.0, 0.0, 0.0));
            Some((l.max(t.length), w.max(t.width), h.max(t.height)))
        })
    }
}

/// An ONNX model and the tags it reads. Run by the ML stage (later issue).
#[derive(Debug, Clone)]
pub struct Model {
    pub id: Loc<String>,
    pub path: Loc<String>,
    pub machine: Option<Loc<String>>,
    pub inputs: Vec<Loc<String>>,
}

/// A tag the twin may write back, with its hard bounds. Write-back itself
/// (guard, modes, audit) is a later issue; the bounds are checked now.
#[derive(Debug, Clone)]
pub struct Setpoint {
    pub tag: Loc<String>,
    pub min: Loc<f64>,
    pub max: Loc<f64>,
    pub max_step: Option<Loc<f64>>,
    pub enabled: Option<Loc<bool>>,
}

const MS: Duration = Duration::from_millis(1);
const HOUR: Duration = Duration::from_secs(3600);

pub(super) fn decode(
    sink: &mut Sink,
    root: &DeTable<'_>,
    root_span: std::ops::Range<usize>,
) -> Option<PlantConfig> {
    let mut t = Table::new(root, root_span.clone(), "");
    let version = t
        .opt_int(sink, "version", 1, SCHEMA_VERSION)
        .map(|v| v.value)
        .unwrap_or(SCHEMA_VERSION);

    let plant = match t.opt_table(sink, "plant") {
        Some(p) => decode_plant(sink, p),
        None => {
            if t.key_span("plant").is_none() {
                sink.push(
                    Diagnostic::error(0..0, "plant", "missing required section `[plant]`")
                        .expected("a `[plant]` table with at least `name`")
                        .help("add `[plant]` with `name = \"...\"` and `tick = \"100ms\"`"),
                );
            }
            None
        }
    };

    let mut modbus = Vec::new();
    let mut mqtt = Vec::new();
    let mut sparkplug = Vec::new();
    if let Some(mut sources) = t.opt_table(sink, "sources") {
        for dev in sources.opt_table_array(sink, "modbus") {
            modbus.extend(decode_modbus(sink, dev));
        }
        for src in sources.opt_table_array(sink, "mqtt") {
            mqtt.extend(decode_mqtt(sink, src));
        }
        for src in sources.opt_table_array(sink, "sparkplug") {
            sparkplug.extend(super::sparkplug::decode(sink, src));
        }
        sources.finish(sink);
    }

    let machines = t
        .opt_table_array(sink, "machines")
        .into_iter()
        .filter_map(|m| decode_machine(sink, m))
        .collect();
    let lines = t
        .opt_table_array(sink, "lines")
        .into_iter()
        .filter_map(|l| decode_line(sink, l))
        .collect();
    let models = t
        .opt_table_array(sink, "models")
        .into_iter()
        .filter_map(|m| decode_model(sink, m))
        .collect();
    let setpoints = t
        .opt_table_array(sink, "setpoints")
        .into_iter()
        .filter_map(|s| decode_setpoint(sink, s))
        .collect();
    t.finish(sink);

    Some(PlantConfig {
        version,
        plant: plant?,
        modbus,
        mqtt,
        sparkplug,
        machines,
        lines,
        models,
        setpoints,
    })
}

fn decode_plant(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Plant> {
    let name = t.req_str(sink, "name");
    let tick = t
        .opt_duration(sink, "tick", MS, Duration::from_secs(60))
        .map(|d| d.value)
        .unwrap_or(Duration::from_millis(100));
    let stale_after = t
        .opt_duration(sink, "stale_after", MS, HOUR)
        .map(|d| d.value)
        .unwrap_or(Duration::from_secs(5));
    t.finish(sink);
    Some(Plant {
        name: name?.value,
        tick,
        stale_after,
    })
}

fn decode_modbus(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<ModbusDevice> {
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
    let order = t
        .opt_enum_aliased(sink, "order", WordOrder::NAMES, WordOrder::ALIASES)
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

pub(super) fn check_tag_name(sink: &mut Sink, path: &str, tag: &Loc<String>) {
    if let Some(bad) = tag
        .value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        sink.push(
            Diagnostic::error(
                tag.span.clone(),
                path,
                format!("tag name \"{}\" contains {:?}", tag.value, bad),
            )
            .expected("letters, digits, `_`, `.` and `-`, e.g. \"filler.motor_current\""),
        );
    }
}

fn decode_mqtt(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<MqttSource> {
    let name = t.req_str(sink, "name");
    let broker_raw = t.req_str(sink, "broker");
    let listen = t.opt_str(sink, "listen");
    let client_id = t.opt_str(sink, "client_id");
    if let Some(c) = &client_id
        && c.value.trim().is_empty()
    {
        sink.push(
            Diagnostic::error(c.span.clone(), t.key_path("client_id"), "must not be empty")
                .expected("a client id unique on the broker, e.g. \"twin-cell1\"")
                .help("leave `client_id` out to use \"twin-\" followed by the source name"),
        );
    }
    let keep_alive = t
        .opt_duration(sink, "keep_alive", Duration::from_secs(1), HOUR)
        .map(|d| d.value)
        .unwrap_or(Duration::from_secs(10));
    let stale_after = t
        .opt_duration(sink, "stale_after", MS, HOUR)
        .map(|d| d.value);
    let clean_session = t.opt_bool(sink, "clean_session").is_some_and(|b| b.value);
    let max_packet_size = t
        .opt_int(
            sink,
            "max_packet_size",
            128,
            MQTT_PROTOCOL_MAX_PACKET as i64,
        )
        .map_or(256 * 1024, |v| v.value as usize);
    let username = t.opt_str(sink, "username");
    reject_plain_password(sink, &mut t);
    let password_env = t.opt_str(sink, "password_env");
    let password_file = t.opt_str(sink, "password_file");
    let tls_files = TlsFiles {
        ca_file: t.opt_str(sink, "ca_file"),
        cert_file: t.opt_str(sink, "cert_file"),
        key_file: t.opt_str(sink, "key_file"),
    };
    let mut tls = false;
    let broker = broker_raw.and_then(|b| {
        let path = t.key_path("broker");
        let (broker, is_tls) = parse_broker_url(
            sink,
            &path,
            &b,
            listen.as_ref(),
            &t.key_path("listen"),
            true,
        )?;
        tls = is_tls;
        Some(Loc::new(broker, b.span))
    });
    if let (Some(l), Some(b)) = (&listen, &broker)
        && !matches!(b.value, Broker::Embedded { .. })
    {
        sink.push(
            Diagnostic::error(
                l.span.clone(),
                t.key_path("listen"),
                "`listen` only applies to broker = \"embedded\"",
            )
            .help("remove `listen`, or set `broker = \"embedded\"`"),
        );
    }
    let connection_keys = [
        ("username", &username),
        ("password_env", &password_env),
        ("password_file", &password_file),
        ("ca_file", &tls_files.ca_file),
        ("cert_file", &tls_files.cert_file),
        ("key_file", &tls_files.key_file),
    ];
    match broker.as_ref().map(|b| (&b.value, tls)) {
        Some((Broker::Embedded { .. }, _)) => {
            for (key, v) in connection_keys {
                if let Some(v) = v {
                    sink.push(
                        Diagnostic::error(
                            v.span.clone(),
                            t.key_path(key),
                            format!("`{key}` does not apply to broker = \"embedded\""),
                        )
                        .help(format!(
                            "the embedded broker has neither authentication nor TLS; remove `{key}`, or name an external broker"
                        )),
                    );
                }
            }
        }
        Some((Broker::Tcp { .. }, false)) => {
            for (key, v) in &connection_keys[3..] {
                if let Some(v) = v {
                    sink.push(
                        Diagnostic::error(
                            v.span.clone(),
                            t.key_path(key),
                            format!("`{key}` only applies to an mqtts:// broker"),
                        )
                        .help("write the broker as \"mqtts://host:port\" to connect with TLS"),
                    );
                }
            }
            if let Some(p) = password_env.as_ref().or(password_file.as_ref()) {
                sink.push(
                    Diagnostic::warning(
                        p.span.clone(),
                        t.key_path(if password_env.is_some() {
                            "password_env"
                        } else {
                            "password_file"
                        }),
                        "the password is sent unencrypted over mqtt://",
                    )
                    .help("connect with \"mqtts://host:port\" unless the network is trusted"),
                );
            }
        }
        _ => {}
    }
    match (&tls_files.cert_file, &tls_files.key_file) {
        (Some(c), None) => sink.push(
            Diagnostic::error(
                c.span.clone(),
                t.key_path("cert_file"),
                "`cert_file` needs `key_file`",
            )
            .expected("both cert_file and key_file (PEM), or neither"),
        ),
        (None, Some(k)) => sink.push(
            Diagnostic::error(
                k.span.clone(),
                t.key_path("key_file"),
                "`key_file` needs `cert_file`",
            )
            .expected("both cert_file and key_file (PEM), or neither"),
        ),
        _ => {}
    }
    let password = match (password_env, password_file) {
        (Some(_), Some(f)) => {
            sink.push(
                Diagnostic::error(
                    f.span.clone(),
                    t.key_path("password_file"),
                    "give either `password_env` or `password_file`, not both",
                )
                .help("remove one of them"),
            );
            None
        }
        (Some(e), None) => {
            check_env_name(sink, &t.key_path("password_env"), &e);
            Some(Secret::Env(e))
        }
        (None, Some(f)) => {
            if f.value.trim().is_empty() {
                sink.push(
                    Diagnostic::error(
                        f.span.clone(),
                        t.key_path("password_file"),
                        "must not be empty",
                    )
                    .expected("the path of a file holding the password"),
                );
            }
            Some(Secret::File(f))
        }
        (None, None) => None,
    };
    if let Some(p) = &password
        && username.is_none()
    {
        let (Secret::Env(l) | Secret::File(l)) = p;
        sink.push(
            Diagnostic::error(
                l.span.clone(),
                t.key_path("username"),
                "a password needs a `username`",
            )
            .expected("username = \"...\" next to the password"),
        );
    }
    let topics: Vec<TopicMap> = t
        .opt_table_array(sink, "topics")
        .into_iter()
        .filter_map(|m| decode_topic(sink, m))
        .collect();
    t.finish(sink);
    let (Some(name), Some(broker)) = (name, broker) else {
        for tp in &topics {
            sink.broken_tags
                .extend(tp.tag_names().into_iter().map(|(tag, _)| tag));
        }
        return None;
    };
    Some(MqttSource {
        client_id: client_id
            .map(|c| c.value)
            .filter(|c| !c.trim().is_empty())
            .unwrap_or_else(|| format!("twin-{}", name.value)),
        name,
        broker,
        keep_alive,
        stale_after,
        clean_session,
        max_packet_size,
        username,
        password,
        tls,
        tls_files,
        topics,
    })
}

/// A literal `password` is refused: plant files travel through version
/// control and support tickets. It is asked for only when present, so it
/// never shows up among the keys an unknown key is compared with.
fn reject_plain_password(sink: &mut Sink, t: &mut Table<'_, '_>) {
    let Some(span) = t.key_span("password") else {
        return;
    };
    // Marks the key as known; its type does not matter, so any type error
    // goes to a scratch sink.
    let _ = t.opt_str(&mut Sink::default(), "password");
    sink.push(
        Diagnostic::error(
            span,
            t.key_path("password"),
            "a password in plain text is not accepted in the config",
        )
        .expected("password_env = \"VARIABLE\" or password_file = \"path\"")
        .help("put the password in an environment variable, or in a file only the twin's user can read, and name it here"),
    );
}

fn check_env_name(sink: &mut Sink, path: &str, name: &Loc<String>) {
    let v = name.value.trim();
    let bad = if v.is_empty() {
        Some("must not be empty".to_string())
    } else {
        v.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
            .map(|c| {
                format!(
                    "environment variable name \"{}\" contains {c:?}",
                    name.value
                )
            })
    };
    if let Some(msg) = bad {
        let help = v.strip_prefix('$').map(|rest| {
            format!(
                "write the name without `$`: \"{}\"",
                rest.trim_matches(['{', '}'])
            )
        });
        sink.push(
            Diagnostic::error(name.span.clone(), path, msg)
                .expected("the name of an environment variable, e.g. \"MQTT_PASSWORD\"")
                .maybe_help(help),
        );
    }
}

pub(super) fn parse_broker(
    sink: &mut Sink,
    path: &str,
    b: &Loc<String>,
    listen: Option<&Loc<String>>,
    listen_path: &str,
) -> Option<Broker> {
    parse_broker_url(sink, path, b, listen, listen_path, false).map(|(broker, _)| broker)
}

/// [`parse_broker`], also accepting `mqtts://` when `allow_tls`; says
/// whether the broker is to be reached over TLS.
fn parse_broker_url(
    sink: &mut Sink,
    path: &str,
    b: &Loc<String>,
    listen: Option<&Loc<String>>,
    listen_path: &str,
    allow_tls: bool,
) -> Option<(Broker, bool)> {
    if b.value == "embedded" {
        let listen_addr = match listen {
            None => SocketAddr::from(([127, 0, 0, 1], 1883)),
            Some(l) => match l.value.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    sink.push(
                        Diagnostic::error(
                            l.span.clone(),
                            listen_path,
                            format!("invalid listen address \"{}\"", l.value),
                        )
                        .expected("ip:port, e.g. \"127.0.0.1:1883\""),
                    );
                    return None;
                }
            },
        };
        return Some((
            Broker::Embedded {
                listen: listen_addr,
            },
            false,
        ));
    }
    let expected = if allow_tls {
        "\"embedded\", \"mqtt://host:port\" or \"mqtts://host:port\""
    } else {
        "\"embedded\" or \"mqtt://host:port\""
    };
    let (rest, tls, default_port) = if let Some(rest) = b.value.strip_prefix("mqtt://") {
        (rest, false, 1883)
    } else if let Some(rest) = b.value.strip_prefix("mqtts://")
        && allow_tls
    {
        (rest, true, 8883)
    } else {
        let help = if !allow_tls
            && (b.value.starts_with("mqtts://") || b.value.starts_with("ssl://"))
        {
            "TLS brokers are not supported by this version yet; use a plain mqtt:// listener on a trusted network"
                .to_string()
        } else if let Some(rest) = b.value.strip_prefix("ssl://") {
            format!("write \"mqtts://{rest}\"")
        } else if let Some(rest) = b.value.strip_prefix("tcp://") {
            // MQTT over plain TCP is what `tcp://` means in most clients
            // (Paho, for one); we spell it mqtt://.
            format!("write \"mqtt://{rest}\"")
        } else if b.value.contains("://") {
            if allow_tls {
                "only the mqtt:// and mqtts:// schemes are supported".to_string()
            } else {
                "only the mqtt:// scheme is supported".to_string()
            }
        } else {
            format!("write \"mqtt://{}\"", b.value)
        };
        sink.push(
            Diagnostic::error(
                b.span.clone(),
                path,
                format!("invalid broker \"{}\"", b.value),
            )
            .expected(expected)
            .help(help),
        );
        return None;
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) => (h, p),
            Err(_) => {
                sink.push(
                    Diagnostic::error(
                        b.span.clone(),
                        path,
                        format!("invalid port in broker \"{}\"", b.value),
                    )
                    .expected(expected),
                );
                return None;
            }
        },
        None => (rest, default_port),
    };
    if host.is_empty() {
        sink.push(
            Diagnostic::error(
                b.span.clone(),
                path,
                format!("missing host in broker \"{}\"", b.value),
            )
            .expected(expected),
        );
        return None;
    }
    Some((
        Broker::Tcp {
            host: host.to_string(),
            port,
        },
        tls,
    ))
}

/// Split a topic into levels, checking MQTT's rules for wildcards and ours
/// for captures.
fn parse_topic(sink: &mut Sink, path: &str, topic: &Loc<String>) -> Option<TopicPattern> {
    let mut levels = Vec::new();
    let mut problems = Vec::new();
    let raw: Vec<&str> = topic.value.split('/').collect();
    for (i, level) in raw.iter().enumerate() {
        let l = match *level {
            "+" => TopicLevel::Any,
            "#" if i + 1 == raw.len() => TopicLevel::Rest,
            "#" => {
                problems.push(("`#` must be the last level of a topic".to_string(), None));
                continue;
            }
            MACHINE_CAPTURE if levels.contains(&TopicLevel::Machine) => {
                problems.push((
                    "`{machine}` may appear only once in a topic".to_string(),
                    None,
                ));
                continue;
            }
            MACHINE_CAPTURE => TopicLevel::Machine,
            s if s.starts_with('{') && s.ends_with('}') => {
                let name = &s[1..s.len() - 1];
                problems.push((
                    format!("unknown capture `{s}` in topic"),
                    Some(match closest(name, ["machine"]) {
                        Some(_) => "did you mean `{machine}`?".to_string(),
                        None => "`{machine}` is the only capture; use `+` to match any level"
                            .to_string(),
                    }),
                ));
                continue;
            }
            s if s.contains(['+', '#']) => {
                problems.push((
                    format!("wildcard inside the topic level \"{s}\""),
                    Some(
                        "`+` and `#` must stand alone between slashes, e.g. \"plant/+/vibration\""
                            .to_string(),
                    ),
                ));
                continue;
            }
            s if s.contains(['{', '}']) => {
                problems.push((
                    format!("capture inside the topic level \"{s}\""),
                    Some("`{machine}` must stand alone between slashes, e.g. \"plant/{machine}/vibration\"".to_string()),
                ));
                continue;
            }
            s => TopicLevel::Exact(s.to_string()),
        };
        levels.push(l);
    }
    if problems.is_empty() {
        return Some(TopicPattern { levels });
    }
    for (msg, help) in problems {
        sink.push(
            Diagnostic::error(topic.span.clone(), path, msg)
                .expected("a topic; `+` matches one level, `#` the rest, `{machine}` one level naming a machine")
                .maybe_help(help),
        );
    }
    None
}

/// A dot-separated path into a JSON document, or a diagnostic.
fn field_path(sink: &mut Sink, path: &str, f: &Loc<String>) -> Option<Vec<String>> {
    let segs: Vec<String> = f.value.split('.').map(str::to_string).collect();
    if segs.iter().any(|s| s.is_empty()) {
        sink.push(
            Diagnostic::error(
                f.span.clone(),
                path,
                format!("invalid field path \"{}\"", f.value),
            )
            .expected("dot-separated keys, e.g. \"data.rms\" or \"values.0\""),
        );
        return None;
    }
    Some(segs)
}

fn decode_topic(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<TopicMap> {
    let topic = t.req_str(sink, "topic");
    let pattern = topic
        .as_ref()
        .and_then(|tp| parse_topic(sink, &t.key_path("topic"), tp));
    let tag = t.req_str(sink, "tag");
    let machines = t.opt_str_array(sink, "machines");
    let role = t.opt_str(sink, "role");
    let format = t.opt_enum(sink, "payload", &["number", "json", "json_samples"]);
    let field = t.opt_str(sink, "field");
    let time_field = t.opt_str(sink, "time_field");
    let time_unit = t.opt_enum_aliased(sink, "time_unit", TimeUnit::NAMES, TimeUnit::ALIASES);
    let array_field = t.opt_str(sink, "array_field");
    let qos = t
        .opt_int(sink, "qos", 0, 1)
        .map(|q| q.value as u8)
        .unwrap_or(1);
    let scale = match t.opt_f64(sink, "scale") {
        Some(s) if s.value == 0.0 => {
            sink.push(
                Diagnostic::error(s.span.clone(), t.key_path("scale"), "scale must not be 0")
                    .expected("a non-zero number; engineering value = payload * scale + offset"),
            );
            1.0
        }
        Some(s) => s.value,
        None => 1.0,
    };
    let offset = t.opt_f64(sink, "offset").map(|v| v.value).unwrap_or(0.0);
    let unit = t.opt_str(sink, "unit").map(|u| u.value);
    let stale_after = t
        .opt_duration(sink, "stale_after", MS, HOUR)
        .map(|d| d.value);

    // The `{machine}` capture, the tag template and the machines list must
    // agree, so that every tag the entry declares is known at check time.
    let mut capture_ok = true;
    let captures = pattern.as_ref().is_some_and(|p| p.captures_machine());
    if let Some(tag) = &tag {
        let templated = tag.value.contains(MACHINE_CAPTURE);
        if !templated {
            check_tag_name(sink, &t.key_path("tag"), tag);
        } else if let Some(bad) = tag
            .value
            .replace(MACHINE_CAPTURE, "")
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        {
            // The template's own characters; each expanded name is checked
            // again once the machine ids are known.
            sink.push(
                Diagnostic::error(
                    tag.span.clone(),
                    t.key_path("tag"),
                    format!("tag name \"{}\" contains {:?}", tag.value, bad),
                )
                .expected(
                    "letters, digits, `_`, `.`, `-` and `{machine}`, e.g. \"{machine}.vibration\"",
                ),
            );
        }
        if pattern.is_some() && templated && !captures {
            capture_ok = false;
            sink.push(
                Diagnostic::error(
                    tag.span.clone(),
                    t.key_path("tag"),
                    "the tag uses `{machine}`, but the topic has no `{machine}` level",
                )
                .expected("a topic with a `{machine}` level, e.g. \"plant/{machine}/vibration\""),
            );
        }
        if captures && !templated {
            capture_ok = false;
            sink.push(
                Diagnostic::error(
                    tag.span.clone(),
                    t.key_path("tag"),
                    "the topic captures `{machine}`, but the tag does not use it",
                )
                .expected("a tag naming the machine, e.g. \"{machine}.vibration\"")
                .help(
                    "to feed one tag from every machine's topic, write `+` instead of `{machine}`",
                ),
            );
        }
    }
    match (&machines, captures) {
        (None, true) => {
            capture_ok = false;
            sink.push(
                Diagnostic::error(
                    topic.as_ref().map_or(t.span(), |tp| tp.span.clone()),
                    t.key_path("machines"),
                    "missing required key `machines` for a topic with a `{machine}` level",
                )
                .expected("the ids of the machines whose topics are mapped, e.g. machines = [\"filler\", \"capper\"]")
                .help("the list lets `twin check` know every tag the topic declares"),
            );
        }
        (Some(list), true) if list.is_empty() => {
            capture_ok = false;
            sink.push(
                Diagnostic::error(
                    t.key_span("machines").unwrap_or(t.span()),
                    t.key_path("machines"),
                    "must name at least one machine",
                )
                .expected("the ids of the machines whose topics are mapped, e.g. machines = [\"filler\", \"capper\"]"),
            );
        }
        (Some(list), true) => {
            for (k, m) in list.iter().enumerate() {
                if list[..k].iter().any(|o| o.value == m.value) {
                    capture_ok = false;
                    sink.push(
                        Diagnostic::error(
                            m.span.clone(),
                            format!("{}[{k}]", t.key_path("machines")),
                            format!("machine \"{}\" is listed twice", m.value),
                        )
                        .help("remove the repeated entry"),
                    );
                }
            }
        }
        (Some(_), false) if pattern.is_some() => {
            sink.push(
                Diagnostic::error(
                    t.key_span("machines").unwrap_or(t.span()),
                    t.key_path("machines"),
                    "`machines` only applies to a topic with a `{machine}` level",
                )
                .help("write the topic as e.g. \"plant/{machine}/vibration\" and the tag as \"{machine}.vibration\", or remove `machines`"),
            );
        }
        _ => {}
    }
    if let Some(r) = &role
        && pattern.is_some()
        && !captures
    {
        sink.push(
            Diagnostic::error(
                r.span.clone(),
                t.key_path("role"),
                "`role` only applies to a topic with a `{machine}` level",
            )
            .help("bind the tag to a role under `[machines.tags]` instead"),
        );
    }
    if let Some(r) = &role
        && r.value.trim().is_empty()
    {
        capture_ok = false;
        sink.push(
            Diagnostic::error(r.span.clone(), t.key_path("role"), "must not be empty")
                .expected("a role name such as \"vibration\""),
        );
    }
    if captures
        && role.is_none()
        && let Some(tag) = &tag
        && tag
            .value
            .replace(MACHINE_CAPTURE, "")
            .trim_matches(['.', '_', '-'])
            .is_empty()
    {
        capture_ok = false;
        sink.push(
            Diagnostic::error(
                tag.span.clone(),
                t.key_path("role"),
                "missing key `role`: the tag names only the machine",
            )
            .expected("a role for the tags in their machine, e.g. role = \"vibration\""),
        );
    }

    // An unknown `payload` is reported already; checking the payload keys
    // against a guess would only add noise.
    let payload_unknown = format.is_none() && t.key_span("payload").is_some();
    let kind = format.as_ref().map_or("number", |f| f.value);
    let path_of = |sink: &mut Sink, key: &str, f: &Option<Loc<String>>| {
        f.as_ref()
            .map(|f| field_path(sink, &t.key_path(key), f).ok_or(()))
            .transpose()
    };
    let field_p = path_of(sink, "field", &field);
    let time_p = path_of(sink, "time_field", &time_field);
    let array_p = path_of(sink, "array_field", &array_field);
    let unit_of_time = time_unit
        .as_ref()
        .map_or(TimeUnit::Millis, |u| TimeUnit::from_name(u.value));
    let not_for = |sink: &mut Sink, key: &'static str, v: &Option<Loc<String>>, only: &str| {
        if let Some(v) = v {
            sink.push(
                Diagnostic::error(
                    v.span.clone(),
                    t.key_path(key),
                    format!("`{key}` only applies to {only}"),
                )
                .help(format!("remove `{key}`, or set the payload it belongs to")),
            );
        }
    };
    let missing = |sink: &mut Sink, key: &str, expected: &str| {
        sink.push(
            Diagnostic::error(
                t.span(),
                t.key_path(key),
                format!("missing required key `{key}` for payload = \"{kind}\""),
            )
            .expected(expected.to_string()),
        );
    };
    if time_field.is_none()
        && kind != "json_samples"
        && let Some(u) = &time_unit
    {
        sink.push(
            Diagnostic::error(
                u.span.clone(),
                t.key_path("time_unit"),
                "`time_unit` only applies with `time_field`",
            )
            .help("add `time_field`, or remove `time_unit`"),
        );
    }
    let payload = match kind {
        _ if payload_unknown => None,
        "json" => {
            not_for(
                sink,
                "array_field",
                &array_field,
                "payload = \"json_samples\"",
            );
            if field.is_none() {
                missing(
                    sink,
                    "field",
                    "a field path such as \"rms\" or \"data.value\"",
                );
            }
            match (field_p, time_p) {
                (Ok(Some(field)), Ok(time)) => Some(Payload::Json {
                    field,
                    time: time.map(|path| TimeField {
                        path,
                        unit: unit_of_time,
                    }),
                }),
                _ => None,
            }
        }
        "json_samples" => {
            if field.is_none() {
                missing(
                    sink,
                    "field",
                    "the value's field inside each sample, e.g. \"v\"",
                );
            }
            if time_field.is_none() {
                missing(
                    sink,
                    "time_field",
                    "the timestamp's field inside each sample, e.g. \"ts\"",
                );
            }
            match (field_p, time_p, array_p) {
                (Ok(Some(field)), Ok(Some(path)), Ok(array)) => Some(Payload::JsonSamples {
                    array: array.unwrap_or_default(),
                    field,
                    time: TimeField {
                        path,
                        unit: unit_of_time,
                    },
                }),
                _ => None,
            }
        }
        _ => {
            let json = "payload = \"json\" or \"json_samples\"";
            if let Some(f) = &field {
                sink.push(
                    Diagnostic::error(
                        f.span.clone(),
                        t.key_path("field"),
                        format!("`field` only applies to {json}"),
                    )
                    .help("add `payload = \"json\"` or remove `field`"),
                );
            }
            not_for(sink, "time_field", &time_field, json);
            not_for(
                sink,
                "array_field",
                &array_field,
                "payload = \"json_samples\"",
            );
            (field.is_none() && time_field.is_none() && array_field.is_none())
                .then_some(Payload::Number)
        }
    };
    t.finish(sink);
    match (topic, pattern, tag, payload) {
        (Some(topic), Some(pattern), Some(tag), Some(payload)) if capture_ok => Some(TopicMap {
            topic,
            pattern,
            tag,
            machines: machines.unwrap_or_default(),
            role,
            payload,
            qos,
            scale,
            offset,
            unit,
            stale_after,
        }),
        (_, _, tag, _) => {
            // The tags it meant to declare: the template itself, and each
            // expansion that can be made.
            if let Some(tag) = tag {
                for m in machines.iter().flatten() {
                    sink.broken_tags
                        .insert(tag.value.replace(MACHINE_CAPTURE, &m.value));
                }
                sink.broken_tags.insert(tag.value);
            }
            None
        }
    }
}

fn decode_machine(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Machine> {
    let t_span = t.span();
    let id = t.req_str(sink, "id");
    let kind = t.req_enum(sink, "kind", MACHINE_KINDS, &[]);
    let name = t.opt_str(sink, "name").map(|n| n.value);
    let tags = t
        .opt_table(sink, "tags")
        .map(|tt| tt.str_entries(sink))
        .unwrap_or_default();
    t.finish(sink);
    // A bad `kind` is reported above; keep the machine anyway so that lines
    // and models naming it are not reported as unknown as well.
    let kind = kind.unwrap_or_else(|| Loc::new("generic", t_span));
    Some(Machine {
        id: id?,
        kind,
        name,
        tags,
    })
}

fn decode_line(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Line> {
    let id = t.req_str(sink, "id");
    let name = t.opt_str(sink, "name").map(|n| n.value);
    let machines = t.opt_str_array(sink, "machines").unwrap_or_default();
    let conveyors = t
        .opt_table_array(sink, "conveyors")
        .into_iter()
        .filter_map(|c| decode_conveyor(sink, c))
        .collect();
    let single_span = t.key_span("product");
    let product = t
        .opt_table(sink, "product")
        .and_then(|p| decode_product(sink, p));
    let has_list = t.key_span("products").is_some();
    let listed: Vec<ProductType> = t
        .opt_table_array(sink, "products")
        .into_iter()
        .enumerate()
        .filter_map(|(k, p)| decode_product_type(sink, p, k))
        .collect();
    let (product, products, product_tag, products_listed) =
        decode_arrivals(sink, &mut t, product, single_span, listed, has_list);
    let stations = t
        .opt_table_array(sink, "stations")
        .into_iter()
        .filter_map(|s| decode_station(sink, s))
        .collect();
    let photo_eyes = t
        .opt_table_array(sink, "photo_eyes")
        .into_iter()
        .filter_map(|e| decode_photo_eye(sink, e))
        .collect();
    let pushers = t
        .opt_table_array(sink, "pushers")
        .into_iter()
        .filter_map(|p| decode_pusher(sink, p))
        .collect();
    let diverters = t
        .opt_table_array(sink, "diverters")
        .into_iter()
        .filter_map(|d| decode_diverter(sink, d))
        .collect();
    let zones = t
        .opt_table_array(sink, "zones")
        .into_iter()
        .filter_map(|z| decode_zone(sink, z))
        .collect();
    let residual_tolerance = t
        .opt_duration(sink, "residual_tolerance", MS, Duration::from_secs(60))
        .map(|d| d.value);
    let jam_after = t
        .opt_duration(sink, "jam_after", Duration::from_millis(100), HOUR)
        .map(|d| d.value);
    t.finish(sink);
    Some(Line {
        id: id?,
        name,
        machines,
        conveyors,
        product,
        products,
        product_tag,
        products_listed,
        stations,
        photo_eyes,
        pushers,
        diverters,
        zones,
        residual_tolerance,
        jam_after,
    })
}

/// Whether `from < to` and both are on the belt is checked by `validate`,
/// which knows the conveyor's length.
fn decode_zone(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Zone> {
    let id = t.req_str(sink, "id");
    let conveyor = t.req_str(sink, "conveyor");
    let from = t.req_f64(sink, "from");
    let to = t.req_f64(sink, "to");
    t.finish(sink);
    Some(Zone {
        id: id?,
        conveyor: conveyor?,
        from: from?,
        to: to?,
    })
}

/// The position and whether it is on the belt are checked by `validate`,
/// which knows the conveyor's length.
fn decode_station(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Station> {
    let t_span = t.span();
    let id = t.req_str(sink, "id");
    let conveyor = t.req_str(sink, "conveyor");
    let position = t.req_f64(sink, "position");
    let tag = t.opt_str(sink, "cycle_time_tag");
    let fixed = t.opt_duration(sink, "cycle_time", MS, HOUR);
    let fixed_given = t.key_span("cycle_time").is_some();
    let cycle = match (tag, fixed) {
        (Some(tag), None) if !fixed_given => Some(StationCycle::Tag(tag)),
        (None, Some(d)) => Some(StationCycle::Fixed(d.value)),
        // A `cycle_time` that did not decode is reported already.
        (None, None) if fixed_given => None,
        (Some(_), _) => {
            sink.push(
                Diagnostic::error(
                    t.key_span("cycle_time").unwrap_or(t_span.clone()),
                    t.key_path("cycle_time"),
                    "a station has both `cycle_time_tag` and `cycle_time`",
                )
                .expected("exactly one of `cycle_time_tag` (a tag, in seconds) or `cycle_time` (a fixed duration)")
                .help("keep `cycle_time_tag` when the PLC reports the cycle time, `cycle_time` when it is fixed"),
            );
            None
        }
        (None, _) => {
            sink.push(
                Diagnostic::error(
                    t_span,
                    t.key_path("cycle_time_tag"),
                    "a station needs a cycle time",
                )
                .expected("exactly one of `cycle_time_tag` (a tag, in seconds) or `cycle_time` (a fixed duration)")
                .help("add `cycle_time = \"2s\"` for a fixed cycle"),
            );
            None
        }
    };
    t.finish(sink);
    // A broken cycle is reported above and refuses the file; keeping the
    // station (with a placeholder cycle) keeps the key paths of the
    // stations after it right in `validate`'s messages.
    Some(Station {
        id: id?,
        conveyor: conveyor?,
        position: position?,
        cycle: cycle.unwrap_or(StationCycle::Fixed(Duration::ZERO)),
    })
}

fn decode_photo_eye(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<PhotoEye> {
    let id = t.req_str(sink, "id");
    let conveyor = t.req_str(sink, "conveyor");
    let position = t.req_f64(sink, "position");
    let tag = t.req_str(sink, "tag");
    t.finish(sink);
    Some(PhotoEye {
        id: id?,
        conveyor: conveyor?,
        position: position?,
        tag: tag?,
    })
}

/// Like a photo-eye: the position and whether it is on the belt, and the
/// coil tag, are checked by `validate`.
fn decode_pusher(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Pusher> {
    let id = t.req_str(sink, "id");
    let conveyor = t.req_str(sink, "conveyor");
    let position = t.req_f64(sink, "position");
    let coil_tag = t.req_str(sink, "coil_tag");
    t.finish(sink);
    Some(Pusher {
        id: id?,
        conveyor: conveyor?,
        position: position?,
        coil_tag: coil_tag?,
    })
}

/// Like a pusher: the position, the coil tag and the branch conveyor (that
/// it exists and starts beside the belt) are checked by `validate`.
fn decode_diverter(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Diverter> {
    let id = t.req_str(sink, "id");
    let conveyor = t.req_str(sink, "conveyor");
    let position = t.req_f64(sink, "position");
    let coil_tag = t.req_str(sink, "coil_tag");
    let to = t.req_str(sink, "to");
    t.finish(sink);
    Some(Diverter {
        id: id?,
        conveyor: conveyor?,
        position: position?,
        coil_tag: coil_tag?,
        to: to?,
    })
}

/// A dimension: a number > 0, reported at its value when it is not.
fn positive(
    sink: &mut Sink,
    t: &Table<'_, '_>,
    key: &'static str,
    v: Option<Loc<f64>>,
    unit: &str,
) -> Option<Loc<f64>> {
    let v = v?;
    if v.value > 0.0 {
        return Some(v);
    }
    sink.push(
        Diagnostic::error(
            v.span.clone(),
            t.key_path(key),
            format!("{key} must be positive, found {}", v.value),
        )
        .expected(format!("a number > 0, in {unit}")),
    );
    None
}

fn decode_conveyor(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Conveyor> {
    let t_span = t.span();
    let id = t.req_str(sink, "id");
    let speed_tag = t.req_str(sink, "speed_tag");
    let width = t.req_f64(sink, "width");
    let width = positive(sink, &t, "width", width, "metres");
    let height = t.opt_f64(sink, "height");
    let height = match height {
        Some(h) => positive(sink, &t, "height", Some(h), "metres").map(|h| h.value),
        None => Some(0.8),
    };
    let origin = match t.opt_f64_array(sink, "origin") {
        None => Some([0.0, 0.0]),
        Some(xy) => match xy.as_slice() {
            [x, y] => Some([*x, *y]),
            _ => {
                if let Some(span) = t.key_span("origin") {
                    sink.push(
                        Diagnostic::error(
                            span,
                            t.key_path("origin"),
                            format!("origin has {} numbers", xy.len()),
                        )
                        .expected("two numbers: the plan position [x, y] in metres"),
                    );
                }
                None
            }
        },
    };
    let zone = t.opt_f64(sink, "accumulation_zone");
    let zone_ok =
        zone.is_none() || positive(sink, &t, "accumulation_zone", zone.clone(), "metres").is_some();
    let tables = t.opt_table_array(sink, "segments");
    let n_tables = tables.len();
    // A curve without a `heading` continues the direction the previous
    // segment ends in (a straight one keeps its default, east).
    let mut end_heading = 0.0;
    let segments: Vec<Segment> = tables
        .into_iter()
        .filter_map(|s| decode_segment(sink, s))
        .map(|(mut s, heading_given)| {
            if s.curve.is_some() && !heading_given {
                s.heading = end_heading;
            }
            end_heading = s.end_heading();
            s
        })
        .collect();
    if n_tables == 0 {
        sink.push(
            Diagnostic::error(
                t.key_span("segments").unwrap_or(t_span),
                t.key_path("segments"),
                "a conveyor needs at least one segment",
            )
            .expected("one or more `[[lines.conveyors.segments]]` tables, each with a `length`")
            .help("add `segments = [{ length = 5.0 }]` for a straight 5 m belt"),
        );
    }
    t.finish(sink);
    // A broken segment is reported where it is; the conveyor is dropped so
    // that the physics never sees a partial belt.
    if segments.len() != n_tables || n_tables == 0 || !zone_ok {
        return None;
    }
    Some(Conveyor {
        id: id?,
        speed_tag: speed_tag?,
        width: width?,
        height: height?,
        origin: origin?,
        segments,
        accumulation_zone: zone,
    })
}

/// A segment, and whether its `heading` was given.
fn decode_segment(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<(Segment, bool)> {
    let heading = t.opt_f64(sink, "heading");
    let radius = t.opt_f64(sink, "radius");
    let turn = t.opt_f64(sink, "turn");
    let heading_given = heading.is_some();
    let heading = heading.map_or(0.0, |h| h.value);
    if radius.is_none() && turn.is_none() {
        let length = t.req_f64(sink, "length");
        let length = positive(sink, &t, "length", length, "metres");
        t.finish(sink);
        return Some((
            Segment {
                length: length?,
                heading,
                curve: None,
            },
            heading_given,
        ));
    }
    // A curve: `radius` and `turn`; its length follows from them.
    let mut ok = true;
    if let Some(span) = t.key_span("length") {
        sink.push(
            Diagnostic::error(
                span,
                t.key_path("length"),
                "a curved segment has `length` as well as `radius`/`turn`",
            )
            .expected("either `length` (a straight segment) or `radius` and `turn` (a curve)")
            .help("drop `length`: a curve's length is its radius times its turn in radians"),
        );
        ok = false;
    }
    let _ = t.opt_f64(sink, "length");
    for (key, v) in [("radius", &radius), ("turn", &turn)] {
        if v.is_none() {
            sink.push(
                Diagnostic::error(
                    t.span(),
                    t.key_path(key),
                    format!("a curved segment needs `{key}`"),
                )
                .expected("`radius` (metres, of the centre line) and `turn` (degrees, positive turns left)")
                .help("e.g. `{ radius = 0.8, turn = 90 }` for a quarter turn to the left"),
            );
            ok = false;
        }
    }
    let radius = positive(sink, &t, "radius", radius, "metres");
    let turn = match turn {
        Some(tv) if tv.value != 0.0 && tv.value.abs() <= 180.0 => Some(tv.value),
        Some(tv) => {
            sink.push(
                Diagnostic::error(
                    tv.span.clone(),
                    t.key_path("turn"),
                    format!("turn {} is not a curve", tv.value),
                )
                .expected("degrees, not 0, between -180 and 180 (positive turns left)")
                .help("a straight piece is a segment with `length`"),
            );
            None
        }
        None => None,
    };
    t.finish(sink);
    let (radius, turn) = (radius?, turn?);
    if !ok {
        return None;
    }
    Some((
        Segment {
            length: Loc::new(radius.value * turn.abs().to_radians(), radius.span.clone()),
            heading,
            curve: Some(Curve {
                radius: radius.value,
                turn,
            }),
        },
        heading_given,
    ))
}

/// The line-level keys of a line's products: `spawn_interval`,
/// `infeed_counter_tag` and `product_tag` belong to the line with
/// `[[lines.products]]`, and are refused on it otherwise. Returns the
/// normalised `(product, products, product_tag, products_listed)` (see
/// [`Line::product`]).
fn decode_arrivals(
    sink: &mut Sink,
    t: &mut Table<'_, '_>,
    single: Option<Product>,
    single_span: Option<Range<usize>>,
    listed: Vec<ProductType>,
    has_list: bool,
) -> (Option<Product>, Vec<ProductType>, Option<Loc<String>>, bool) {
    let spawn_interval = t.opt_duration(sink, "spawn_interval", MS, HOUR);
    let infeed_counter_tag = t.opt_str(sink, "infeed_counter_tag");
    let product_tag = t.opt_str(sink, "product_tag");
    if !has_list {
        // A single `[lines.product]` (or none): the arrival keys are its own.
        let on_line = [
            (
                "spawn_interval",
                spawn_interval.as_ref().map(|d| d.span.clone()),
            ),
            (
                "infeed_counter_tag",
                infeed_counter_tag.as_ref().map(|d| d.span.clone()),
            ),
        ];
        for (key, span) in on_line {
            let Some(span) = span else { continue };
            sink.push(
                Diagnostic::error(
                    span,
                    t.key_path(key),
                    format!("`{key}` on the line is for a line with `[[lines.products]]`"),
                )
                .expected(format!("`{key}` in `[lines.product]`"))
                .help(format!(
                    "move `{key}` into `[lines.product]`, or list the types as `[[lines.products]]`"
                )),
            );
        }
        if let Some(tag) = &product_tag {
            sink.push(
                Diagnostic::error(
                    tag.span.clone(),
                    t.key_path("product_tag"),
                    "`product_tag` chooses between product types, and this line has one product"
                        .to_string(),
                )
                .expected("`product_tag` only with `[[lines.products]]`")
                .help("list the line's types as `[[lines.products]]`, or remove `product_tag`"),
            );
        }
        let products = single
            .iter()
            .map(|p| ProductType::from_product(p, single_span.clone().unwrap_or_default()))
            .collect();
        return (single, products, None, false);
    }
    if let Some(span) = single_span {
        sink.push(
            Diagnostic::error(
                span,
                t.key_path("product"),
                "a line has either `[lines.product]` or `[[lines.products]]`, not both"
                    .to_string(),
            )
            .expected("one product table: `[lines.product]` for one type, `[[lines.products]]` for several")
            .help("make this product a `[[lines.products]]` entry with an `id`, or remove the list"),
        );
    }
    let arrivals = Product {
        length: 0.0,
        width: 0.0,
        height: 0.0,
        mass: 0.0,
        friction: 0.0,
        spawn_interval: spawn_interval.map(|d| d.value),
        infeed_counter_tag,
    };
    let first = listed.first().map(|p| p.to_product(&arrivals));
    (first, listed, product_tag, true)
}

/// One `[[lines.products]]` entry, the `k`-th (0-based).
fn decode_product_type(sink: &mut Sink, mut t: Table<'_, '_>, k: usize) -> Option<ProductType> {
    let id = t.req_str(sink, "id");
    let code = t.opt_int(sink, "code", 0, i64::from(u32::MAX));
    let body = decode_body(sink, &mut t);
    t.finish(sink);
    let id = id?;
    let code = code.unwrap_or_else(|| Loc::new(k as i64 + 1, id.span.clone()));
    let (length, width, height, mass, friction) = body?;
    Some(ProductType {
        id,
        code,
        length,
        width,
        height,
        mass,
        friction,
    })
}

/// A product's box, mass and friction: `(length, width, height, mass,
/// friction)`.
fn decode_body(sink: &mut Sink, t: &mut Table<'_, '_>) -> Option<(f64, f64, f64, f64, f64)> {
    let mut dim = |t: &mut Table<'_, '_>, key: &'static str, unit: &str| {
        let v = t.req_f64(sink, key);
        positive(sink, t, key, v, unit).map(|v| v.value)
    };
    let length = dim(t, "length", "metres");
    let width = dim(t, "width", "metres");
    let height = dim(t, "height", "metres");
    let mass = dim(t, "mass", "kilograms");
    let friction = match t.opt_f64(sink, "friction") {
        None => Some(0.6),
        Some(f) if f.value >= 0.0 => Some(f.value),
        Some(f) => {
            sink.push(
                Diagnostic::error(
                    f.span.clone(),
                    t.key_path("friction"),
                    format!("friction must not be negative, found {}", f.value),
                )
                .expected("a friction coefficient >= 0, typically 0.2 to 1.0"),
            );
            None
        }
    };
    Some((length?, width?, height?, mass?, friction?))
}

fn decode_product(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Product> {
    let body = decode_body(sink, &mut t);
    let spawn_interval = t
        .opt_duration(sink, "spawn_interval", MS, HOUR)
        .map(|d| d.value);
    let infeed_counter_tag = t.opt_str(sink, "infeed_counter_tag");
    t.finish(sink);
    let (length, width, height, mass, friction) = body?;
    Some(Product {
        length,
        width,
        height,
        mass,
        friction,
        spawn_interval,
        infeed_counter_tag,
    })
}

fn decode_model(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Model> {
    let id = t.req_str(sink, "id");
    let path = t.req_str(sink, "path");
    let machine = t.opt_str(sink, "machine");
    let inputs = t.opt_str_array(sink, "inputs").unwrap_or_default();
    t.finish(sink);
    Some(Model {
        id: id?,
        path: path?,
        machine,
        inputs,
    })
}

fn decode_setpoint(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Setpoint> {
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
    t.finish(sink);
    Some(Setpoint {
        tag: tag?,
        min: min?,
        max: max?,
        max_step,
        enabled,
    })
}
