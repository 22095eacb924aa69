//! Logs to stderr that can never stall or kill the twin.
//!
//! stderr is outside input: it can be `/dev/full`, a pipe whose reader has
//! gone (`twin run … 2>&1 | head`), a disk that fills, or a terminal that
//! nobody scrolls. tracing-subscriber's own stderr writer reports a failed
//! write with `eprintln!`, which panics, and a panic inside a source's task
//! kills that source. A blocking write would hold a tick or a poll.
//!
//! So a log line is only ever copied into a bounded in-memory queue; one
//! thread writes the queue to stderr. A line that does not fit, or that
//! stderr refuses, is dropped and counted, and the count is reported when the
//! command ends, in case stderr works again by then.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

use crate::wallclock;

/// Bytes of log text held while stderr is slow. A few thousand lines: enough
/// for a burst of warnings, small enough never to matter for memory.
const QUEUE_BYTES: usize = 1024 * 1024;

/// How long the end of a command waits for queued lines to reach stderr
/// without any of them getting through. A reader that is merely slow keeps
/// the wait going; one that has stalled does not hold the exit.
const DRAIN_STALL: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Queue {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    /// Lines accepted into the queue so far.
    queued: u64,
    /// Lines the writer thread has finished with (written or dropped).
    handled: u64,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer thread when a line is queued.
    work: Condvar,
    /// Wakes [`drain`] when the writer thread finished a line.
    progress: Condvar,
    dropped: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The lock is never held across I/O or code that can panic; if it
        // ever was poisoned the queue is still consistent.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, line: Vec<u8>) {
        if line.is_empty() {
            return;
        }
        let mut q = self.lock();
        if q.bytes + line.len() > QUEUE_BYTES {
            drop(q);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.bytes += line.len();
        q.queued += 1;
        q.lines.push_back(line);
        drop(q);
        self.work.notify_one();
    }

    fn run_writer(&self) {
        let mut batch = Vec::new();
        loop {
            {
                let mut q = self.lock();
                while q.lines.is_empty() {
                    q = self.work.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                batch.extend(q.lines.drain(..));
                q.bytes = 0;
            }
            let mut err = io::stderr().lock();
            let n = batch.len() as u64;
            for line in batch.drain(..) {
                if err.write_all(&line).is_err() {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(err);
            self.lock().handled += n;
            self.progress.notify_all();
        }
    }
}

static SHARED: OnceLock<Option<Arc<Shared>>> = OnceLock::new();

fn shared() -> Option<&'static Arc<Shared>> {
    SHARED
        .get_or_init(|| {
            let shared = Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                work: Condvar::new(),
                progress: Condvar::new(),
                dropped: AtomicU64::new(0),
            });
            let s = shared.clone();
            // Without the thread, writes go straight to stderr (see
            // `LogLine::drop`): they can block, but still never panic.
            std::thread::Builder::new()
                .name("log-writer".to_string())
                .spawn(move || s.run_writer())
                .ok()
                .map(|_| shared)
        })
        .as_ref()
}

/// The `MakeWriter` for the log subscriber: one [`LogLine`] per event.
#[derive(Clone, Copy, Default)]
pub struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

/// One formatted event; queued whole when the formatter is done with it, so
/// lines from different threads never interleave.
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        write_text(std::mem::take(&mut self.0));
    }
}

/// Queue text for stderr that is not a log event (a config report), so it
/// keeps its place among the log lines and obeys the same rules.
pub fn write_text(text: impl Into<Vec<u8>>) {
    let text = text.into();
    match shared() {
        Some(s) => s.push(text),
        None => {
            let _ = io::stderr().write_all(&text);
        }
    }
}

/// The queue, if anything was ever logged (no thread is started to ask).
fn started() -> Option<&'static Arc<Shared>> {
    SHARED.get().and_then(Option::as_ref)
}

/// Log lines dropped so far: the queue was full or stderr refused them.
pub fn dropped() -> u64 {
    started().map_or(0, |s| s.dropped.load(Ordering::Relaxed))
}

/// Wait until every queued line has reached stderr, or until the writer
/// thread has made no progress for [`DRAIN_STALL`]. Returns whether
/// everything was written.
pub fn drain() -> bool {
    let Some(s) = started() else { return true };
    let mut q = s.lock();
    let target = q.queued;
    let mut last = q.handled;
    let mut since = wallclock::monotonic();
    while q.handled < target {
        let (guard, _) = s
            .progress
            .wait_timeout(q, Duration::from_millis(50))
            .unwrap_or_else(|e| e.into_inner());
        q = guard;
        if q.handled != last {
            last = q.handled;
            since = wallclock::monotonic();
        } else if wallclock::since(since) >= DRAIN_STALL {
            return false;
        }
    }
    true
}

/// The end of a command: report the lines that were lost, then give stderr a
/// bounded chance to take what is queued (the process exits right after).
pub fn finish() {
    let _ = drain();
    let broker = BROKER_LINES_SUPPRESSED.load(Ordering::Relaxed);
    if broker > 0 {
        tracing::warn!(
            suppressed = broker,
            per_window = BROKER_LOG_BURST,
            window_s = BROKER_LOG_WINDOW.as_secs(),
            "Lines of the embedded MQTT broker were suppressed: it logs one per misbehaving connection, so they are limited."
        );
    }
    let n = dropped();
    if n > 0 {
        tracing::warn!(
            dropped = n,
            "Log lines were dropped because stderr was full, closed or too slow."
        );
    }
    if broker > 0 || n > 0 {
        let _ = drain();
    }
}

/// rumqttd lines let through per [`BROKER_LOG_WINDOW`]. The embedded broker
/// logs an ERROR for every connection that sends garbage or an oversized
/// packet, so any client on its port could otherwise fill the log (a few
/// hundred lines a second from one script).
const BROKER_LOG_BURST: u32 = 10;
const BROKER_LOG_WINDOW: Duration = Duration::from_secs(10);
/// rumqttd lines held back by the limit, reported when the command ends.
static BROKER_LINES_SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// Drops the two ERROR lines rumqttd writes for a client that ends its
/// session cleanly, as our sources and the virtual plant do on shutdown with
/// an MQTT DISCONNECT. The router removes the connection when it reads the
/// packet; then, depending on which side closes first, either the socket's
/// close reaches the router and it logs `no-connection id N is already gone`
/// (its `handle_disconnection` comment calls this the double disconnect), or
/// the connection's task finds the router's channel gone and logs
/// `router-drop` with `Recv(Disconnected)` (its `broker.rs` says such a
/// disconnection "originated internally in the router", which logs its own
/// reason when it is not a clean one). No order of shutdown avoids both, and a
/// user reads an ERROR at a clean exit as a failure. Every other rumqttd line
/// passes, at most [`BROKER_LOG_BURST`] of them per [`BROKER_LOG_WINDOW`].
#[derive(Default)]
pub struct BenignBrokerNoise {
    /// The current window's start and the lines let through in it.
    window: Mutex<Option<(std::time::Instant, u32)>>,
}

impl BenignBrokerNoise {
    /// Whether a rumqttd line at `now` is within the limit; one that is not
    /// is counted.
    fn admit(&self, now: std::time::Instant) -> bool {
        let Ok(mut w) = self.window.lock() else {
            return true;
        };
        match &mut *w {
            Some((start, n)) if now.saturating_duration_since(*start) < BROKER_LOG_WINDOW => {
                if *n < BROKER_LOG_BURST {
                    *n += 1;
                    true
                } else {
                    BROKER_LINES_SUPPRESSED.fetch_add(1, Ordering::Relaxed);
                    false
                }
            }
            _ => {
                *w = Some((now, 1));
                true
            }
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for BenignBrokerNoise {
    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        let meta = event.metadata();
        // Its info and debug lines are only there when asked for (`--log`).
        if !meta.target().starts_with("rumqttd") || *meta.level() > tracing::Level::WARN {
            return true;
        }
        if *meta.level() == tracing::Level::ERROR {
            let mut fields = Fields::default();
            event.record(&mut fields);
            if is_clean_disconnect_noise(meta.target(), &fields.message, &fields.error) {
                return false;
            }
        }
        self.admit(wallclock::monotonic())
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    error: String,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "error" => self.error = format!("{value:?}"),
            _ => {}
        }
    }
}

fn is_clean_disconnect_noise(target: &str, message: &str, error: &str) -> bool {
    match target {
        // `no-connection id <number> is already gone`, and nothing else.
        "rumqttd::router::routing" => message
            .strip_prefix("no-connection id ")
            .and_then(|rest| rest.strip_suffix(" is already gone"))
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())),
        "rumqttd::server::broker" => message == "router-drop" && error == "Recv(Disconnected)",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unstarted() -> Shared {
        Shared {
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
            progress: Condvar::new(),
            dropped: AtomicU64::new(0),
        }
    }

    #[test]
    fn r9_a_log_line_that_does_not_fit_is_dropped_and_counted_not_waited_for() {
        // No writer thread: stderr takes nothing, as when its reader stalls.
        let s = unstarted();
        let line = vec![b'x'; 1000];
        let fits = QUEUE_BYTES / line.len();
        for _ in 0..fits + 10 {
            s.push(line.clone());
        }
        assert_eq!(s.lock().lines.len(), fits);
        assert_eq!(s.dropped.load(Ordering::Relaxed), 10);
    }

    #[test]
    fn r9_only_the_clean_disconnect_lines_of_rumqttd_are_dropped() {
        let routing = "rumqttd::router::routing";
        let broker = "rumqttd::server::broker";
        assert!(is_clean_disconnect_noise(
            routing,
            "no-connection id 1 is already gone",
            ""
        ));
        assert!(is_clean_disconnect_noise(
            routing,
            "no-connection id 12345 is already gone",
            ""
        ));
        assert!(!is_clean_disconnect_noise(
            routing,
            "no-connection id  is already gone",
            ""
        ));
        assert!(!is_clean_disconnect_noise(
            routing,
            "no-connection id 1 is gone",
            ""
        ));
        assert!(is_clean_disconnect_noise(
            broker,
            "router-drop",
            "Recv(Disconnected)"
        ));
        assert!(!is_clean_disconnect_noise(
            broker,
            "router-drop",
            "Send(Full)"
        ));
        assert!(!is_clean_disconnect_noise(
            broker,
            "disconnected",
            "Recv(Disconnected)"
        ));
        assert!(!is_clean_disconnect_noise(
            "rumqttd::other",
            "router-drop",
            "Recv(Disconnected)"
        ));
    }

    /// Counts the events that get past the filter.
    struct Count(Arc<AtomicU64>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Count {
        fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[derive(Debug)]
    enum LinkError {
        Recv(Disconnected),
    }
    #[derive(Debug)]
    struct Disconnected;

    #[test]
    fn r9_rumqttd_clean_disconnect_errors_are_filtered_as_they_are_logged() {
        use tracing_subscriber::layer::SubscriberExt;
        let seen = Arc::new(AtomicU64::new(0));
        let subscriber = tracing_subscriber::registry()
            .with(BenignBrokerNoise::default())
            .with(Count(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            // As rumqttd 0.20 writes them (router/routing.rs, server/broker.rs).
            let id = 1;
            tracing::error!(target: "rumqttd::router::routing", "no-connection id {} is already gone", id);
            let e = LinkError::Recv(Disconnected);
            tracing::error!(target: "rumqttd::server::broker", error = ?e, "router-drop");
            assert_eq!(seen.load(Ordering::Relaxed), 0, "both are dropped");
            // Anything else still gets through.
            tracing::error!(target: "rumqttd::server::broker", error = ?e, "disconnected");
            tracing::warn!(target: "rumqttd::router::routing", "no-connection id {} is already gone", id);
            tracing::error!(target: "twin::runtime", "no-connection id 1 is already gone");
            assert_eq!(seen.load(Ordering::Relaxed), 3);
        });
    }

    /// One client sending garbage to the embedded broker in a loop made
    /// rumqttd log an ERROR per connection, a few hundred lines a second
    /// with nothing to bound them. Now at most a burst per window gets
    /// through; the twin's own lines are never held back.
    #[test]
    fn r_hostile_rumqttd_lines_are_limited_per_window_and_twins_are_not() {
        use tracing_subscriber::layer::SubscriberExt;
        let seen = Arc::new(AtomicU64::new(0));
        let subscriber = tracing_subscriber::registry()
            .with(BenignBrokerNoise::default())
            .with(Count(seen.clone()));
        let before = BROKER_LINES_SUPPRESSED.load(Ordering::Relaxed);
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..1000 {
                tracing::error!(target: "rumqttd::server::broker", error = "MalformedRemainingLength",
                    "Error while handling MQTT connect packet");
            }
            assert_eq!(seen.load(Ordering::Relaxed), u64::from(BROKER_LOG_BURST));
            // Asked-for detail (`--log rumqttd=info`) is not limited.
            for _ in 0..10 {
                tracing::info!(target: "rumqttd::server::broker", "Accepted new connection");
            }
            assert_eq!(
                seen.load(Ordering::Relaxed),
                u64::from(BROKER_LOG_BURST) + 10
            );
            for _ in 0..100 {
                tracing::warn!(target: "twin::sources::mqtt", "Dropped malformed MQTT payload.");
            }
            assert_eq!(
                seen.load(Ordering::Relaxed),
                u64::from(BROKER_LOG_BURST) + 110
            );
        });
        assert!(
            BROKER_LINES_SUPPRESSED.load(Ordering::Relaxed) >= before + 990,
            "the held-back lines are counted for the report at exit"
        );
        // A new window lets a burst through again.
        let limit = BenignBrokerNoise::default();
        let t0 = wallclock::monotonic();
        let first: Vec<bool> = (0..=BROKER_LOG_BURST).map(|_| limit.admit(t0)).collect();
        assert_eq!(
            first.iter().filter(|a| **a).count(),
            BROKER_LOG_BURST as usize
        );
        assert!(limit.admit(t0 + BROKER_LOG_WINDOW));
    }
}
