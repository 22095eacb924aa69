//! Reading a recording back, one message at a time.
//!
//! [`RecordingReader`] streams: it holds one file open and one chunk
//! decompressed at a time, so a day's recording replays in constant memory.
//! It reads files in file order, which is the order the run pushed samples
//! in. A file that ends early (a crash cut it off mid-chunk) reads up to its
//! last whole chunk; the reader says so ([`RecordingReader::cut_off`]) and
//! goes on with the next file, and `twin recover` writes a clean copy.

use std::collections::{HashMap, VecDeque};
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
    Tag(String),
    Events,
    Ticks,
    Other,
}

struct FileReader {
    path: PathBuf,
    file: File,
    lr: LinearReader,
    channels: HashMap<u16, Kind>,
    info: Option<RecordingInfo>,
    config: Option<String>,
    read_bytes: u64,
    done: bool,
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
                .with_validate_chunk_crcs(true)
                .with_record_length_limit(RECORD_LIMIT),
        );
        Ok(FileReader {
            path: path.to_path_buf(),
            file,
            lr,
            channels: HashMap::new(),
            info: None,
            config: None,
            read_bytes: 0,
            done: false,
        })
    }

    /// The next record, parsed. An error after the file's identity has been
    /// read is a cut-off (the caller decides); before it, the file is not a
    /// recording it can read.
    fn step(&mut self) -> Result<Step, RecordingError> {
        if self.done {
            return Ok(Step::End);
        }
        loop {
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
                LinearReadEvent::Record { opcode, data } => {
                    let record = mcap::parse_record(opcode, data)
                        .map_err(|e| RecordingError::mcap(&self.path, e))?;
                    return take(
                        &self.path,
                        &mut self.channels,
                        &mut self.info,
                        &mut self.config,
                        record,
                    );
                }
            }
        }
    }
}

/// Take in one record: note a channel or the file's identity, or turn a
/// message into an [`Item`].
fn take(
    path: &Path,
    channels: &mut HashMap<u16, Kind>,
    info: &mut Option<RecordingInfo>,
    config: &mut Option<String>,
    record: mcap::records::Record<'_>,
) -> Result<Step, RecordingError> {
    use mcap::records::Record;
    match record {
        Record::Channel(c) => {
            let kind = if let Some(tag) = c.topic.strip_prefix(format::TAG_TOPIC_PREFIX) {
                Kind::Tag(tag.to_string())
            } else if c.topic == format::EVENTS_TOPIC {
                Kind::Events
            } else if c.topic == format::TICKS_TOPIC {
                Kind::Ticks
            } else {
                Kind::Other
            };
            channels.insert(c.id, kind);
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
        Record::Message { header, data } => {
            let kind = channels.get(&header.channel_id).ok_or_else(|| {
                RecordingError::invalid(
                    path,
                    format!(
                        "message {} is on channel {}, which was never declared",
                        header.sequence, header.channel_id
                    ),
                )
            })?;
            let bad = |what: &str, e: serde_json::Error| {
                RecordingError::invalid(
                    path,
                    format!("message {} ({what}) does not parse: {e}", header.sequence),
                )
            };
            match kind {
                Kind::Tag(tag) => {
                    let m: SampleMessage =
                        serde_json::from_slice(&data).map_err(|e| bad(tag, e))?;
                    Ok(Step::Item(Item::Sample {
                        tick: m.tick,
                        record: m.into_record(tag.clone()),
                    }))
                }
                Kind::Events => Ok(Step::Item(Item::Event {
                    t_ns: i64::try_from(header.log_time).unwrap_or(i64::MAX),
                    line: data.into_owned(),
                })),
                Kind::Ticks => {
                    let m: TickMessage =
                        serde_json::from_slice(&data).map_err(|e| bad(format::TICKS_TOPIC, e))?;
                    Ok(Step::Item(Item::Tick(m)))
                }
                Kind::Other => Ok(Step::Other),
            }
        }
        _ => Ok(Step::Other),
    }
}

/// A recording: one file, or the files of a rotated one (given one by one
/// or by their index), read as one stream of [`Item`]s.
pub struct RecordingReader {
    info: RecordingInfo,
    config_text: String,
    current: FileReader,
    /// Items read while looking for the current file's identity.
    pending: VecDeque<Item>,
    rest: VecDeque<PathBuf>,
    cut_off: Vec<CutOff>,
    files: Vec<PathBuf>,
    /// The latest tick any item so far belongs to: a next file must start
    /// at or after it.
    seen_tick: u64,
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
            return Err(RecordingError::invalid(
                Path::new("(no file)"),
                "no recording file was given",
            ));
        };
        let all: Vec<PathBuf> = std::iter::once(first.clone())
            .chain(files.iter().cloned())
            .collect();
        let (current, pending) = Self::open_file(&first)?;
        let info = current
            .info
            .clone()
            .ok_or_else(|| RecordingError::NotTwin {
                path: first.clone(),
            })?;
        let config_text = current.config.clone().ok_or_else(|| {
            RecordingError::invalid(&first, "the recording holds no config (`plant.toml`)")
        })?;
        Ok(RecordingReader {
            info,
            config_text,
            current,
            pending,
            rest: files,
            cut_off: Vec::new(),
            files: all,
            seen_tick: 0,
        })
    }

    /// Read a file up to its identity (metadata and config), keeping any
    /// message met on the way.
    fn open_file(path: &Path) -> Result<(FileReader, VecDeque<Item>), RecordingError> {
        let mut f = FileReader::open(path)?;
        let mut pending = VecDeque::new();
        while f.info.is_none() || f.config.is_none() {
            match f.step() {
                Ok(Step::Item(item)) => {
                    if f.info.is_none() {
                        return Err(RecordingError::NotTwin {
                            path: path.to_path_buf(),
                        });
                    }
                    pending.push_back(item);
                }
                Ok(Step::Other) => {}
                Ok(Step::End) => break,
                Err(RecordingError::Io { path, source }) => {
                    return Err(RecordingError::Io { path, source });
                }
                Err(e) if f.info.is_none() => {
                    return Err(match e {
                        RecordingError::Mcap { .. } if f.read_bytes < 8 => RecordingError::Mcap {
                            path: path.to_path_buf(),
                            detail: "too short to be an MCAP file".into(),
                        },
                        e => e,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        if f.info.is_none() {
            return Err(RecordingError::NotTwin {
                path: path.to_path_buf(),
            });
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

    /// The files of the recording, in replay order.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
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
            if let Some(item) = self.pending.pop_front() {
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
            Item::Event { .. } => return,
        };
        self.seen_tick = self.seen_tick.max(tick);
    }

    fn next_part(&mut self, path: &Path) -> Result<(), RecordingError> {
        let (f, pending) = Self::open_file(path)?;
        let info = f.info.as_ref().ok_or_else(|| RecordingError::NotTwin {
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
        self.pending = pending;
        Ok(())
    }
}

impl Iterator for RecordingReader {
    type Item = Result<Item, RecordingError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item()
    }
}
