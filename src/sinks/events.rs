//! The JSONL event-stream sink (`--events PATH|-`).
//!
//! The tick loop must never wait for the reader: a pipe nobody reads, a FIFO
//! nobody opened, a slow disk. So [`EventStream::write_batch_at`] only copies a
//! tick's lines into a bounded in-memory buffer, and one thread per stream
//! opens the target (a FIFO blocks in open(2) until a reader comes) and writes
//! the buffer out, flushing whenever it has caught up, so a reader tailing the
//! file or pipe sees each tick as soon as it can take it.
//!
//! When the buffer is full the [`Overflow`] policy decides, like Vector's
//! `when_full`: drop the newest whole tick and later write one `gap` line
//! saying what was lost, or fail the run. Lines are written whole or not at
//! all: after a failed write to a file, the file is cut back to its last
//! complete line (a full disk must not leave half a JSON object behind).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tracing::warn;

use crate::twin::events::rfc3339;
use crate::wallclock;

/// What to do with a tick's lines when the reader has fallen so far behind
/// that the buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// Drop the newest tick, whole, and count it; once there is room again,
    /// write a `gap` line with the count before the next tick. The twin keeps
    /// running at its pace: the plant is not slowed down by a log reader.
    #[default]
    Drop,
    /// Stop the run with an error: for consumers that must never miss an
    /// event and prefer no twin to a twin with holes in its record.
    Fail,
    /// Wait for the reader: the producer slows down to the reader's pace.
    /// Only for runs that have no plant to keep up with (`twin replay`),
    /// whose output must be whole.
    Wait,
}

impl Overflow {
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::Drop => "drop",
            Overflow::Fail => "fail",
            Overflow::Wait => "wait",
        }
    }
}

/// Default size of the buffer between the tick loop and the writer: minutes
/// of a busy line's events, so a reader that pauses briefly loses nothing.
pub const DEFAULT_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Under [`Overflow::Wait`] (a replay running ahead of real time) the lines
/// of consecutive ticks are handed to the writer together once this many
/// bytes have gathered or [`COALESCE_AGE`] has passed since the last hand-over:
/// one tick per hand-over cost a wake-up and a write(2) per tick, a third
/// of a fast replay's time. A producer slower than that (a replay at 1x)
/// still hands over every tick at once.
const COALESCE_BYTES: usize = 256 * 1024;
const COALESCE_AGE: Duration = Duration::from_millis(10);

/// How long [`EventStream::flush`] waits for a writer that makes no progress
/// before giving up (a reader that is slow but reading keeps it waiting).
const FLUSH_STALL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventOptions {
    pub overflow: Overflow,
    /// Bytes the buffer holds at most. A single tick larger than this is
    /// still accepted when the buffer is empty.
    pub buffer_bytes: usize,
}

impl Default for EventOptions {
    fn default() -> Self {
        EventOptions {
            overflow: Overflow::Drop,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
        }
    }
}

/// Ticks and events dropped because the reader fell behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub ticks: u64,
    pub events: u64,
}

pub struct EventStream {
    target: String,
    /// Lines accepted into the stream (written or waiting to be), `gap`
    /// lines included.
    pub lines: u64,
    shared: Arc<Shared>,
    options: EventOptions,
    /// Ticks dropped since the last line that got through.
    gap: Option<Gap>,
    dropped: Dropped,
    /// When the writer was last seen to fall behind, to warn once per episode
    /// rather than once per tick.
    warned: Option<std::time::Instant>,
    /// Lines gathered under [`Overflow::Wait`], not handed over yet, and
    /// when the last hand-over was.
    pending: Vec<u8>,
    handed_over: Option<std::time::Instant>,
}

/// A run of dropped ticks, reported by one `gap` line.
struct Gap {
    ticks: u64,
    events: u64,
    /// Times of the first and last dropped tick, where the caller gave them.
    first_t_ns: Option<i64>,
    last_t_ns: Option<i64>,
}

/// Where the writer thread puts the bytes.
enum Output {
    /// A file can be cut back to its last complete line after a failed write.
    File(File),
    Stdout,
    Writer(Box<dyn Write + Send>),
    /// Tests: a writer that can be cut back, like a file.
    #[cfg(test)]
    Rewindable(Box<dyn RewindableWrite>),
}

#[cfg(test)]
trait RewindableWrite: Write + Send {
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// What the writer thread starts from: an open output, or a FIFO to open.
enum Opening {
    Ready(Output),
    Fifo(PathBuf),
}

#[derive(Default)]
struct State {
    queue: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Batches accepted and batches the writer is done with.
    queued: u64,
    written: u64,
    /// The writer thread's failure; it has stopped.
    failed: Option<(io::ErrorKind, String)>,
    /// The stream was dropped; the writer ends after the queue.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread.
    work: Condvar,
    /// Wakes a flush waiting for the writer.
    progress: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Never held across I/O or code that can panic.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, e: &io::Error) {
        let mut s = self.lock();
        s.failed = Some((e.kind(), e.to_string()));
        s.queue.clear();
        s.bytes = 0;
        drop(s);
        self.progress.notify_all();
    }
}

impl EventStream {
    /// `-` is stdout; anything else is a file, created or truncated. A FIFO
    /// is opened by the writer thread, so a FIFO without a reader delays
    /// nothing but its own output.
    pub fn open(target: &str) -> io::Result<Self> {
        Self::open_with(target, EventOptions::default())
    }

    /// [`open`](Self::open) with a buffer size and overflow policy.
    pub fn open_with(target: &str, options: EventOptions) -> io::Result<Self> {
        let opening = if target == "-" {
            Opening::Ready(Output::Stdout)
        } else {
            let path = Path::new(target);
            if is_fifo(path) {
                Opening::Fifo(path.to_path_buf())
            } else {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                Opening::Ready(Output::File(File::create(path)?))
            }
        };
        Ok(Self::start(opening, target, options))
    }

    /// An in-memory or custom writer (tests, embedding). It is written from
    /// the stream's own thread, so it may block without stalling the caller.
    /// Unlike a file, it cannot be cut back after a failed write.
    pub fn from_writer(out: Box<dyn Write + Send>, target: &str) -> Self {
        Self::start(
            Opening::Ready(Output::Writer(out)),
            target,
            EventOptions::default(),
        )
    }

    /// [`from_writer`](Self::from_writer) with a buffer size and overflow
    /// policy.
    pub fn from_writer_with(
        out: Box<dyn Write + Send>,
        target: &str,
        options: EventOptions,
    ) -> Self {
        Self::start(Opening::Ready(Output::Writer(out)), target, options)
    }

    fn start(opening: Opening, target: &str, options: EventOptions) -> Self {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
        });
        let s = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("event-writer".to_string())
            .spawn(move || writer_thread(&s, opening));
        if let Err(e) = spawned {
            shared.fail(&e);
        }
        EventStream {
            target: target.to_string(),
            lines: 0,
            shared,
            options,
            gap: None,
            dropped: Dropped::default(),
            warned: None,
            pending: Vec::new(),
            handed_over: None,
        }
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Ticks and events dropped so far under [`Overflow::Drop`].
    pub fn dropped(&self) -> Dropped {
        self.dropped
    }

    /// Hand over the encoded lines of the tick at `t_ns`. Never waits for the
    /// reader. Errors are the writer's (reported on the call after it failed;
    /// a reader that went away is `BrokenPipe`) or, under
    /// [`Overflow::Fail`], a full buffer. The time names the tick in a `gap`
    /// line if it is dropped.
    pub fn write_batch_at(&mut self, t_ns: i64, bytes: &[u8]) -> io::Result<()> {
        self.accept(Some(t_ns), bytes)
    }

    /// [`write_batch_at`](Self::write_batch_at) for lines without a tick time (a
    /// custom writer's bytes); a `gap` line for them carries no times.
    pub fn write_batch(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.accept(None, bytes)
    }

    fn accept(&mut self, t_ns: Option<i64>, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.options.overflow == Overflow::Wait {
            self.pending.extend_from_slice(bytes);
            let due = self
                .handed_over
                .is_none_or(|h| wallclock::since(h) >= COALESCE_AGE);
            if self.pending.len() < COALESCE_BYTES && !due {
                return self.failure();
            }
            let batch = std::mem::take(&mut self.pending);
            let res = self.hand_over(t_ns, &batch);
            self.pending = batch;
            self.pending.clear();
            self.handed_over = Some(wallclock::monotonic());
            return res;
        }
        self.hand_over(t_ns, bytes)
    }

    /// The writer's failure, if it has failed.
    fn failure(&self) -> io::Result<()> {
        match &self.shared.lock().failed {
            Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
            None => Ok(()),
        }
    }

    /// Hand over what [`Overflow::Wait`] has gathered.
    fn hand_over_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.pending);
        let res = self.hand_over(None, &batch);
        self.handed_over = Some(wallclock::monotonic());
        res
    }

    fn hand_over(&mut self, t_ns: Option<i64>, bytes: &[u8]) -> io::Result<()> {
        let mut s = self.shared.lock();
        if let Some((kind, msg)) = &s.failed {
            return Err(io::Error::new(*kind, msg.clone()));
        }
        let gap_line = self.gap.as_ref().map(Gap::line);
        let needed = bytes.len() + gap_line.as_ref().map_or(0, Vec::len);
        if self.options.overflow == Overflow::Wait {
            while s.bytes > 0 && s.bytes + needed > self.options.buffer_bytes && s.failed.is_none()
            {
                s = self
                    .shared
                    .progress
                    .wait(s)
                    .unwrap_or_else(|e| e.into_inner());
            }
            if let Some((kind, msg)) = &s.failed {
                return Err(io::Error::new(*kind, msg.clone()));
            }
        }
        if s.bytes > 0 && s.bytes + needed > self.options.buffer_bytes {
            drop(s);
            return self.overflow(t_ns, bytes);
        }
        let mut batch = gap_line.unwrap_or_default();
        batch.extend_from_slice(bytes);
        let lines = count_lines(&batch);
        s.bytes += batch.len();
        s.queued += 1;
        s.queue.push_back(batch);
        drop(s);
        self.shared.work.notify_one();
        self.lines += lines;
        self.gap = None;
        Ok(())
    }

    fn overflow(&mut self, t_ns: Option<i64>, bytes: &[u8]) -> io::Result<()> {
        let events = count_lines(bytes);
        match self.options.overflow {
            Overflow::Fail | Overflow::Wait => Err(io::Error::other(format!(
                "the reader fell behind by more than the {} byte buffer (--events-overflow fail)",
                self.options.buffer_bytes
            ))),
            Overflow::Drop => {
                self.dropped.ticks += 1;
                self.dropped.events += events;
                let gap = self.gap.get_or_insert(Gap {
                    ticks: 0,
                    events: 0,
                    first_t_ns: t_ns,
                    last_t_ns: None,
                });
                gap.ticks += 1;
                gap.events += events;
                gap.last_t_ns = t_ns;
                let quiet = self
                    .warned
                    .is_some_and(|w| wallclock::since(w) < Duration::from_secs(10));
                if !quiet {
                    self.warned = Some(wallclock::monotonic());
                    warn!(target = %self.target, buffer_bytes = self.options.buffer_bytes,
                        dropped_ticks = self.dropped.ticks,
                        "Event stream reader is falling behind; dropping whole ticks until it catches up.");
                }
                Ok(())
            }
        }
    }

    /// Wait until everything handed over is written and flushed, as long as
    /// the writer keeps making progress; a pending `gap` line is written
    /// first. A reader that has stalled gives `TimedOut` after a couple of
    /// seconds without progress, so a stop is never held up by it.
    pub fn flush(&mut self) -> io::Result<()> {
        self.hand_over_pending()?;
        if let Some(gap) = self.gap.take() {
            let line = gap.line();
            let mut s = self.shared.lock();
            if s.failed.is_none() {
                s.bytes += line.len();
                s.queued += 1;
                s.queue.push_back(line);
                self.lines += 1;
            }
            drop(s);
            self.shared.work.notify_one();
        }
        let mut s = self.shared.lock();
        let target = s.queued;
        let mut last = s.written;
        let mut since = wallclock::monotonic();
        while s.written < target && s.failed.is_none() {
            let (guard, _) = self
                .shared
                .progress
                .wait_timeout(s, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner());
            s = guard;
            if s.written != last {
                last = s.written;
                since = wallclock::monotonic();
            } else if wallclock::since(since) >= FLUSH_STALL {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the reader took nothing for {} s; {} bytes not written",
                        FLUSH_STALL.as_secs(),
                        s.bytes
                    ),
                ));
            }
        }
        match &s.failed {
            Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
            None => Ok(()),
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        // Best effort: a failure here was or will be reported by the writer.
        let _ = self.hand_over_pending();
        // The writer finishes the queue and ends; nobody waits for it, since a
        // reader that never reads would keep it forever.
        let mut s = self.shared.lock();
        s.closed = true;
        let unwritten = if s.failed.is_none() { s.bytes } else { 0 };
        drop(s);
        self.shared.work.notify_one();
        if unwritten > 0 {
            warn!(target = %self.target, bytes = unwritten,
                "Event stream closed with lines its reader had not taken; they may be lost.");
        }
        let d = self.dropped;
        if d.ticks > 0 {
            warn!(target = %self.target, ticks = d.ticks, events = d.events,
                "Event stream reader fell behind; whole ticks were dropped (see the gap lines).");
        }
    }
}

impl Gap {
    /// `{"v":1,"type":"gap","t":…,"until":…,"ticks":N,"events":M}`; the times
    /// are left out if the dropped lines had none (a custom writer's bytes).
    fn line(&self) -> Vec<u8> {
        let mut out = br#"{"v":1,"type":"gap""#.to_vec();
        if let (Some(first), Some(last)) = (self.first_t_ns, self.last_t_ns) {
            let (first, last) = (rfc3339(first), rfc3339(last));
            out.extend_from_slice(format!(r#","t":"{first}","until":"{last}""#).as_bytes());
        }
        out.extend_from_slice(
            format!(r#","ticks":{},"events":{}}}"#, self.ticks, self.events).as_bytes(),
        );
        out.push(b'\n');
        out
    }
}

fn count_lines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

#[cfg(unix)]
fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

#[cfg(not(unix))]
fn is_fifo(_path: &Path) -> bool {
    false
}

fn writer_thread(shared: &Shared, opening: Opening) {
    let mut out = match opening {
        Opening::Ready(out) => out,
        // Blocks until a reader opens the FIFO: only this thread waits.
        Opening::Fifo(path) => match std::fs::OpenOptions::new().write(true).open(&path) {
            Ok(f) => Output::File(f),
            Err(e) => return shared.fail(&e),
        },
    };
    // Bytes of whole lines known to be in the output.
    let mut committed: u64 = 0;
    let mut buf = Vec::new();
    loop {
        let n = {
            let mut s = shared.lock();
            while s.queue.is_empty() && !s.closed {
                s = shared.work.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            if s.queue.is_empty() {
                return;
            }
            let n = s.queue.len() as u64;
            for batch in s.queue.drain(..) {
                buf.extend_from_slice(&batch);
            }
            n
        };
        if let Err(e) = out.write_lines(&buf, committed) {
            return shared.fail(&e);
        }
        committed += buf.len() as u64;
        let mut s = shared.lock();
        s.bytes = s.bytes.saturating_sub(buf.len());
        s.written += n;
        drop(s);
        buf.clear();
        shared.progress.notify_all();
    }
}

impl Output {
    /// Write whole lines and flush; on failure, take back any part of them
    /// that got out, where the output allows it.
    fn write_lines(&mut self, buf: &[u8], committed: u64) -> io::Result<()> {
        let res = match self {
            Output::File(f) => f.write_all(buf).and_then(|()| f.flush()),
            Output::Stdout => {
                let mut o = io::stdout().lock();
                o.write_all(buf).and_then(|()| o.flush())
            }
            Output::Writer(w) => w.write_all(buf).and_then(|()| w.flush()),
            #[cfg(test)]
            Output::Rewindable(w) => w.write_all(buf).and_then(|()| w.flush()),
        };
        if res.is_err() {
            // Best effort: the write's error is what gets reported.
            let _ = match self {
                Output::File(f) => f
                    .set_len(committed)
                    .and_then(|()| f.seek(SeekFrom::Start(committed)).map(|_| ())),
                #[cfg(test)]
                Output::Rewindable(w) => w.truncate(committed),
                _ => Ok(()),
            };
        }
        res
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod tests;
