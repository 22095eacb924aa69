//! `GET /api/v1/events`: the run's event lines, live, as server-sent events.
//!
//! [`EventHub`] is the fan-out between the tick loop and the clients. The
//! sink hands it each tick's JSON lines (the bytes `--events` writes); the
//! hub offers every line to every client's bounded queue with `try_send`,
//! so the tick never waits on a client and nothing grows without bound. A
//! client whose queue is full is too slow to follow the run: it is
//! dropped (its stream ends with an `event: dropped` saying why) and
//! `twin_http_event_clients_dropped_total` counts it. At most
//! [`MAX_CLIENTS`] streams are open at once.
//!
//! Filters (`?type=`, `?machine=`, `?tag=`) need the lines' fields; they
//! are read once per line and tick, and only while a client has a filter.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Deserialize;
use tokio::sync::mpsc;

/// The most event streams open at once; one more is answered `503`.
pub const MAX_CLIENTS: usize = 256;

/// Lines a client may have waiting before it is dropped: many ticks of
/// a plant's events, so only a client that has stopped keeping up fills it.
pub const QUEUE_LINES: usize = 4096;

/// The seconds between keep-alive comments, so that proxies keep an idle
/// stream open.
pub const KEEP_ALIVE_SECS: u64 = 15;

/// Which events a client wants: each list given must hold the event's
/// field; `None` lets every event pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    pub types: Option<Vec<String>>,
    pub machines: Option<Vec<String>>,
    pub tags: Option<Vec<String>>,
}

impl Filter {
    fn is_empty(&self) -> bool {
        self.types.is_none() && self.machines.is_none() && self.tags.is_none()
    }

    fn passes(&self, f: &Fields<'_>) -> bool {
        fn one(want: &Option<Vec<String>>, have: &Option<Cow<'_, str>>) -> bool {
            match want {
                None => true,
                Some(list) => have.as_deref().is_some_and(|h| list.iter().any(|w| w == h)),
            }
        }
        one(&self.types, &f.r#type) && one(&self.machines, &f.machine) && one(&self.tags, &f.tag)
    }
}

/// The fields a filter looks at; the rest of the line is skipped.
#[derive(Debug, Default, Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default)]
    r#type: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    machine: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    tag: Option<Cow<'a, str>>,
}

/// What a client's stream receives.
#[derive(Debug)]
pub enum Item {
    /// One event's JSON line, without its newline.
    Line(Arc<str>),
    /// The run has ended: no more events will come.
    End,
}

struct Client {
    tx: mpsc::Sender<Item>,
    filter: Filter,
    /// Set when the hub drops the client, for its stream to say why.
    dropped: Arc<std::sync::atomic::AtomicBool>,
}

#[derive(Default)]
struct Inner {
    clients: Mutex<Vec<Client>>,
    /// Open streams (a stream's [`Subscription`] holds one).
    open: AtomicUsize,
    dropped_total: AtomicU64,
}

/// The fan-out of event lines to the streaming clients; cheap to clone.
#[derive(Clone, Default)]
pub struct EventHub {
    inner: Arc<Inner>,
}

/// Why a client cannot subscribe.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error(
        "too many event streams are open (at most {MAX_CLIENTS}); close one or try again later"
    )]
    Full,
}

/// One client's end: its queue, and its place among the open streams
/// (given back when dropped).
pub struct Subscription {
    pub rx: mpsc::Receiver<Item>,
    dropped: Arc<std::sync::atomic::AtomicBool>,
    hub: Arc<Inner>,
}

impl Subscription {
    /// Whether the hub dropped this client for falling behind.
    pub fn was_dropped(&self) -> bool {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EventHub {
    fn clients(&self) -> MutexGuard<'_, Vec<Client>> {
        // The list is whole between statements: a panic elsewhere leaves
        // nothing half-done in it.
        match self.inner.clients.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A new client with `filter`, or `Full` above [`MAX_CLIENTS`].
    pub fn subscribe(&self, filter: Filter) -> Result<Subscription, SubscribeError> {
        self.subscribe_with(filter, QUEUE_LINES)
    }

    fn subscribe_with(&self, filter: Filter, queue: usize) -> Result<Subscription, SubscribeError> {
        let taken = self
            .inner
            .open
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_CLIENTS).then_some(n + 1)
            });
        if taken.is_err() {
            return Err(SubscribeError::Full);
        }
        let (tx, rx) = mpsc::channel(queue);
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = self.clients();
        // Clients gone since the last tick leave now, not only at the next.
        clients.retain(|c| !c.tx.is_closed());
        clients.push(Client {
            tx,
            filter,
            dropped: dropped.clone(),
        });
        Ok(Subscription {
            rx,
            dropped,
            hub: self.inner.clone(),
        })
    }

    /// Clients dropped for a full queue, over the run.
    pub fn dropped_total(&self) -> u64 {
        self.inner.dropped_total.load(Ordering::Relaxed)
    }

    /// Event streams open now.
    pub fn open(&self) -> usize {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Offer a tick's JSON lines to every client. Never waits: a client
    /// whose queue is full is dropped, one that has gone is forgotten.
    pub fn publish(&self, jsonl: &[u8]) {
        let mut clients = self.clients();
        if clients.is_empty() || jsonl.is_empty() {
            return;
        }
        let any_filter = clients.iter().any(|c| !c.filter.is_empty());
        for raw in jsonl.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            // Our own encoder wrote the line: it is UTF-8 and JSON, but a
            // line that were not would be skipped rather than trusted.
            let Ok(text) = std::str::from_utf8(raw) else {
                continue;
            };
            let fields: Fields<'_> = if any_filter {
                serde_json::from_str(text).unwrap_or_default()
            } else {
                Fields::default()
            };
            let line: Arc<str> = Arc::from(text);
            clients.retain(|c| {
                if !c.filter.passes(&fields) {
                    return !c.tx.is_closed();
                }
                match c.tx.try_send(Item::Line(line.clone())) {
                    Ok(()) => true,
                    Err(mpsc::error::TrySendError::Closed(_)) => false,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        c.dropped.store(true, Ordering::Relaxed);
                        self.inner.dropped_total.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            queue = QUEUE_LINES,
                            "HTTP: an event stream client fell behind the run and was dropped."
                        );
                        false
                    }
                }
            });
            if clients.is_empty() {
                return;
            }
        }
    }

    /// The run has ended: tell every client, then let them go.
    pub fn close(&self) {
        let mut clients = self.clients();
        for c in clients.iter() {
            // A full queue ends without the word; it ends all the same.
            let _ = c.tx.try_send(Item::End);
        }
        clients.clear();
    }
}

impl Filter {
    /// Does `line` (one event's JSON) pass? For tests and single lines;
    /// the hub reads each line's fields once for all clients.
    pub fn passes_line(&self, line: &str) -> bool {
        self.is_empty()
            || serde_json::from_str::<Fields<'_>>(line)
                .map(|f| self.passes(&f))
                .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &[&str]) -> Option<Vec<String>> {
        Some(s.iter().map(|x| x.to_string()).collect())
    }

    const TAG: &str = r#"{"v":1,"type":"tag","tag":"infeed.speed","machine":"infeed","value":0.5}"#;
    const FREE: &str = r#"{"v":1,"type":"tag","tag":"plant.t","machine":null,"value":1}"#;
    const ALARM: &str = r#"{"v":1,"type":"alarm","model":"m","machine":"filler"}"#;

    #[test]
    fn a_filter_wants_every_field_it_names_and_events_without_it_fail() {
        let f = Filter {
            types: list(&["tag", "alarm"]),
            machines: list(&["infeed"]),
            tags: None,
        };
        assert!(f.passes_line(TAG));
        assert!(!f.passes_line(ALARM), "wrong machine");
        assert!(!f.passes_line(FREE), "a null machine does not pass");
        let t = Filter {
            tags: list(&["infeed.speed"]),
            ..Filter::default()
        };
        assert!(t.passes_line(TAG));
        assert!(!t.passes_line(ALARM), "no tag field");
        assert!(Filter::default().passes_line(ALARM));
    }

    #[test]
    fn a_client_that_never_reads_is_dropped_and_the_others_keep_going() {
        let hub = EventHub::default();
        let stuck = hub
            .subscribe_with(Filter::default(), 4)
            .expect("room for a client");
        let mut reader = hub
            .subscribe_with(
                Filter {
                    types: list(&["tag"]),
                    ..Filter::default()
                },
                4,
            )
            .expect("room for a client");
        let tick = format!("{TAG}\n{ALARM}\n");
        let mut got = 0;
        // Each tick gives the stuck client two lines: its queue of 4 is
        // full after the second tick, and the third drops it.
        for _ in 0..10 {
            hub.publish(tick.as_bytes());
            while let Ok(item) = reader.rx.try_recv() {
                match item {
                    Item::Line(l) => {
                        assert_eq!(&*l, TAG, "the filtered client gets tags only");
                        got += 1;
                    }
                    Item::End => panic!("the run has not ended"),
                }
            }
        }
        assert_eq!(got, 10, "the reading client saw every tick");
        assert!(stuck.was_dropped());
        assert!(!reader.was_dropped());
        assert_eq!(hub.dropped_total(), 1, "dropped once, counted once");
        assert_eq!(hub.clients().len(), 1);
        // Its slot is given back only when its stream goes.
        assert_eq!(hub.open(), 2);
        drop(stuck);
        assert_eq!(hub.open(), 1);
        hub.close();
        assert!(matches!(reader.rx.try_recv(), Ok(Item::End)));
    }

    #[test]
    fn one_client_over_the_cap_is_refused() {
        let hub = EventHub::default();
        let subs: Vec<Subscription> = (0..MAX_CLIENTS)
            .map(|_| hub.subscribe(Filter::default()))
            .collect::<Result<_, _>>()
            .expect("room for the cap");
        assert!(matches!(
            hub.subscribe(Filter::default()),
            Err(SubscribeError::Full)
        ));
        drop(subs);
        assert!(hub.subscribe(Filter::default()).is_ok());
    }
}
