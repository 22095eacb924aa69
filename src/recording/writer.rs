//! Writing one recording file.
//!
//! [`RecordingWriter`] is blocking and single-threaded: the recorder sink
//! runs it on its own thread, `twin import` and `twin recover` on theirs.
//! It writes the file's identity first (metadata, then the config as an
//! attachment), then messages in the order it is given them, in zstd chunks.
//! [`RecordingWriter::flush`] closes the open chunk and syncs the file to
//! disk, so a crash (kill -9, power loss) loses at most what came after the
//! last flush and leaves a file that reads up to it.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::RecordingError;
use super::format::{self, RecordingInfo, TickMessage};
use crate::twin::record::SampleRecord;

/// A buffered file whose flush, when the recording asks for one, also
/// makes the written bytes durable (fdatasync), so a flushed chunk survives
/// a power cut, not only a killed process.
///
/// The MCAP writer also flushes on its own (after metadata and attachments);
/// those flushes are left to the buffer, so that the disk is written at the
/// recording's pace: every flush interval, or when the buffer fills.
struct SyncFile {
    out: BufWriter<File>,
    /// Devices such as /dev/full or a pipe do not sync; that is not an error
    /// of the recording.
    sync: bool,
    /// Set by [`RecordingWriter::flush`] around its call into the MCAP
    /// writer.
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The stream position, so that asking for it (which the MCAP writer
    /// does for every record) does not flush the buffer, as
    /// `BufWriter::seek` would.
    pos: u64,
}

impl Write for SyncFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.armed.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        self.out.flush()?;
        if self.sync {
            self.out.get_ref().sync_data()?;
        }
        Ok(())
    }
}

impl Seek for SyncFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        if pos == SeekFrom::Current(0) {
            return Ok(self.pos);
        }
        self.pos = self.out.seek(pos)?;
        Ok(self.pos)
    }
}

pub struct RecordingWriter {
    path: PathBuf,
    mcap: mcap::Writer<SyncFile>,
    sample_schema: u16,
    tag_channels: HashMap<String, u16>,
    events_channel: u16,
    ticks_channel: u16,
    /// `/twin/guard`, declared with the first guard input.
    guard_channel: Option<u16>,
    /// Per-file message counter (MCAP `sequence`), in write order.
    sequence: u32,
    /// Bytes handed to the file so far, approximately (compression makes the
    /// file smaller); what rotation by size goes by.
    raw_bytes: u64,
    messages: u64,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// A sample's encoding, reused.
    scratch: Vec<u8>,
}

impl RecordingWriter {
    /// Create (or truncate) `path` and write the file's identity: `info` and
    /// the config's text. The file says it is this twin's format version,
    /// whatever `info` says (a recovered older file is rewritten in it).
    pub fn create(
        path: &Path,
        info: &RecordingInfo,
        config_text: &str,
        models: &[format::ModelFile],
    ) -> Result<Self, RecordingError> {
        let file = Self::open(path)?;
        Self::start(file, path, info, config_text, models)
    }

    /// Create (or truncate) `path`, and the folders on the way to it.
    pub fn open(path: &Path) -> Result<File, RecordingError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| RecordingError::io(path, e))?;
        }
        File::create(path).map_err(|e| RecordingError::io(path, e))
    }

    /// [`RecordingWriter::create`] on a file already [`open`](Self::open)ed
    /// at `path`: a caller can tell a file it cannot make (a usage error)
    /// from a disk that cannot take the identity (a full disk).
    pub fn start(
        file: File,
        path: &Path,
        info: &RecordingInfo,
        config_text: &str,
        models: &[format::ModelFile],
    ) -> Result<Self, RecordingError> {
        let sync = file.metadata().map(|m| m.is_file()).unwrap_or(false);
        let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let out = SyncFile {
            out: BufWriter::with_capacity(256 * 1024, file),
            sync,
            armed: armed.clone(),
            pos: 0,
        };
        let mcap_err = |e| RecordingError::mcap(path, e);
        let mut mcap = mcap::WriteOptions::new()
            .profile(format::PROFILE)
            .library(format!("twin {}", env!("CARGO_PKG_VERSION")))
            .compression(Some(mcap::Compression::Zstd))
            // Per-message index records are 16 bytes each, uncompressed,
            // after every chunk: with a chunk a second they were half the
            // file. Readers seek by chunk (the chunk index is kept) and a
            // chunk is one flush interval, so they cost nothing to scan.
            .emit_message_indexes(false)
            .create(out)
            .map_err(mcap_err)?;
        mcap.write_metadata(&mcap::records::Metadata {
            name: format::METADATA_NAME.to_string(),
            metadata: RecordingInfo {
                format_version: format::FORMAT_VERSION,
                ..info.clone()
            }
            .to_metadata(),
        })
        .map_err(mcap_err)?;
        let start = u64::try_from(info.time_of(info.first_tick)).unwrap_or(0);
        mcap.attach(&mcap::Attachment {
            log_time: start,
            create_time: start,
            name: format::CONFIG_ATTACHMENT.to_string(),
            media_type: "application/toml".to_string(),
            data: std::borrow::Cow::Borrowed(config_text.as_bytes()),
        })
        .map_err(mcap_err)?;
        for (id, bytes) in models {
            mcap.attach(&mcap::Attachment {
                log_time: start,
                create_time: start,
                name: format!("{}{id}.onnx", format::MODEL_ATTACHMENT_PREFIX),
                media_type: "application/octet-stream".to_string(),
                data: std::borrow::Cow::Borrowed(bytes),
            })
            .map_err(mcap_err)?;
        }
        let json = "jsonschema";
        let sample_schema = mcap
            .add_schema(
                format::SAMPLE_SCHEMA_NAME,
                "protobuf",
                &super::proto::descriptor_set(),
            )
            .map_err(mcap_err)?;
        let event_schema = mcap
            .add_schema(
                format::EVENT_SCHEMA_NAME,
                json,
                format::EVENT_SCHEMA.as_bytes(),
            )
            .map_err(mcap_err)?;
        let tick_schema = mcap
            .add_schema(
                format::TICK_SCHEMA_NAME,
                json,
                format::TICK_SCHEMA.as_bytes(),
            )
            .map_err(mcap_err)?;
        let none = BTreeMap::new();
        let events_channel = mcap
            .add_channel(event_schema, format::EVENTS_TOPIC, "json", &none)
            .map_err(mcap_err)?;
        let ticks_channel = mcap
            .add_channel(tick_schema, format::TICKS_TOPIC, "json", &none)
            .map_err(mcap_err)?;
        Ok(RecordingWriter {
            path: path.to_path_buf(),
            mcap,
            sample_schema,
            tag_channels: HashMap::new(),
            events_channel,
            ticks_channel,
            guard_channel: None,
            sequence: 0,
            raw_bytes: 0,
            messages: 0,
            armed,
            scratch: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Uncompressed message bytes written so far.
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    pub fn messages(&self) -> u64 {
        self.messages
    }

    fn message(
        &mut self,
        channel_id: u16,
        log_time: i64,
        publish_time: i64,
        data: &[u8],
    ) -> Result<(), RecordingError> {
        let header = mcap::records::MessageHeader {
            channel_id,
            sequence: self.sequence,
            log_time: u64::try_from(log_time).unwrap_or(0),
            publish_time: u64::try_from(publish_time).unwrap_or(0),
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.raw_bytes += data.len() as u64 + 30;
        self.messages += 1;
        self.mcap
            .write_to_known_channel(&header, data)
            .map_err(|e| RecordingError::mcap(&self.path, e))
    }

    /// One sample, pushed while tick `tick` was the last that had run.
    pub fn write_sample(&mut self, tick: u64, r: &SampleRecord) -> Result<(), RecordingError> {
        let channel = match self.tag_channels.get(&*r.tag) {
            Some(&c) => c,
            None => {
                let mut meta = BTreeMap::new();
                meta.insert("tag".to_string(), r.tag.to_string());
                let topic = format!("{}{}", format::TAG_TOPIC_PREFIX, r.tag);
                let c = self
                    .mcap
                    .add_channel(self.sample_schema, &topic, "protobuf", &meta)
                    .map_err(|e| RecordingError::mcap(&self.path, e))?;
                self.tag_channels.insert(r.tag.to_string(), c);
                c
            }
        };
        let mut data = std::mem::take(&mut self.scratch);
        data.clear();
        super::proto::encode(tick, r, &mut data);
        let res = self.message(channel, r.recv_time_ns, r.source_time_ns, &data);
        self.scratch = data;
        res
    }

    /// A tick's event lines (JSON lines, each ending in `\n`), one message
    /// per line, stamped with the tick's time.
    pub fn write_events(&mut self, t_ns: i64, jsonl: &[u8]) -> Result<(), RecordingError> {
        for line in jsonl.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            self.message(self.events_channel, t_ns, t_ns, line)?;
        }
        Ok(())
    }

    /// One guard input (a `twin.GuardInput` JSON body), taken while the
    /// tick at `t_ns` was the last that had run.
    pub fn write_guard_input(&mut self, t_ns: i64, data: &[u8]) -> Result<(), RecordingError> {
        let channel = match self.guard_channel {
            Some(c) => c,
            None => {
                let mcap_err = |e| RecordingError::mcap(&self.path, e);
                let schema = self
                    .mcap
                    .add_schema(
                        format::GUARD_SCHEMA_NAME,
                        "jsonschema",
                        format::GUARD_SCHEMA.as_bytes(),
                    )
                    .map_err(mcap_err)?;
                let c = self
                    .mcap
                    .add_channel(schema, format::GUARD_TOPIC, "json", &BTreeMap::new())
                    .map_err(|e| RecordingError::mcap(&self.path, e))?;
                self.guard_channel = Some(c);
                c
            }
        };
        self.message(channel, t_ns, t_ns, data)
    }

    /// The run has reached tick `tick` at `t_ns`.
    pub fn write_tick(&mut self, tick: u64, t_ns: i64) -> Result<(), RecordingError> {
        let data = serde_json::to_vec(&TickMessage { tick, t_ns })
            .map_err(|e| RecordingError::invalid(&self.path, e.to_string()))?;
        self.message(self.ticks_channel, t_ns, t_ns, &data)
    }

    /// Close the open chunk and make the file durable up to here.
    pub fn flush(&mut self) -> Result<(), RecordingError> {
        use std::sync::atomic::Ordering;
        self.armed.store(true, Ordering::Relaxed);
        let r = self.mcap.flush();
        self.armed.store(false, Ordering::Relaxed);
        r.map_err(|e| RecordingError::mcap(&self.path, e))
    }

    /// Write the summary (indexes, statistics) and close the file.
    pub fn finish(mut self) -> Result<(), RecordingError> {
        let path = self.path.clone();
        self.armed.store(true, std::sync::atomic::Ordering::Relaxed);
        self.mcap
            .finish()
            .map_err(|e| RecordingError::mcap(&path, e))?;
        let mut out = self.mcap.into_inner();
        out.flush().map_err(|e| RecordingError::io(&path, e))
    }
}
