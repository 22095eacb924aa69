//! Reading a recording back, one message at a time.
//!
//! [`RecordingReader`] streams: it holds one file open and one chunk
//! decompressed at a time, so a day's recording replays in constant memory.
//! It reads files in file order, which is the order the run pushed samples
//! in. A file that ends early (a crash cut it off mid-chunk) reads up to its
//! last whole chunk; the reader says so ([`RecordingReader::cut_off`]) and
//! goes on with the next file, and `twin recover` writes a clean copy.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use mcap::sans_io::linear_reader::{LinearReadEvent, LinearReader, LinearReaderOptions};

use super::format::{self, RecordingInfo, SampleMessage, TickMessage};
use super::{RecordingError, index};
use crate::twin::record::SampleRecord;

/// One message of a recording.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A sample as the core received it, pushed after tick `tick` had run.
    Sample { tick: u64, record: SampleRecord },
    /// One event line (without its newline) of the tick at `t_ns`.
    Event { t_ns: i64, line: Vec<u8> },
    /// The run had reached this tick.
    Tick(TickMessage),
    /// An input the guard took from outside while `tick` (at `t_ns`) was
    /// the last tick run (`/twin/guard`).
    Guard {
        t_ns: i64,
        record: crate::guard::GuardInputRecord,
    },
}

/// Where a file of the recording ended before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutOff {
    pub path: PathBuf,
    /// Bytes of the file that were read as whole records.
    pub read_bytes: u64,
    pub detail: String,
}

/// No record of a twin recording is near this size; a length beyond it is a
/// corrupt or hostile file, refused before it is allocated.
const RECORD_LIMIT: usize = 256 * 1024 * 1024;

#[derive(Debug, Clone)]
enum Kind {
    /// A tag's samples: protobuf since format version 2, JSON before.
    Tag {
        tag: std::sync::Arc<str>,
        protobuf: bool,
    },
    Events,
    Ticks,
    Guard,
    Other,
}

struct FileReader {
    path: PathBuf,
    file: File,
    lr: LinearReader,
    records: Records,
    read_bytes: u64,
    /// An error met while reading the identity, past it: given by the
    /// next step, so the reading reports it where it would have.
    deferred_err: Option<RecordingError>,
    done: bool,
    /// The chunk being read, decompressed, and where its next record starts.
    chunk: Vec<u8>,
    chunk_at: usize,
    unzstd: Option<zstd::bulk::Decompressor<'static>>,
}

enum Step {
    Item(Item),
    /// A record that is not a message (schema, channel, metadata, index).
    Other,
    End,
}

impl FileReader {
    fn open(path: &Path) -> Result<Self, RecordingError> {
        let file = File::open(path).map_err(|e| RecordingError::io(path, e))?;
        let lr = LinearReader::new_with_options(
            LinearReaderOptions::default()
                .with_emit_chunks(true)
                .with_record_length_limit(RECORD_LIMIT),
        );
        Ok(FileReader {
            path: path.to_path_buf(),
            file,
            lr,
            records: Records {
                path: path.to_path_buf(),
                channels: Vec::new(),
                info: None,
                config: None,
                models: Vec::new(),
                channel: 0,
                skip_events: false,
            },
            read_bytes: 0,
            deferred_err: None,
            done: false,
            chunk: Vec::new(),
            chunk_at: 0,
            unzstd: None,
        })
    }

    /// The next record, parsed. An error after the file's identity has been
    /// read is a cut-off (the caller decides); before it, the file is not a
    /// recording it can read.
    fn step(&mut self) -> Result<Step, RecordingError> {
        if let Some(e) = self.deferred_err.take() {
            return Err(e);
        }
        if self.done {
            return Ok(Step::End);
        }
        loop {
            if self.chunk_at < self.chunk.len() {
                let (opcode, body) = inner_record(&self.path, &self.chunk, &mut self.chunk_at)?;
                return record(&mut self.records, opcode, body);
            }
            let event = match self.lr.next_event() {
                None => {
                    self.done = true;
                    return Ok(Step::End);
                }
                Some(Err(e)) => return Err(RecordingError::mcap(&self.path, e)),
                Some(Ok(ev)) => ev,
            };
            match event {
                LinearReadEvent::ReadRequest(n) => {
                    let buf = self.lr.insert(n);
                    let got = self
                        .file
                        .read(buf)
                        .map_err(|e| RecordingError::io(&self.path, e))?;
                    self.lr.notify_read(got);
                    self.read_bytes += got as u64;
                }
                LinearReadEvent::Record { opcode, data } if opcode == CHUNK_OPCODE => {
                    let record = mcap::parse_record(opcode, data)
                        .map_err(|e| RecordingError::mcap(&self.path, e))?;
                    if let mcap::records::Record::Chunk { header, data } = record {
                        unchunk(
                            &self.path,
                            &header,
                            &data,
                            &mut self.unzstd,
                            &mut self.chunk,
                        )?;
                        self.chunk_at = 0;
                    }
                }
                LinearReadEvent::Record { opcode, data } => {
                    // A record outside a chunk: copied out of the reader's
                    // buffer (rare: the file's identity, its summary).
                    let body = data.to_vec();
                    return record(&mut self.records, opcode, &body);
                }
            }
        }
    }
}

/// What a file's records so far have said, and how to hand out items.
struct Records {
    path: PathBuf,
    /// By channel id.
    channels: Vec<Option<Kind>>,
    info: Option<RecordingInfo>,
    config: Option<String>,
    /// The model files attached, by model id.
    models: Vec<format::ModelFile>,
    /// The channel of the last message read.
    channel: u16,
    /// Hand out event items without their lines (see
    /// [`RecordingReader::skip_event_lines`]).
    skip_events: bool,
}

fn record(r: &mut Records, opcode: u8, body: &[u8]) -> Result<Step, RecordingError> {
    // Messages are nearly every record: their header is read here, without
    // building a general record.
    if opcode == MESSAGE_OPCODE {
        return message(&r.path, &r.channels, r.skip_events, &mut r.channel, body);
    }
    let rec = mcap::parse_record(opcode, body).map_err(|e| RecordingError::mcap(&r.path, e))?;
    take(r, rec)
}

/// The MCAP opcode of a Chunk record.
const CHUNK_OPCODE: u8 = 0x06;

/// A chunk's records into `out`, whole: one decompression and one CRC per
/// chunk. (The MCAP reader's own streaming decompression works a record at
/// a time, which was a third of a replay's reading.)
fn unchunk(
    path: &Path,
    header: &mcap::records::ChunkHeader,
    data: &[u8],
    unzstd: &mut Option<zstd::bulk::Decompressor<'static>>,
    out: &mut Vec<u8>,
) -> Result<(), RecordingError> {
    let size = usize::try_from(header.uncompressed_size)
        .ok()
        .filter(|n| *n <= RECORD_LIMIT)
        .ok_or_else(|| {
            RecordingError::invalid(
                path,
                format!(
                    "a chunk says it holds {} bytes, more than any twin recording's chunk",
                    header.uncompressed_size
                ),
            )
        })?;
    out.clear();
    match header.compression.as_str() {
        "" => out.extend_from_slice(data),
        "zstd" => {
            let z = match unzstd {
                Some(z) => z,
                None => unzstd.insert(
                    zstd::bulk::Decompressor::new().map_err(|e| RecordingError::io(path, e))?,
                ),
            };
            out.reserve(size);
            z.decompress_to_buffer(data, out).map_err(|e| {
                RecordingError::invalid(path, format!("a zstd chunk does not decompress: {e}"))
            })?;
        }
        other => {
            return Err(RecordingError::invalid(
                path,
                format!("a chunk is compressed with {other:?}; this twin reads zstd and none"),
            ));
        }
    }
    if out.len() != size {
        return Err(RecordingError::invalid(
            path,
            format!("a chunk holds {} bytes, not the {size} it says", out.len()),
        ));
    }
    // A CRC of 0 means the writer did not compute one.
    if header.uncompressed_crc != 0 && crc32fast::hash(out) != header.uncompressed_crc {
        return Err(RecordingError::invalid(
            path,
            "a chunk's CRC does not match its contents (the file is damaged)",
        ));
    }
    Ok(())
}

/// The record at `*at` of a decompressed chunk: opcode (u8), body length
/// (u64, little-endian), body.
fn inner_record<'c>(
    path: &Path,
    chunk: &'c [u8],
    at: &mut usize,
) -> Result<(u8, &'c [u8]), RecordingError> {
    let rest = &chunk[*at..];
    let body = rest.get(9..).and_then(|after| {
        let len = u64::from_le_bytes(rest[1..9].try_into().ok()?);
        after.get(..usize::try_from(len).ok()?)
    });
    let Some(body) = body else {
        *at = chunk.len();
        return Err(RecordingError::invalid(
            path,
            "a record inside a chunk runs past the chunk's end (the file is damaged)",
        ));
    };
    *at += 9 + body.len();
    Ok((rest[0], body))
}

/// The MCAP opcode of a Message record.
const MESSAGE_OPCODE: u8 = 0x05;

/// A Message record's body into an [`Item`]: channel id (u16), sequence
/// (u32), log time and publish time (u64), all little-endian, then the data.
fn message(
    path: &Path,
    channels: &[Option<Kind>],
    skip_events: bool,
    last_channel: &mut u16,
    body: &[u8],
) -> Result<Step, RecordingError> {
    let u = |at: usize, n: usize| -> Option<u64> {
        let b = body.get(at..at + n)?;
        Some(
            b.iter()
                .rev()
                .fold(0u64, |acc, x| (acc << 8) | u64::from(*x)),
        )
    };
    let header = (|| Some((u(0, 2)?, u(2, 4)?, u(6, 8)?, u(14, 8)?)))();
    let Some((channel, sequence, log_time, publish_time)) = header else {
        return Err(RecordingError::invalid(
            path,
            format!(
                "a message record of {} bytes is shorter than its header",
                body.len()
            ),
        ));
    };
    let channel = channel as u16;
    let data = &body[22..];
    *last_channel = channel;
    let kind = channels
        .get(usize::from(channel))
        .and_then(Option::as_ref)
        .ok_or_else(|| {
            RecordingError::invalid(
                path,
                format!("message {sequence} is on channel {channel}, which was never declared"),
            )
        })?;
    let bad = |what: &str, e: String| {
        RecordingError::invalid(
            path,
            format!("message {sequence} ({what}) does not parse: {e}"),
        )
    };
    match kind {
        Kind::Tag {
            tag,
            protobuf: true,
        } => {
            let (tick, record) = super::proto::decode(data, tag.clone(), log_time, publish_time)
                .map_err(|e| bad(tag, e))?;
            Ok(Step::Item(Item::Sample { tick, record }))
        }
        Kind::Tag {
            tag,
            protobuf: false,
        } => {
            let m: SampleMessage =
                serde_json::from_slice(data).map_err(|e| bad(tag, e.to_string()))?;
            Ok(Step::Item(Item::Sample {
                tick: m.tick,
                record: m.into_record(tag.clone()),
            }))
        }
        Kind::Events => Ok(Step::Item(Item::Event {
            t_ns: i64::try_from(log_time).unwrap_or(i64::MAX),
            line: if skip_events {
                Vec::new()
            } else {
                data.to_vec()
            },
        })),
        Kind::Ticks => {
            let m: TickMessage = serde_json::from_slice(data)
                .map_err(|e| bad(format::TICKS_TOPIC, e.to_string()))?;
            Ok(Step::Item(Item::Tick(m)))
        }
        Kind::Guard => {
            let record = serde_json::from_slice(data)
                .map_err(|e| bad(format::GUARD_TOPIC, e.to_string()))?;
            Ok(Step::Item(Item::Guard {
                t_ns: i64::try_from(log_time).unwrap_or(i64::MAX),
                record,
            }))
        }
        Kind::Other => Ok(Step::Other),
    }
}

/// Take in one record that is not a message: note a channel or the file's
/// identity.
fn take(r: &mut Records, record: mcap::records::Record<'_>) -> Result<Step, RecordingError> {
    use mcap::records::Record;
    let (path, channels, info, config) = (&r.path, &mut r.channels, &mut r.info, &mut r.config);
    match record {
        Record::Channel(c) => {
            let kind = if let Some(tag) = c.topic.strip_prefix(format::TAG_TOPIC_PREFIX) {
                Kind::Tag {
                    tag: std::sync::Arc::from(tag),
                    protobuf: c.message_encoding == "protobuf",
                }
            } else if c.topic == format::EVENTS_TOPIC {
                Kind::Events
            } else if c.topic == format::TICKS_TOPIC {
                Kind::Ticks
            } else if c.topic == format::GUARD_TOPIC {
                Kind::Guard
            } else {
                Kind::Other
            };
            let slot = usize::from(c.id);
            if channels.len() <= slot {
                channels.resize(slot + 1, None);
            }
            channels[slot] = Some(kind);
            Ok(Step::Other)
        }
        Record::Metadata(m) if m.name == format::METADATA_NAME => {
            *info = Some(RecordingInfo::from_metadata(path, &m.metadata)?);
            Ok(Step::Other)
        }
        Record::Attachment { header, data, .. } if header.name == format::CONFIG_ATTACHMENT => {
            let text = String::from_utf8(data.into_owned()).map_err(|_| {
                RecordingError::invalid(path, "the attached config is not UTF-8 text")
            })?;
            *config = Some(text);
            Ok(Step::Other)
        }
        Record::Attachment { header, data, .. } => {
            if let Some(id) = header
                .name
                .strip_prefix(format::MODEL_ATTACHMENT_PREFIX)
                .and_then(|n| n.strip_suffix(".onnx"))
            {
                r.models
                    .push((id.to_string(), std::sync::Arc::from(data.as_ref())));
            }
            Ok(Step::Other)
        }
        _ => Ok(Step::Other),
    }
}

/// A recording: one file, or the files of a rotated one (given one by one
/// or by their index), read as one stream of [`Item`]s.
pub struct RecordingReader {
    info: RecordingInfo,
    config_text: String,
    model_files: Vec<format::ModelFile>,
    current: FileReader,
    /// Items read while looking for the current file's identity, with
    /// their channels.
    pending: VecDeque<(Item, u16)>,
    rest: VecDeque<PathBuf>,
    cut_off: Vec<CutOff>,
    files: Vec<PathBuf>,
    /// The latest tick any item so far belongs to: a next file must start
    /// at or after it.
    seen_tick: u64,
    /// Which file of [`Self::files`] is being read.
    part: usize,
    skip_events: bool,
}

impl RecordingReader {
    /// Open the recording made of `paths`, in order. A path ending in
    /// `.json` is a rotation index and stands for the files it lists.
    pub fn open(paths: &[PathBuf]) -> Result<Self, RecordingError> {
        let mut files = VecDeque::new();
        for p in paths {
            if index::is_index(p) {
                files.extend(index::RecordingIndex::load(p)?.files(p));
            } else {
                files.push_back(p.clone());
            }
        }
        let Some(first) = files.pop_front() else {
            // An index that lists no part (its first file was never closed)
            // is named, not reported as "(no file)".
            return Err(match paths.first() {
                Some(index) => RecordingError::invalid(
                    index,
                    "the index lists no recording file (was the first part never closed? give the .mcap files themselves)",
                ),
                None => {
                    RecordingError::invalid(Path::new("(no file)"), "no recording file was given")
                }
            });
        };
        let all: Vec<PathBuf> = std::iter::once(first.clone())
            .chain(files.iter().cloned())
            .collect();
        let (current, pending) = Self::open_file(&first)?;
        let info = current
            .records
            .info
            .clone()
            .ok_or_else(|| RecordingError::NotTwin {
                path: first.clone(),
            })?;
        let config_text = current.records.config.clone().ok_or_else(|| {
            RecordingError::invalid(&first, "the recording holds no config (`plant.toml`)")
        })?;
        Ok(RecordingReader {
            info,
            config_text,
            model_files: current.records.models.clone(),
            current,
            pending,
            rest: files,
            cut_off: Vec::new(),
            files: all,
            seen_tick: 0,
            part: 0,
            skip_events: false,
        })
    }

    /// Read a file up to its identity (metadata and config), keeping any
    /// message met on the way.
    fn open_file(path: &Path) -> Result<(FileReader, VecDeque<(Item, u16)>), RecordingError> {
        let mut f = FileReader::open(path)?;
        let mut pending = VecDeque::new();
        // The identity is the metadata, the config and the model files,
        // all written before the first message: read up to that message.
        while pending.is_empty() {
            match f.step() {
                Ok(Step::Item(item)) => {
                    if f.records.info.is_none() {
                        return Err(RecordingError::NotTwin {
                            path: path.to_path_buf(),
                        });
                    }
                    pending.push_back((item, f.records.channel));
                }
                Ok(Step::Other) => {}
                Ok(Step::End) => break,
                Err(RecordingError::Io { path, source }) => {
                    return Err(RecordingError::Io { path, source });
                }
                Err(e) if f.records.info.is_none() => {
                    return Err(match e {
                        RecordingError::Mcap { .. } if f.read_bytes < 8 => RecordingError::Mcap {
                            path: path.to_path_buf(),
                            detail: "too short to be an MCAP file".into(),
                        },
                        e => e,
                    });
                }
                // Past the identity, a damaged first chunk is the reading's
                // business (a cut-off), as any later one is.
                Err(e) if f.records.config.is_some() => {
                    f.deferred_err = Some(e);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        let Some(info) = &f.records.info else {
            return Err(RecordingError::NotTwin {
                path: path.to_path_buf(),
            });
        };
        // The model files come before the first message. A file that ends,
        // or is damaged, among them holds nothing to replay; left to the
        // config, the replay would instead fail on model paths that were
        // never meant to be on this disk, blaming the config.
        if pending.is_empty()
            && let Some((id, _)) = info
                .models
                .iter()
                .find(|(id, _)| !f.records.models.iter().any(|(m, _)| m == id))
        {
            let why = match &f.deferred_err {
                Some(e) => format!(" ({e})"),
                None => String::new(),
            };
            return Err(RecordingError::invalid(
                path,
                format!(
                    "the file is cut off or damaged in its attached model file `{}{id}.onnx`, before its first sample{why}: there is nothing in it to replay or recover; use an undamaged copy",
                    format::MODEL_ATTACHMENT_PREFIX
                ),
            ));
        }
        Ok((f, pending))
    }

    /// What the (first) file says about the recording.
    pub fn info(&self) -> &RecordingInfo {
        &self.info
    }

    /// The config the recording was made with.
    pub fn config_text(&self) -> &str {
        &self.config_text
    }

    /// The model files the run ran, by model id (none in recordings made
    /// before they were attached).
    pub fn model_files(&self) -> &[format::ModelFile] {
        &self.model_files
    }

    /// The files of the recording, in replay order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Hand out [`Item::Event`]s with an empty line: for readers that only
    /// need the events' times (a replay that does not verify), which saves
    /// a copy of every event.
    pub fn skip_event_lines(&mut self, skip: bool) {
        self.skip_events = skip;
        self.current.records.skip_events = skip;
    }

    /// Where the last [`Item::Sample`] came from: the file (index into
    /// [`Self::files`]) and its channel there. The same pair is always the
    /// same tag, so a caller can resolve a tag name once per channel.
    pub fn sample_channel(&self) -> (usize, u16) {
        (self.part, self.current.records.channel)
    }

    /// Files that ended before their end, so far.
    pub fn cut_off(&self) -> &[CutOff] {
        &self.cut_off
    }

    /// The next item, `None` at the end of the last file. A file cut off by
    /// a crash ends at its last whole record (see [`Self::cut_off`]); an
    /// error is a file that cannot be read at all, or a part that does not
    /// continue the recording.
    pub fn next_item(&mut self) -> Option<Result<Item, RecordingError>> {
        loop {
            if let Some((item, channel)) = self.pending.pop_front() {
                self.current.records.channel = channel;
                self.saw(&item);
                return Some(Ok(item));
            }
            match self.current.step() {
                Ok(Step::Item(item)) => {
                    self.saw(&item);
                    return Some(Ok(item));
                }
                Ok(Step::Other) => continue,
                Ok(Step::End) => {}
                Err(RecordingError::Io { path, source }) => {
                    return Some(Err(RecordingError::Io { path, source }));
                }
                Err(e) => {
                    self.current.done = true;
                    self.cut_off.push(CutOff {
                        path: self.current.path.clone(),
                        read_bytes: self.current.read_bytes,
                        detail: e.to_string(),
                    });
                }
            }
            let next = self.rest.pop_front()?;
            match self.next_part(&next) {
                Ok(()) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    fn saw(&mut self, item: &Item) {
        let tick = match item {
            Item::Sample { tick, .. } => *tick,
            Item::Tick(t) => t.tick,
            Item::Guard { record, .. } => record.tick,
            Item::Event { .. } => return,
        };
        self.seen_tick = self.seen_tick.max(tick);
    }

    fn next_part(&mut self, path: &Path) -> Result<(), RecordingError> {
        let (f, pending) = Self::open_file(path)?;
        let info = f
            .records
            .info
            .as_ref()
            .ok_or_else(|| RecordingError::NotTwin {
                path: path.to_path_buf(),
            })?;
        let differ = |what: &str, a: String, b: String| RecordingError::NotContinuous {
            path: path.to_path_buf(),
            detail: format!("its {what} is {b}, the first file's {a}"),
        };
        if info.epoch_ns != self.info.epoch_ns {
            return Err(differ(
                "epoch",
                self.info.epoch_ns.to_string(),
                info.epoch_ns.to_string(),
            ));
        }
        if info.tick_ns != self.info.tick_ns {
            return Err(differ(
                "tick",
                self.info.tick_ns.to_string(),
                info.tick_ns.to_string(),
            ));
        }
        if info.config_hash != self.info.config_hash {
            return Err(differ(
                "config hash",
                self.info.config_hash.clone(),
                info.config_hash.clone(),
            ));
        }
        if info.first_tick < self.seen_tick {
            return Err(RecordingError::NotContinuous {
                path: path.to_path_buf(),
                detail: format!(
                    "it starts at tick {}, before tick {} that the files before it reached (are the files in order?)",
                    info.first_tick, self.seen_tick
                ),
            });
        }
        self.current = f;
        self.current.records.skip_events = self.skip_events;
        self.pending = pending;
        self.part += 1;
        Ok(())
    }
}

impl Iterator for RecordingReader {
    type Item = Result<Item, RecordingError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item()
    }
}
