//! The connection task: takes messages from the [`Queue`] to the broker and
//! removes each once the broker has it.
//!
//! - Each connection gets a fresh rumqttc client and event loop, so nothing
//!   rumqttc kept of a broken connection is sent twice by rumqttc itself;
//!   what was not acknowledged is still in our queue and is sent again, from
//!   the oldest, on the next connection. QoS 1 is at-least-once: a message
//!   whose PUBACK was lost with the connection arrives twice.
//! - At most [`WINDOW`] messages are in flight (sent, not acknowledged), under
//!   rumqttc's own in-flight limit, so rumqttc's request channel never
//!   fills and a publish never waits.
//! - Published PUBACKs are matched by packet id; rumqttc reports each
//!   publish it writes (`Outgoing::Publish(pkid)`) in the order it was
//!   asked to, which ties a packet id to our message.
//! - A broken connection is retried with the sources' backoff (1 s doubling
//!   to 15 s, with jitter).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{Notify, mpsc};
use tracing::{debug, info, warn};

use super::queue::Queue;
use crate::sources::backoff::Backoff;
use crate::sources::mqtt::connect::DISCONNECT_GRACE;
use crate::wallclock;

/// Messages in flight at most: below rumqttc's default in-flight limit of
/// 100, so its event loop always takes our next publish at once.
pub const WINDOW: usize = 64;

const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(15);
/// A connection that stayed up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);

/// What the sink and the connection task share.
#[derive(Debug)]
pub struct Shared {
    pub queue: Mutex<Queue>,
    /// New messages, or the run is closing.
    pub wake: Notify,
    /// The run is over: send what is held (within the drain timeout), then
    /// disconnect.
    pub closing: AtomicBool,
    pub stats: Stats,
}

/// Run totals of one publisher, for the log.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages the broker acknowledged (QoS 1) or that were written to
    /// the network (QoS 0).
    pub delivered: AtomicU64,
    /// Messages sent again on a new connection after the last one broke
    /// before their acknowledgement.
    pub resent: AtomicU64,
    /// Connections the broker accepted.
    pub connects: AtomicU64,
}

impl Shared {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Shared {
            queue: Mutex::new(Queue::new(capacity)),
            wake: Notify::new(),
            closing: AtomicBool::new(false),
            stats: Stats::default(),
        })
    }

    /// The queue; a panic elsewhere while it was held leaves it usable
    /// (every change to it is a single map operation).
    pub fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}

/// The connection task's settings.
pub struct Task {
    pub name: String,
    pub broker: String,
    pub options: MqttOptions,
    pub qos: QoS,
    pub drain_timeout: Duration,
    pub shared: Arc<Shared>,
}

/// A message sent on the current connection and not yet acknowledged: our
/// id, and rumqttc's packet id once it has written it.
struct InFlight {
    id: u64,
    pkid: Option<u16>,
}

/// What a connection's poller reports. The event loop is polled on a task
/// of its own and never cancelled: a poll dropped half-way (by a `select!`
/// that a new message won) could drop a connection attempt or a packet.
enum LinkEv {
    Up,
    Written(u16),
    Acked(u16),
    Disconnected,
    /// Why, and whether the broker refused us (credentials, client id)
    /// rather than being out of reach.
    Down(String, bool),
}

async fn poll_link(mut eventloop: rumqttc::EventLoop, tx: mpsc::Sender<LinkEv>) {
    loop {
        let ev = match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => LinkEv::Up,
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => LinkEv::Written(pkid),
            Ok(Event::Incoming(Packet::PubAck(ack))) => LinkEv::Acked(ack.pkid),
            Ok(Event::Outgoing(Outgoing::Disconnect)) => LinkEv::Disconnected,
            Ok(_) => continue,
            Err(e) => {
                let refused = matches!(e, rumqttc::ConnectionError::ConnectionRefused(_));
                let _ = tx.send(LinkEv::Down(e.to_string(), refused)).await;
                return;
            }
        };
        if tx.send(ev).await.is_err() {
            return;
        }
    }
}

impl Task {
    /// Run until the sink closes and the queue is empty, or the drain
    /// timeout after closing has passed.
    pub async fn run(self) {
        let mut backoff = Backoff::new(&self.name, BACKOFF_MIN, BACKOFF_MAX);
        let mut deadline: Option<tokio::time::Instant> = None;
        let mut warned = false;
        loop {
            let (client, eventloop) = AsyncClient::new(self.options.clone(), WINDOW * 2);
            let (tx, mut rx) = mpsc::channel(WINDOW * 4);
            let poller = tokio::spawn(poll_link(eventloop, tx));
            let mut inflight: VecDeque<InFlight> = VecDeque::new();
            // The id of the last message handed to this connection.
            let mut cursor: Option<u64> = None;
            let mut up_since = None;
            let failure = loop {
                if self.shared.is_closing() && deadline.is_none() {
                    deadline = Some(wallclock::tokio_now() + self.drain_timeout);
                }
                if up_since.is_some() {
                    self.send_more(&client, &mut inflight, &mut cursor);
                }
                if deadline.is_some() && inflight.is_empty() && self.shared.queue().is_empty() {
                    if up_since.is_some() {
                        disconnect(&client, &mut rx).await;
                    }
                    poller.abort();
                    self.summary();
                    return;
                }
                let ev = tokio::select! {
                    ev = rx.recv() => ev,
                    _ = self.shared.wake.notified() => continue,
                    _ = sleep_until(deadline) => {
                        if up_since.is_some() {
                            disconnect(&client, &mut rx).await;
                        }
                        poller.abort();
                        self.summary();
                        return;
                    }
                };
                match ev {
                    Some(LinkEv::Up) => {
                        up_since = Some(wallclock::monotonic());
                        self.shared.stats.connects.fetch_add(1, Ordering::Relaxed);
                        let held = self.shared.queue().len();
                        info!(sink = %self.name, broker = %self.broker, held,
                            "Upstream MQTT connection is up; sending what the twin holds.");
                        warned = false;
                    }
                    Some(LinkEv::Written(pkid)) => {
                        if let Some(f) = inflight.iter_mut().find(|f| f.pkid.is_none()) {
                            if self.qos == QoS::AtMostOnce {
                                // Written to the network is all QoS 0 gets.
                                let id = f.id;
                                inflight.retain(|f| f.id != id);
                                self.delivered(id);
                            } else {
                                f.pkid = Some(pkid);
                            }
                        }
                    }
                    Some(LinkEv::Acked(pkid)) => {
                        if let Some(i) = inflight.iter().position(|f| f.pkid == Some(pkid))
                            && let Some(f) = inflight.remove(i)
                        {
                            self.delivered(f.id);
                        }
                    }
                    Some(LinkEv::Disconnected) => {}
                    Some(LinkEv::Down(e, refused)) => break (e, refused),
                    None => break ("the connection task ended".to_string(), false),
                }
            };
            // Everything not acknowledged stays in the queue and goes again,
            // from the oldest, on the next connection.
            self.shared
                .stats
                .resent
                .fetch_add(inflight.len() as u64, Ordering::Relaxed);
            drop(client);
            poller.abort();
            if up_since.is_some_and(|t| wallclock::since(t) >= STABLE) {
                backoff.reset();
            }
            let wait = backoff.step();
            let (failure, refused) = failure;
            if up_since.is_some() || !warned {
                let held = self.shared.queue().len();
                if refused {
                    warn!(sink = %self.name, broker = %self.broker, error = %failure, retry_in = ?wait, held,
                        "Upstream MQTT broker refused the connection; check username, password and client_id. Holding messages and retrying.");
                } else {
                    warn!(sink = %self.name, broker = %self.broker, error = %failure, retry_in = ?wait, held,
                        "Upstream MQTT broker unreachable; holding messages and retrying.");
                }
                warned = true;
            } else {
                debug!(sink = %self.name, broker = %self.broker, error = %failure, retry_in = ?wait,
                    "Upstream MQTT reconnect failed.");
            }
            let retry = tokio::time::sleep(wait);
            tokio::pin!(retry);
            loop {
                if self.shared.is_closing() && deadline.is_none() {
                    deadline = Some(wallclock::tokio_now() + self.drain_timeout);
                }
                tokio::select! {
                    _ = &mut retry => break,
                    _ = self.shared.wake.notified() => {
                        if self.shared.is_closing() && self.shared.queue().is_empty() {
                            self.summary();
                            return;
                        }
                    }
                    _ = sleep_until(deadline) => {
                        self.summary();
                        return;
                    }
                }
            }
        }
    }

    /// Hand the connection the next held messages, up to [`WINDOW`] in
    /// flight.
    fn send_more(
        &self,
        client: &AsyncClient,
        inflight: &mut VecDeque<InFlight>,
        cursor: &mut Option<u64>,
    ) {
        while inflight.len() < WINDOW {
            let next = {
                let q = self.shared.queue();
                q.next_after(*cursor)
                    .map(|(id, m)| (id, m.topic.clone(), m.payload.clone()))
            };
            let Some((id, topic, payload)) = next else {
                return;
            };
            match client.try_publish(&*topic, self.qos, false, payload) {
                Ok(()) => {
                    *cursor = Some(id);
                    inflight.push_back(InFlight { id, pkid: None });
                }
                // The channel is sized for the window, so this is a client
                // whose event loop is gone: the next poll says why.
                Err(e) => {
                    debug!(sink = %self.name, error = %e, "Upstream publish not taken.");
                    return;
                }
            }
        }
    }

    fn delivered(&self, id: u64) {
        if self.shared.queue().ack(id) {
            self.shared.stats.delivered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The run's totals, once, when the task ends; what is still held
    /// then was never delivered.
    fn summary(&self) {
        let (pushed, dropped, left) = {
            let q = self.shared.queue();
            (q.pushed(), q.dropped(), q.len())
        };
        let s = &self.shared.stats;
        let (delivered, resent, connects) = (
            s.delivered.load(Ordering::Relaxed),
            s.resent.load(Ordering::Relaxed),
            s.connects.load(Ordering::Relaxed),
        );
        if left > 0 || dropped > 0 {
            warn!(sink = %self.name, broker = %self.broker, messages = pushed, delivered, dropped,
                undelivered = left, resent, connects,
                "Upstream MQTT publisher stopped; some messages never reached the broker.");
        } else {
            info!(sink = %self.name, broker = %self.broker, messages = pushed, delivered, dropped,
                undelivered = left, resent, connects,
                "Upstream MQTT publisher stopped; every message reached the broker.");
        }
    }
}

/// Sleep until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Send DISCONNECT so the broker does not wait for the keep-alive, within
/// a short grace.
async fn disconnect(client: &AsyncClient, rx: &mut mpsc::Receiver<LinkEv>) {
    let _ = client.try_disconnect();
    let _ = tokio::time::timeout(DISCONNECT_GRACE, async {
        while let Some(ev) = rx.recv().await {
            if matches!(ev, LinkEv::Disconnected | LinkEv::Down(..)) {
                return;
            }
        }
    })
    .await;
}
