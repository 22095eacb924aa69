//! The recorder sink (`--record FILE.mcap`): every sample the core received
//! and every event it wrote, into a recording (docs/recordings.md).
//!
//! The tick loop only copies each tick's samples and event lines into a
//! byte-bounded queue; one thread per recording encodes them and writes the
//! MCAP file (`recording::RecordingWriter`). Every `flush` interval of tick
//! time (1 s by default) it closes the open chunk and syncs the file, so
//! kill -9 or a power cut loses at most that much. Where the file is cut
//! off, `twin recover` writes a clean copy.
//!
//! When the disk fails (full, removed, read-only) or falls behind by more
//! than the buffer, the recording stops: the file stays readable up to its
//! last flush, the sink leaves the run, and the driver writes an `error`
//! event. The twin keeps mirroring: a recording is never worth losing the
//! live view for.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::{info, warn};

use super::{Sink, SinkError, TickOutput};
use crate::config::LoadedConfig;
use crate::guard::{GuardInput, GuardInputRecord};
use crate::recording::format::{self, RecordingInfo};
use crate::recording::index::{self, IndexPart, RecordingIndex};
use crate::recording::{RecordingError, RecordingWriter};
use crate::twin::record::{RecordValue, SampleRecord};
use crate::twin::{Sample, TickClock};

/// Default flush interval: what kill -9 can lose at most.
pub const DEFAULT_FLUSH: Duration = Duration::from_secs(1);
/// Default bytes queued for a disk that falls behind before the recording
/// stops: many seconds of a busy plant's samples.
pub const DEFAULT_BUFFER_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderOptions {
    /// The file, or with rotation the base name of the files and index.
    pub path: PathBuf,
    pub flush_every: Duration,
    /// Start a new file once this many message bytes are in the current one.
    pub rotate_bytes: Option<u64>,
    /// Start a new file once the current one spans this much tick time.
    pub rotate_every: Option<Duration>,
    pub buffer_bytes: usize,
    /// `live` or `headless` (recorded in the metadata).
    pub origin: &'static str,
    /// When the buffer is full, wait for the disk instead of stopping the
    /// recording: for runs with no plant to keep up with (headless), whose
    /// recording must be whole.
    pub wait_when_full: bool,
}

impl RecorderOptions {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RecorderOptions {
            path: path.into(),
            flush_every: DEFAULT_FLUSH,
            rotate_bytes: None,
            rotate_every: None,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            origin: "live",
            wait_when_full: false,
        }
    }

    fn rotates(&self) -> bool {
        self.rotate_bytes.is_some() || self.rotate_every.is_some()
    }
}

enum Job {
    Samples {
        tick: u64,
        samples: Vec<Sample>,
    },
    Tick {
        tick: u64,
        t_ns: i64,
        jsonl: Vec<u8>,
    },
    Guard {
        tick: u64,
        inputs: Vec<GuardInput>,
    },
}

impl Job {
    /// What the job counts for against the buffer: about what it takes in
    /// memory and on disk.
    fn bytes(&self) -> usize {
        match self {
            Job::Samples { samples, .. } => samples.len() * 96,
            Job::Tick { jsonl, .. } => jsonl.len() + 32,
            Job::Guard { inputs, .. } => inputs.len() * 128,
        }
    }
}

#[derive(Default)]
struct Shared {
    /// Bytes queued and not yet written.
    pending: AtomicUsize,
    /// Why the writer stopped, once it has.
    failed: Mutex<Option<String>>,
}

impl Shared {
    fn failed(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn fail(&self, why: String) {
        let mut f = self.failed.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert(why);
    }
}

/// What a recording holds once it is closed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecorderReport {
    pub files: Vec<PathBuf>,
    pub messages: u64,
    pub last_tick: u64,
}

pub struct Recorder {
    options: RecorderOptions,
    /// What every file's metadata says, but the epoch (set on start).
    info: RecordingInfo,
    config_text: Arc<str>,
    /// The model files the run's config loads: every file of the
    /// recording carries them.
    model_files: Arc<[format::ModelFile]>,
    tag_names: Arc<[Arc<str>]>,
    tx: Option<mpsc::Sender<Job>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<RecorderReport>>,
    target: String,
}

impl Recorder {
    /// A recorder of runs of `cfg`. The file is created when the run starts
    /// ([`Sink::start`]), when its epoch is known.
    pub fn new(cfg: &LoadedConfig, options: RecorderOptions) -> Self {
        let info = RecordingInfo {
            format_version: format::FORMAT_VERSION,
            twin_version: env!("CARGO_PKG_VERSION").to_string(),
            plant: cfg.config.plant.name.clone(),
            config_path: cfg.file.path.display().to_string(),
            config_hash: format::config_hash(&cfg.file.text),
            tick_ns: i64::try_from(cfg.config.plant.tick.as_nanos()).unwrap_or(i64::MAX),
            epoch_ns: 0,
            started_at: String::new(),
            part: 1,
            first_tick: 0,
            origin: options.origin.to_string(),
            models: format::model_hashes(cfg),
        };
        let target = options.path.display().to_string();
        Recorder {
            options,
            info,
            config_text: Arc::from(cfg.file.text.as_str()),
            model_files: format::model_files(cfg).into(),
            tag_names: cfg
                .tags
                .iter()
                .map(|t| Arc::from(t.name.as_str()))
                .collect(),
            tx: None,
            shared: Arc::new(Shared::default()),
            thread: None,
            target,
        }
    }

    /// See [`RecorderOptions::wait_when_full`].
    pub fn waiting_when_full(mut self) -> Self {
        self.options.wait_when_full = true;
        self
    }

    fn stopped(&self, detail: String) -> SinkError {
        SinkError::Stopped {
            sink: "recorder",
            target: self.target.clone(),
            detail,
        }
    }

    fn send(&mut self, job: Job) -> Result<(), SinkError> {
        let bytes = job.bytes();
        if let Some(why) = self.shared.failed() {
            self.tx = None;
            return Err(self.stopped(why));
        }
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        if self.options.wait_when_full {
            while self.shared.pending.load(Ordering::Acquire) + bytes > self.options.buffer_bytes
                && self.shared.pending.load(Ordering::Acquire) > 0
                && self.shared.failed().is_none()
            {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let pending = self.shared.pending.fetch_add(bytes, Ordering::AcqRel);
        if pending + bytes > self.options.buffer_bytes && pending > 0 {
            let why = format!(
                "the disk fell behind by more than the {} MiB buffer",
                self.options.buffer_bytes >> 20
            );
            self.shared.fail(why.clone());
            // Closing the queue lets the writer finish what it has.
            self.tx = None;
            return Err(self.stopped(why));
        }
        if tx.send(job).is_err() {
            let why = self
                .shared
                .failed()
                .unwrap_or_else(|| "the recording's writer ended".to_string());
            self.tx = None;
            return Err(self.stopped(why));
        }
        Ok(())
    }
}

impl Sink for Recorder {
    fn start(&mut self, clock: &TickClock) -> Result<(), SinkError> {
        let mut info = self.info.clone();
        info.epoch_ns = clock.time_of(0);
        info.first_tick = clock.tick();
        info.started_at = crate::twin::events::rfc3339(crate::wallclock::now_ns());
        let path = if self.options.rotates() {
            index::part_path(&self.options.path, 1)
        } else {
            self.options.path.clone()
        };
        // A file that cannot be made (no such folder, no permission) stops
        // the run before it starts: the command line is wrong.
        let file = RecordingWriter::open(&path).map_err(|e| SinkError::Io {
            sink: "recorder",
            target: self.target.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        // A disk that cannot take the file's identity (config, model files)
        // is a full disk, as it would be an hour later: the recording stops
        // and the twin keeps mirroring (the first write reports it).
        let writer = match RecordingWriter::start(
            file,
            &path,
            &info,
            &self.config_text,
            &self.model_files,
        ) {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "The recording stopped before its first flush; the twin keeps mirroring.");
                self.shared.fail(e.to_string());
                return Ok(());
            }
        };
        info!(file = %path.display(), flush_ms = self.options.flush_every.as_millis() as u64,
            "Recording.");
        let (tx, rx) = mpsc::channel();
        let mut w = Writing {
            writer: Some(writer),
            info,
            config_text: self.config_text.clone(),
            model_files: self.model_files.clone(),
            tag_names: self.tag_names.clone(),
            options: self.options.clone(),
            shared: self.shared.clone(),
            index: RecordingIndex::new(),
            report: RecorderReport::default(),
            last_flush_ns: clock.now_ns(),
            part_start_ns: clock.now_ns(),
            tick: (clock.tick(), clock.now_ns()),
        };
        w.report.files.push(path.clone());
        if self.options.rotates() {
            w.index_part(&path, clock.tick());
        }
        let thread = std::thread::Builder::new()
            .name("recorder".to_string())
            .spawn(move || w.run(rx))
            .map_err(|e| SinkError::Io {
                sink: "recorder",
                target: self.target.clone(),
                source: e,
            })?;
        self.tx = Some(tx);
        self.thread = Some(thread);
        Ok(())
    }

    fn wants_samples(&self) -> bool {
        true
    }

    fn write_samples(&mut self, tick: u64, samples: &[Sample]) -> Result<(), SinkError> {
        if samples.is_empty() {
            return Ok(());
        }
        self.send(Job::Samples {
            tick,
            samples: samples.to_vec(),
        })
    }

    fn write_guard_inputs(&mut self, tick: u64, inputs: &[GuardInput]) -> Result<(), SinkError> {
        self.send(Job::Guard {
            tick,
            inputs: inputs.to_vec(),
        })
    }

    fn write_tick(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        self.send(Job::Tick {
            tick: out.tick,
            t_ns: out.t_ns,
            jsonl: out.jsonl.to_vec(),
        })
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.tx = None;
        let report = self.thread.take().map(|t| t.join());
        match report {
            Some(Ok(r)) => {
                if let Some(why) = self.shared.failed() {
                    return Err(self.stopped(why));
                }
                info!(files = r.files.len(), messages = r.messages, last_tick = r.last_tick,
                    file = %r.files.last().map(|p| p.display().to_string()).unwrap_or_default(),
                    "Recording closed.");
                Ok(())
            }
            Some(Err(_)) => Err(self.stopped("the recording's writer panicked".to_string())),
            None => Ok(()),
        }
    }
}

/// The writer thread's state.
struct Writing {
    writer: Option<RecordingWriter>,
    info: RecordingInfo,
    config_text: Arc<str>,
    model_files: Arc<[format::ModelFile]>,
    tag_names: Arc<[Arc<str>]>,
    options: RecorderOptions,
    shared: Arc<Shared>,
    index: RecordingIndex,
    report: RecorderReport,
    last_flush_ns: i64,
    part_start_ns: i64,
    /// The last tick seen, and its time.
    tick: (u64, i64),
}

impl Writing {
    fn run(mut self, rx: mpsc::Receiver<Job>) -> RecorderReport {
        while let Ok(job) = rx.recv() {
            let bytes = job.bytes();
            if self.writer.is_some()
                && let Err(e) = self.take(job)
            {
                self.fail(e);
            }
            self.shared.pending.fetch_sub(bytes, Ordering::AcqRel);
        }
        if let Some(mut w) = self.writer.take() {
            let (tick, t_ns) = self.tick;
            let closed = w.write_tick(tick, t_ns).and_then(|()| {
                self.report.messages += w.messages();
                w.finish()
            });
            match closed {
                Ok(()) => {
                    self.report.last_tick = tick;
                    self.close_index_part(tick);
                }
                Err(e) => self.fail(e),
            }
        }
        self.report
    }

    fn fail(&mut self, e: RecordingError) {
        warn!(error = %e, "The recording stopped; the file holds what was written up to its last flush.");
        self.shared.fail(e.to_string());
        // Dropping the writer closes the file as it is: what reached the
        // disk up to the last flush stays readable.
        if let Some(w) = self.writer.take() {
            self.report.messages += w.messages();
            drop(w);
        }
    }

    fn take(&mut self, job: Job) -> Result<(), RecordingError> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        match job {
            Job::Samples { tick, samples } => {
                for s in samples {
                    let Some(name) = self.tag_names.get(s.tag.index()) else {
                        continue;
                    };
                    let r = SampleRecord {
                        tag: name.clone(),
                        value: s.value.as_ref().map(RecordValue::from),
                        quality: s.quality,
                        reason: s.reason,
                        source_time_ns: s.source_time_ns,
                        recv_time_ns: s.recv_time_ns,
                    };
                    w.write_sample(tick, &r)?;
                }
            }
            Job::Guard { tick, inputs } => {
                let t_ns = self.info.time_of(tick);
                for input in inputs {
                    let record = GuardInputRecord { tick, input };
                    let data = serde_json::to_vec(&record).map_err(|e| {
                        RecordingError::invalid(w.path(), format!("a guard input: {e}"))
                    })?;
                    w.write_guard_input(t_ns, &data)?;
                }
            }
            Job::Tick { tick, t_ns, jsonl } => {
                self.tick = (tick, t_ns);
                w.write_events(t_ns, &jsonl)?;
                let flush_ns =
                    i64::try_from(self.options.flush_every.as_nanos()).unwrap_or(i64::MAX);
                if t_ns.saturating_sub(self.last_flush_ns) >= flush_ns {
                    w.write_tick(tick, t_ns)?;
                    w.flush()?;
                    self.last_flush_ns = t_ns;
                    self.maybe_rotate(tick, t_ns)?;
                }
            }
        }
        Ok(())
    }

    fn maybe_rotate(&mut self, tick: u64, t_ns: i64) -> Result<(), RecordingError> {
        let Some(w) = self.writer.as_ref() else {
            return Ok(());
        };
        let by_size = self
            .options
            .rotate_bytes
            .is_some_and(|b| w.raw_bytes() >= b);
        let by_time = self.options.rotate_every.is_some_and(|d| {
            t_ns.saturating_sub(self.part_start_ns)
                >= i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
        });
        if !(by_size || by_time) {
            return Ok(());
        }
        if let Some(old) = self.writer.take() {
            self.report.messages += old.messages();
            old.finish()?;
        }
        self.close_index_part(tick);
        self.info.part += 1;
        self.info.first_tick = tick;
        let path = index::part_path(&self.options.path, self.info.part);
        let w = RecordingWriter::create(&path, &self.info, &self.config_text, &self.model_files)?;
        info!(file = %path.display(), part = self.info.part, "Recording goes on in a new file.");
        self.writer = Some(w);
        self.part_start_ns = t_ns;
        self.report.files.push(path.clone());
        self.index_part(&path, tick);
        Ok(())
    }

    fn index_part(&mut self, path: &Path, first_tick: u64) {
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.index.parts.push(IndexPart {
            file,
            first_tick,
            last_tick: None,
        });
        self.save_index();
    }

    fn close_index_part(&mut self, last_tick: u64) {
        if let Some(p) = self.index.parts.last_mut() {
            p.last_tick = Some(last_tick);
            self.save_index();
        }
    }

    fn save_index(&self) {
        if !self.options.rotates() {
            return;
        }
        let path = index::index_path(&self.options.path);
        if let Err(e) = self.index.save(&path) {
            warn!(error = %e, "Cannot write the recording's index; the files still replay one by one.");
        }
    }
}
