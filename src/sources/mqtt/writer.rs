//! Setpoint writes over MQTT: a command connection of its own, and the JSON
//! command an MQTT setpoint is written as (docs/writeback.md, "MQTT").
//!
//! Writing is a separate capability from reading, as for Modbus: the
//! subscriber never publishes a setpoint. [`CommandLink`] is a second
//! client of the source's broker, built by the one options builder
//! ([`connect::options`]) from the same connection config (broker,
//! credentials, TLS), with the client id suffixed `-cmd`, a clean session
//! and no subscriptions. The Sparkplug writer publishes its NCMD/DCMD
//! through the same kind of link.
//!
//! Why a connection of its own: "sent" means the broker acknowledged the
//! publish (PUBACK), and only the owner of a rumqttc event loop sees which
//! PUBACK belongs to which publish. The subscriber's loop is about samples
//! and manual acknowledgements; a writer's outcome tracking in it would
//! tangle the two. A second connection also keeps the subscriber's
//! persistent session (its client id, its queued messages) untouched.
//!
//! No write is ever sent twice, not even by the MQTT client itself:
//! - each connection gets a fresh rumqttc client and event loop, so a
//!   publish that was queued or in flight when a connection dropped dies
//!   with it (rumqttc would otherwise re-send its in-flight publishes on
//!   the next connection, as MQTT's session resumption asks);
//! - the session is clean, so the broker holds nothing of ours either;
//! - while the connection is down a command is refused at once
//!   (`NotSent`), never queued for later: the guard decided on a plant
//!   state that an outage made stale (issue 12).
//!
//! Outcomes: `Acked` (PUBACK), `Unknown` (published, but no PUBACK within
//! the timeout, or the connection dropped before it: the broker may have
//! it), `NotSent` (it never left the process).

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Outgoing, Packet, QoS};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::connect::{self, ClientSpec, Endpoint, Reconnect, SetupError};
use crate::wallclock;

/// What became of one publish on a [`CommandLink`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// The broker acknowledged it (PUBACK, QoS 1).
    Acked,
    /// It was handed to the network but not acknowledged in time, or the
    /// connection dropped before the acknowledgement: the broker (and the
    /// device) may or may not have it. Never re-sent.
    Unknown(String),
    /// It never left the process: the connection was down, or dropped
    /// before the publish was written.
    NotSent(String),
}

impl std::fmt::Display for PublishOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishOutcome::Acked => f.write_str("acknowledged by the broker"),
            PublishOutcome::Unknown(why) => write!(f, "outcome unknown: {why}"),
            PublishOutcome::NotSent(why) => write!(f, "not sent: {why}"),
        }
    }
}

/// The client id of the command connection of a source whose subscriber
/// uses `client_id`: brokers drop an older connection with the same id, so
/// the two must differ.
pub fn command_client_id(client_id: &str) -> String {
    format!("{client_id}-cmd")
}

/// A publish handed to the link's task.
struct Request {
    topic: String,
    payload: Vec<u8>,
    ack_timeout: Duration,
    reply: oneshot::Sender<PublishOutcome>,
}

/// A command connection to one broker: publishes at QoS 1, tells whether
/// the broker acknowledged each, never re-sends one. Cheap to clone.
#[derive(Clone)]
pub struct CommandLink {
    name: String,
    tx: mpsc::Sender<Request>,
}

impl CommandLink {
    /// Start the command connection for the source `spec` at `ep`: a task
    /// that connects (and reconnects with the sources' backoff) until
    /// `shutdown`. Needs a tokio runtime. Reads the secrets and TLS files
    /// the source names, as its subscriber does.
    pub fn start(
        spec: &ClientSpec<'_>,
        ep: &Endpoint,
        base_dir: &Path,
        shutdown: &CancellationToken,
    ) -> Result<CommandLink, SetupError> {
        let cmd_spec = ClientSpec {
            // Nothing of ours may outlive a connection at the broker.
            clean_session: true,
            manual_acks: false,
            ..*spec
        };
        let mut opts = connect::options(&cmd_spec, ep, base_dir)?;
        opts.set_client_id(command_client_id(&spec.conn.client_id));
        let name = format!("{} (commands)", spec.name);
        let (tx, rx) = mpsc::channel(64);
        let (ev_tx, ev_rx) = mpsc::channel(256);
        tokio::spawn(drive(
            opts,
            spec.kind,
            name.clone(),
            ep.to_string(),
            ev_tx,
            shutdown.clone(),
        ));
        tokio::spawn(track(name.clone(), rx, ev_rx));
        Ok(CommandLink { name, tx })
    }

    /// The link's name, for messages: `<source> (commands)`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Publish `payload` on `topic` at QoS 1, not retained, once. Waits for
    /// the broker's PUBACK at most `ack_timeout`.
    pub async fn publish(
        &self,
        topic: String,
        payload: Vec<u8>,
        ack_timeout: Duration,
    ) -> PublishOutcome {
        let (reply, rx) = oneshot::channel();
        let req = Request {
            topic,
            payload,
            ack_timeout,
            reply,
        };
        if self.tx.send(req).await.is_err() {
            return PublishOutcome::NotSent("the command connection has stopped".into());
        }
        // The task answers every request it took; if it stopped in between
        // (shutdown), the publish may have left.
        rx.await.unwrap_or_else(|_| {
            PublishOutcome::Unknown("the command connection stopped before an answer".into())
        })
    }
}

/// What the event-loop task tells the tracking task. `conn` numbers the
/// connections, so nothing of an old one is mistaken for the current one.
enum LinkEvent {
    Connected { conn: u64, client: AsyncClient },
    Published { conn: u64, pkid: u16 },
    Acked { conn: u64, pkid: u16 },
    Down { conn: u64, why: String },
}

/// Drives the client's event loop; a fresh client and event loop for every
/// connection, so nothing queued on an old one is ever sent on a new one.
async fn drive(
    opts: rumqttc::MqttOptions,
    kind: &'static str,
    name: String,
    broker: String,
    events: mpsc::Sender<LinkEvent>,
    shutdown: CancellationToken,
) {
    let mut link = Reconnect::new(kind, &name, &broker);
    let mut conn = 0u64;
    loop {
        let (client, mut eventloop) = AsyncClient::new(opts.clone(), 64);
        let failure = loop {
            let ev = tokio::select! {
                _ = shutdown.cancelled() => {
                    if link.is_up() {
                        let _ = client.try_disconnect();
                        let _ = tokio::time::timeout(connect::DISCONNECT_GRACE, async {
                            while !matches!(eventloop.poll().await,
                                Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_)) {}
                        })
                        .await;
                    }
                    return;
                }
                ev = eventloop.poll() => ev,
            };
            let sent = match ev {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    conn += 1;
                    link.connected();
                    info!(source = %name, broker = %broker, "Command connection to the broker is up.");
                    events
                        .send(LinkEvent::Connected {
                            conn,
                            client: client.clone(),
                        })
                        .await
                }
                Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                    events.send(LinkEvent::Published { conn, pkid }).await
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    events
                        .send(LinkEvent::Acked {
                            conn,
                            pkid: ack.pkid,
                        })
                        .await
                }
                Ok(_) => Ok(()),
                Err(e) => break e,
            };
            if sent.is_err() {
                // The tracking task is gone: nobody can write any more.
                return;
            }
        };
        let was_up = link.is_up();
        let (_, wait) = link.failed(&failure);
        if was_up
            && events
                .send(LinkEvent::Down {
                    conn,
                    why: failure.to_string(),
                })
                .await
                .is_err()
        {
            return;
        }
        // The old client and event loop go here, with anything still in
        // them: the point of a fresh pair per connection.
        drop(client);
        drop(eventloop);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// A publish awaiting its outcome. `reply` is taken when it is answered,
/// early (a timeout) or on time.
struct Waiting {
    reply: Option<oneshot::Sender<PublishOutcome>>,
    deadline: tokio::time::Instant,
    ack_timeout: Duration,
    topic: String,
}

impl Waiting {
    fn answer(&mut self, o: PublishOutcome) {
        if let Some(r) = self.reply.take() {
            // A caller that went away needs no answer.
            let _ = r.send(o);
        }
    }
}

/// Matches publishes to their PUBACKs and answers each request once.
///
/// rumqttc numbers a publish (its packet id) only when the event loop
/// takes it from the client's queue, in queue order, and says so with
/// `Outgoing::Publish(pkid)`. So the requests handed to the client wait in
/// `queued`, in that order, until their number comes; then in `inflight`
/// until their PUBACK. A request that times out while queued keeps its
/// place (without a reply to send), so the numbering stays in step.
async fn track(
    name: String,
    mut requests: mpsc::Receiver<Request>,
    mut events: mpsc::Receiver<LinkEvent>,
) {
    let mut current: Option<(u64, AsyncClient)> = None;
    let mut queued: VecDeque<Waiting> = VecDeque::new();
    let mut inflight: HashMap<u16, Waiting> = HashMap::new();
    loop {
        let next_deadline = queued
            .iter()
            .chain(inflight.values())
            .filter(|w| w.reply.is_some())
            .map(|w| w.deadline)
            .min();
        let timer = async {
            match next_deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            req = requests.recv() => {
                let Some(req) = req else { break };
                let Some((_, client)) = &current else {
                    let _ = req.reply.send(PublishOutcome::NotSent(
                        "the command connection to the broker is down".into(),
                    ));
                    continue;
                };
                let topic = req.topic.clone();
                match client.try_publish(req.topic, QoS::AtLeastOnce, false, req.payload) {
                    Ok(()) => queued.push_back(Waiting {
                        reply: Some(req.reply),
                        deadline: wallclock::tokio_now() + req.ack_timeout,
                        ack_timeout: req.ack_timeout,
                        topic,
                    }),
                    Err(e) => {
                        let _ = req.reply.send(PublishOutcome::NotSent(format!(
                            "the MQTT client did not take the publish: {e}"
                        )));
                    }
                }
            }
            ev = events.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    LinkEvent::Connected { conn, client } => current = Some((conn, client)),
                    LinkEvent::Published { conn, pkid } => {
                        if current.as_ref().is_some_and(|(c, _)| *c == conn)
                            && let Some(w) = queued.pop_front()
                        {
                            inflight.insert(pkid, w);
                        }
                    }
                    LinkEvent::Acked { conn, pkid } => {
                        if current.as_ref().is_some_and(|(c, _)| *c == conn)
                            && let Some(mut w) = inflight.remove(&pkid)
                        {
                            if w.reply.is_none() {
                                debug!(source = %name, topic = %w.topic, "A PUBACK came after its command had timed out; the outcome stays unknown.");
                            }
                            w.answer(PublishOutcome::Acked);
                        }
                    }
                    LinkEvent::Down { conn, why } => {
                        if current.as_ref().is_some_and(|(c, _)| *c == conn) {
                            current = None;
                        }
                        for mut w in queued.drain(..) {
                            w.answer(PublishOutcome::NotSent(format!(
                                "the connection to the broker dropped before it was sent ({why})"
                            )));
                        }
                        for (_, mut w) in inflight.drain() {
                            if w.reply.is_some() {
                                warn!(source = %name, topic = %w.topic, error = %why,
                                    "The connection dropped before the broker acknowledged a command; its outcome is unknown and it is not re-sent.");
                            }
                            w.answer(PublishOutcome::Unknown(format!(
                                "the connection to the broker dropped before its PUBACK ({why}); not re-sent"
                            )));
                        }
                    }
                }
            }
            () = timer => {
                let now = wallclock::tokio_now();
                for w in queued.iter_mut().chain(inflight.values_mut()) {
                    if w.reply.is_some() && w.deadline <= now {
                        warn!(source = %name, topic = %w.topic, timeout = ?w.ack_timeout,
                            "No PUBACK for a command in time; its outcome is unknown and it is not re-sent.");
                        let why = format!("no PUBACK within {} ms; not re-sent", w.ack_timeout.as_millis());
                        w.answer(PublishOutcome::Unknown(why));
                    }
                }
                // Answered and acknowledged-never entries in flight are of
                // no more use; queued ones keep their place (see above).
                inflight.retain(|_, w| w.reply.is_some());
            }
        }
    }
    for mut w in queued.drain(..).chain(inflight.into_values()) {
        w.answer(PublishOutcome::Unknown(
            "the run stopped before the broker's acknowledgement".into(),
        ));
    }
}

/// One setpoint write as the JSON command an MQTT device takes
/// (docs/writeback.md, "The JSON command"). Flat, with plain scalar fields:
/// a Node-RED `change`/`switch` node reads `msg.payload.value` directly, and
/// a PLC gateway maps each field to one tag without a JSON path.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Command<'a> {
    /// The value in the device's units: the engineering value with the
    /// tag's `scale` and `offset` undone, as the device publishes it.
    pub value: f64,
    /// The setpoint's tag name.
    pub setpoint: &'a str,
    /// The write intent's id (the `intent` of the `setpoint` events),
    /// unique in a run: a device that gets the same command twice (QoS 1
    /// is at least once) can drop the second.
    pub intent: u64,
    /// The proposal it carries out (audit cross-reference).
    pub proposal: u64,
    /// When the guard decided it, RFC 3339 UTC.
    pub time: String,
    /// The same instant in ms since the Unix epoch (JavaScript `Date`,
    /// PLC `LINT`).
    pub ts: i64,
}

impl<'a> Command<'a> {
    /// The command for writing `value` (engineering units) to `setpoint`,
    /// decided at `t_ns`, where the tag is read as `raw * scale + offset`.
    pub fn new(
        setpoint: &'a str,
        value: f64,
        (scale, offset): (f64, f64),
        intent: u64,
        proposal: u64,
        t_ns: i64,
    ) -> Result<Command<'a>, String> {
        let raw = crate::sources::modbus::writer::unscale(value, scale, offset);
        if !raw.is_finite() {
            return Err(format!(
                "{value} is {raw} in the device's units (scale {scale}, offset {offset}): not a number JSON can carry"
            ));
        }
        Ok(Command {
            value: raw,
            setpoint,
            intent,
            proposal,
            time: crate::twin::events::rfc3339(t_ns),
            ts: t_ns.div_euclid(1_000_000),
        })
    }

    /// The payload bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of numbers and strings always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Loc, MqttConnection};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn the_command_is_flat_json_in_the_devices_units() {
        let c = Command::new(
            "oven.temp",
            53.8,
            (0.1, 0.0),
            7,
            3,
            1_796_000_000_123_000_000,
        )
        .expect("encodable");
        let v: serde_json::Value = serde_json::from_slice(&c.to_json()).expect("json");
        assert_eq!(
            v,
            serde_json::json!({
                "value": 538.0,
                "setpoint": "oven.temp",
                "intent": 7,
                "proposal": 3,
                "time": crate::twin::events::rfc3339(1_796_000_000_123_000_000),
                "ts": 1_796_000_000_123i64,
            })
        );
        assert!(Command::new("x", 1.0, (0.0, 0.0), 1, 1, 0).is_err());
    }

    fn conn(port: u16) -> MqttConnection {
        MqttConnection {
            broker: Loc::new(
                crate::config::Broker::Tcp {
                    host: "127.0.0.1".into(),
                    port,
                },
                0..0,
            ),
            client_id: "twin-unit".into(),
            keep_alive: Duration::from_secs(30),
            max_packet_size: 1024,
            max_clock_skew: Duration::from_secs(2),
            username: None,
            password: None,
            tls: false,
            tls_files: crate::config::TlsFiles::default(),
        }
    }

    /// Read one MQTT packet (fixed header, remaining length, body).
    async fn packet(s: &mut tokio::net::TcpStream) -> Option<(u8, Vec<u8>)> {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.ok()?;
        let kind = b[0];
        let (mut len, mut shift) = (0usize, 0);
        loop {
            s.read_exact(&mut b).await.ok()?;
            len |= usize::from(b[0] & 0x7f) << shift;
            if b[0] & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let mut body = vec![0; len];
        s.read_exact(&mut body).await.ok()?;
        Some((kind, body))
    }

    /// A broker that accepts connections, never acknowledges a publish,
    /// and closes each connection after its first publish. It counts the
    /// publishes it got, per connection.
    async fn silent_broker() -> (u16, tokio::sync::mpsc::UnboundedReceiver<(usize, String)>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut n = 0;
            while let Ok((mut s, _)) = l.accept().await {
                n += 1;
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some((kind, body)) = packet(&mut s).await {
                        match kind >> 4 {
                            1 => {
                                let _ = tx.send((n, "CONNECT".to_string()));
                                let _ = s.write_all(&[0x20, 0x02, 0x00, 0x00]).await;
                            }
                            3 => {
                                let tl = usize::from(body[0]) << 8 | usize::from(body[1]);
                                let topic = String::from_utf8_lossy(&body[2..2 + tl]).to_string();
                                let _ = tx.send((n, topic));
                                // Hold the publish unanswered, then drop
                                // the connection.
                                tokio::time::sleep(Duration::from_millis(400)).await;
                                return;
                            }
                            12 => {
                                let _ = s.write_all(&[0xd0, 0x00]).await;
                            }
                            _ => {}
                        }
                    }
                });
            }
        });
        (port, rx)
    }

    #[tokio::test]
    async fn no_puback_is_unknown_and_a_reconnect_sends_nothing_again() {
        let (port, mut seen) = silent_broker().await;
        let c = conn(port);
        let spec = ClientSpec {
            kind: "MQTT",
            name: "m",
            conn: &c,
            clean_session: false,
            manual_acks: true,
        };
        let ep = connect::parse_endpoint(&format!("mqtt://127.0.0.1:{port}")).expect("url");
        let stop = CancellationToken::new();
        let link = CommandLink::start(&spec, &ep, Path::new("."), &stop).expect("set up");
        // Until the first connection is up, a command is refused, not queued.
        let mut first = link
            .publish("a/set".into(), b"1".to_vec(), Duration::from_millis(200))
            .await;
        for _ in 0..100 {
            if !matches!(first, PublishOutcome::NotSent(_)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            first = link
                .publish("a/set".into(), b"1".to_vec(), Duration::from_millis(200))
                .await;
        }
        assert!(
            matches!(&first, PublishOutcome::Unknown(w) if w.contains("no PUBACK within 200 ms")),
            "{first:?}"
        );
        // The broker drops the connection; the client reconnects (after its
        // backoff) and must not re-send the unacknowledged publish.
        let mut got = Vec::new();
        while !got.contains(&(2, "CONNECT".to_string())) {
            got.push(seen.recv().await.expect("the broker runs"));
        }
        // Time for a re-send to arrive, if there were one.
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Ok(x) = seen.try_recv() {
            got.push(x);
        }
        let publishes: Vec<_> = got.iter().filter(|(_, w)| w != "CONNECT").collect();
        assert_eq!(publishes, [&(1, "a/set".to_string())], "{got:?}");
        stop.cancel();
    }
}
