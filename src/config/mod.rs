//! Plant config: the first stage of the data flow.
//!
//! A plant file (TOML) is parsed into a spanned tree, decoded into the typed
//! schema, one module per section ([`plant`] walks them all), and
//! cross-checked ([`validate`]). Every problem becomes a
//! located [`Diagnostic`]; nothing here panics on input, and nothing here
//! touches the plant. The result, [`LoadedConfig`], is what every other stage
//! is built from.

/// Defines an enum of config words with its list of names, for the decoder's
/// did-you-mean and for messages.
macro_rules! config_words {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $v),+ }

        impl $name {
            /// Every spelling the config accepts, in documentation order.
            pub const NAMES: &'static [&'static str] = &[$($s),+];

            /// The word as written in the config and in events.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$v => $s),+ }
            }

            pub fn from_name(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$v),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod conveyor;
pub(crate) mod decode;
pub mod diagnostics;
mod geometry;
pub mod guard;
pub mod interlock;
pub mod knob;
pub mod layout;
pub mod limits;
mod line;
mod machine;
pub mod ml;
mod modbus;
mod model;
mod mqtt;
pub mod optimise;
mod plan;
mod plant;
mod product;
mod recorded;
mod setpoint;
pub mod sparkplug;
mod topic;
pub mod upstream;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub use conveyor::*;
pub use decode::Loc;
pub use diagnostics::{ConfigReport, Diagnostic, Severity, SourceFile};
pub use line::*;
pub use machine::*;
pub use ml::*;
pub use modbus::*;
pub use model::*;
pub use mqtt::*;
pub use plant::*;
pub use product::*;
pub use recorded::*;
pub use setpoint::*;
pub use topic::*;

/// Index of a tag in the [`TagTable`]; stable for the life of a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TagId(pub u32);

impl TagId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Where a tag's samples come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagSource {
    Modbus {
        device: usize,
        register: usize,
    },
    Mqtt {
        source: usize,
        topic: usize,
    },
    Sparkplug {
        source: usize,
        metric: usize,
    },
    /// Declared in `[[sources.recorded]]`: only recordings provide it.
    Recorded {
        source: usize,
        tag: usize,
    },
}

/// Everything the runtime needs to know about one tag.
#[derive(Debug, Clone)]
pub struct TagDef {
    pub id: TagId,
    pub name: String,
    pub unit: Option<String>,
    /// Machine that binds this tag, if any.
    pub machine: Option<String>,
    /// Role the tag plays in that machine (e.g. `motor_current`).
    pub role: Option<String>,
    pub source: TagSource,
    /// Age after which the tag turns stale without fresh data.
    pub stale_after: Duration,
    pub is_bool: bool,
}

/// All tags of a plant, in file order.
#[derive(Debug, Clone, Default)]
pub struct TagTable {
    defs: Vec<TagDef>,
    by_name: BTreeMap<String, TagId>,
}

impl TagTable {
    pub fn push(&mut self, mut def: TagDef) -> TagId {
        let id = TagId(self.defs.len() as u32);
        def.id = id;
        self.by_name.insert(def.name.clone(), id);
        self.defs.push(def);
        id
    }

    pub fn id(&self, name: &str) -> Option<TagId> {
        self.by_name.get(name).copied()
    }

    pub fn get(&self, id: TagId) -> &TagDef {
        &self.defs[id.index()]
    }

    /// As [`TagTable::get`], for an id that may come from elsewhere (a
    /// recording, another config).
    pub fn try_get(&self, id: TagId) -> Option<&TagDef> {
        self.defs.get(id.index())
    }

    pub(crate) fn get_mut(&mut self, id: TagId) -> &mut TagDef {
        &mut self.defs[id.index()]
    }

    pub fn iter(&self) -> impl Iterator<Item = &TagDef> {
        self.defs.iter()
    }

    pub fn len(&self) -> usize {
        self.defs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.defs.is_empty()
    }
}

impl LoadedConfig {
    /// How foreign data for tag `id` is read: the declared type of a
    /// recorded tag; bool for a Modbus coil or bool register; text for a
    /// Modbus string; number otherwise (MQTT payloads, Sparkplug metrics).
    pub fn value_type(&self, id: TagId) -> RecordedType {
        tag_value_type(&self.config, self.tags.get(id))
    }

    /// Names of the tags only recordings provide, in tag order.
    pub fn recorded_tags(&self) -> Vec<&str> {
        self.tags
            .iter()
            .filter(|t| matches!(t.source, TagSource::Recorded { .. }))
            .map(|t| t.name.as_str())
            .collect()
    }
}

/// [`LoadedConfig::value_type`], for a tag of a config still being checked.
pub(crate) fn tag_value_type(cfg: &PlantConfig, def: &TagDef) -> RecordedType {
    match def.source {
        TagSource::Recorded { source, tag } => cfg.recorded[source].tags[tag].data_type,
        _ if def.is_bool => RecordedType::Bool,
        TagSource::Modbus { device, register }
            if cfg.modbus[device].registers[register].data_type == DataType::String =>
        {
            RecordedType::Text
        }
        _ => RecordedType::Number,
    }
}

/// A config that passed validation, with its tag table and any warnings.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub file: SourceFile,
    pub config: PlantConfig,
    pub tags: TagTable,
    /// `[ml]` and the models with a task, resolved for the ML stage.
    pub ml: MlConfig,
    /// `[[setpoints]]` and `[guard]`, resolved for the guard.
    pub guard: guard::GuardConfig,
    pub warnings: Vec<Diagnostic>,
}

impl LoadedConfig {
    /// Render the warnings, if any, in the same format as errors.
    pub fn render_warnings(&self) -> String {
        self.warnings
            .iter()
            .map(|w| self.file.render(w) + "\n")
            .collect()
    }

    /// Name of the source a tag comes from.
    pub fn source_name(&self, id: TagId) -> &str {
        match self.tags.get(id).source {
            TagSource::Modbus { device, .. } => &self.config.modbus[device].name.value,
            TagSource::Mqtt { source, .. } => &self.config.mqtt[source].name.value,
            TagSource::Sparkplug { source, .. } => &self.config.sparkplug[source].name.value,
            TagSource::Recorded { source, .. } => &self.config.recorded[source].name.value,
        }
    }
}

/// Largest plant file `twin` reads, in bytes: 16 MiB.
///
/// Loading holds the text, its spanned TOML tree and the typed config at
/// once, about seven times the file's size (a 204 MB file took 1.4 GB). A
/// plant file is typically tens of kilobytes, and even a map of 60,000
/// registers (`benches/config_check.rs`) is about 6 MB, so the cap leaves room
/// for the largest real plants while bounding a check near 120 MB of memory.
pub const MAX_FILE_BYTES: u64 = 16 * MIB;
const MIB: u64 = 1024 * 1024;

/// Read and validate a plant file. A file over [`MAX_FILE_BYTES`] is
/// refused without being read whole.
pub fn load_file(path: &Path) -> Result<LoadedConfig, Box<ConfigReport>> {
    match read_capped(path) {
        Ok(text) => load_str(path, &text),
        Err(Unreadable::Io(d)) => Err(Box::new(ConfigReport {
            file: SourceFile::new(path, ""),
            diagnostics: vec![d],
        })),
        Err(Unreadable::NotUtf8(bytes, e)) => Err(Box::new(not_utf8(path, &bytes, &e))),
    }
}

/// Why a config file's text cannot be had.
enum Unreadable {
    Io(Diagnostic),
    /// Read, but not UTF-8: located at the first byte that is not.
    NotUtf8(Vec<u8>, std::str::Utf8Error),
}

/// A file saved in another encoding (Latin-1 from an old editor, UTF-16
/// from Windows Notepad) was "cannot read config file ... check the path
/// and the file's permissions", which sent the user the wrong way: say
/// where the first foreign byte is and what to save the file as.
fn not_utf8(path: &Path, bytes: &[u8], e: &std::str::Utf8Error) -> ConfigReport {
    let utf16 = bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]);
    // Up to the bad byte the lossy text is the file itself, so the offset
    // locates it; the quoted line shows it as U+FFFD.
    let at = if utf16 { 0 } else { e.valid_up_to() };
    let text = String::from_utf8_lossy(bytes).into_owned();
    let d = if utf16 {
        Diagnostic::error(
            0..0,
            "",
            "the config file is UTF-16 (it opens with a UTF-16 byte-order mark)",
        )
        .expected("a UTF-8 text file")
        .help("save it as UTF-8 (in Notepad: File > Save as > Encoding: UTF-8), or convert it: `iconv -f utf-16 -t utf-8`")
    } else {
        Diagnostic::error(
            // In the lossy text the byte is one U+FFFD.
            at..at + '\u{fffd}'.len_utf8(),
            "",
            format!("the config file is not UTF-8: byte 0x{:02x} cannot start or continue a character", bytes.get(at).copied().unwrap_or(0)),
        )
        .expected("a UTF-8 text file")
        .help("save it as UTF-8; a file from an editor using Latin-1 (ISO 8859-1) converts with `iconv -f latin1 -t utf-8`")
    };
    ConfigReport {
        file: SourceFile::new(path, text),
        diagnostics: vec![d],
    }
}

/// The file's text, or why it cannot be had.
fn read_capped(path: &Path) -> Result<String, Unreadable> {
    use std::io::Read;
    // The OS wording differs by platform; name the common case plainly.
    let cannot_read = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => Diagnostic::error(0..0, "", "config file not found")
            .help("check the path; a relative path starts from the current directory"),
        _ => Diagnostic::error(0..0, "", format!("cannot read config file: {e}"))
            .help("check the path and the file's permissions"),
    };
    let too_big = |len: Option<u64>| {
        let cap = MAX_FILE_BYTES / MIB;
        let size = len.map_or_else(|| format!("more than {cap} MiB"), |n| format!("{n} bytes"));
        Diagnostic::error(
            0..0,
            "",
            format!("config file is {size}, over the limit of {MAX_FILE_BYTES} bytes ({cap} MiB)"),
        )
        .help("a plant file is normally well under 1 MiB; check that this is the plant config, or split the plant into several")
    };
    let file = std::fs::File::open(path)
        .map_err(cannot_read)
        .map_err(Unreadable::Io)?;
    // A directory opens, then fails to read with "Is a directory (os error
    // 21)"; name it plainly.
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(Unreadable::Io(
            Diagnostic::error(0..0, "", "this is a directory, not a config file")
                .help("give the plant file itself, e.g. `plant-configs/packaging-line.toml`"),
        ));
    }
    // Refused by its length before any of it is read; the read is bounded
    // as well, for a file that grows meanwhile or has no length (a pipe).
    if let Ok(meta) = file.metadata()
        && meta.len() > MAX_FILE_BYTES
    {
        return Err(Unreadable::Io(too_big(Some(meta.len()))));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)
        .map_err(Unreadable::Io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Unreadable::Io(too_big(None)));
    }
    String::from_utf8(bytes).map_err(|e| {
        let utf8 = e.utf8_error();
        Unreadable::NotUtf8(e.into_bytes(), utf8)
    })
}

/// Validate plant config text; `path` is only used in messages.
pub fn load_str(path: &Path, text: &str) -> Result<LoadedConfig, Box<ConfigReport>> {
    let file = SourceFile::new(path, text);
    let mut sink = decode::Sink::default();
    let (root, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        // After a broken table header the parser files what follows under
        // the previous table, so a later "duplicate key" is most likely
        // that, not a second mistake: it is left out.
        let mut header_broken = false;
        for e in syntax {
            let span = e.span().unwrap_or(0..0);
            let message = e.message().trim();
            if header_broken && message == "duplicate key" {
                continue;
            }
            header_broken |= message.starts_with("unclosed") && message.contains("table");
            // "duplicate key" alone does not say which key, nor that a
            // table header counts: name it and say what to do.
            let help = match text.get(span.clone()) {
                Some(key) if message == "duplicate key" && !key.trim().is_empty() => format!(
                    "`{}` is defined twice (a key set twice in one table, or a `[table]` header written twice); keep one",
                    key.trim()
                ),
                _ => "fix the syntax first; the schema is checked once the file parses".to_string(),
            };
            sink.push(
                Diagnostic::error(span, "", format!("TOML syntax error: {message}")).help(help),
            );
        }
        return Err(Box::new(ConfigReport {
            file,
            diagnostics: sink.diags,
        }));
    }
    let root_span = root.span();
    let decoded = plant::decode_file(&mut sink, root.get_ref(), root_span);
    let (tags, ml, guard) = match &decoded {
        Some(cfg) => validate::validate(&mut sink, &file, cfg),
        None => Default::default(),
    };
    let mut diags = sink.diags;
    diags.sort_by_key(|d| (d.span.start, d.severity));
    let has_errors = diags.iter().any(|d| d.severity == Severity::Error);
    match decoded {
        Some(config) if !has_errors => Ok(LoadedConfig {
            file,
            config,
            tags,
            ml,
            guard,
            warnings: diags,
        }),
        _ => Err(Box::new(ConfigReport {
            file,
            diagnostics: diags,
        })),
    }
}
