//! The outbound queue in front of the MQTT client: every message the twin
//! holds for the broker, from the tick that made it until the broker's
//! PUBACK (QoS 1) or its hand-over to the network (QoS 0).
//!
//! Ours rather than rumqttc's: rumqttc keeps in-flight publishes in its
//! event loop's state, which the publisher throws away with every broken
//! connection (a fresh client per connection, as the MQTT command link
//! does), and its request channel either blocks the caller or refuses
//! when full. Here the tick thread only ever appends, in O(log n) under a
//! lock held for microseconds, and what is dropped is chosen and counted.
//!
//! Policy when full: the **oldest** held message is dropped and counted,
//! whether it was waiting or already sent but not yet acknowledged. A
//! consumer upstream wants the plant's present more than its past, and the
//! newest line state supersedes the old ones.

use std::collections::BTreeMap;
use std::sync::Arc;

/// One message for the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub topic: Arc<str>,
    /// One event line, without its newline.
    pub payload: Vec<u8>,
}

/// Messages held, keyed by a number that grows with every message pushed,
/// so the key order is the order they were made in.
#[derive(Debug)]
pub struct Queue {
    held: BTreeMap<u64, Msg>,
    capacity: usize,
    next_id: u64,
    /// Messages dropped because the queue was full, since the start.
    dropped: u64,
}

impl Queue {
    /// A queue holding at most `capacity` messages (at least one).
    pub fn new(capacity: usize) -> Self {
        Queue {
            held: BTreeMap::new(),
            capacity: capacity.max(1),
            next_id: 0,
            dropped: 0,
        }
    }

    /// Append `msg`; when the queue is full, drop the oldest held message
    /// first. Returns whether one was dropped.
    pub fn push(&mut self, msg: Msg) -> bool {
        let dropped = if self.held.len() >= self.capacity {
            self.held.pop_first();
            self.dropped += 1;
            true
        } else {
            false
        };
        self.held.insert(self.next_id, msg);
        self.next_id += 1;
        dropped
    }

    /// The first held message after `after` (from the start with `None`),
    /// with its id.
    pub fn next_after(&self, after: Option<u64>) -> Option<(u64, &Msg)> {
        let from = after.map_or(0, |a| a + 1);
        self.held.range(from..).next().map(|(id, m)| (*id, m))
    }

    /// The broker has message `id`: forget it. False if it was no longer
    /// held (dropped meanwhile as the oldest).
    pub fn ack(&mut self, id: u64) -> bool {
        self.held.remove(&id).is_some()
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Messages pushed since the start.
    pub fn pushed(&self) -> u64 {
        self.next_id
    }

    /// Messages dropped because the queue was full, since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: u32) -> Msg {
        Msg {
            topic: Arc::from("t"),
            payload: n.to_string().into_bytes(),
        }
    }

    fn payloads(q: &Queue) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = None;
        while let Some((id, m)) = q.next_after(at) {
            out.push(String::from_utf8_lossy(&m.payload).into_owned());
            at = Some(id);
        }
        out
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_it() {
        let mut q = Queue::new(3);
        for n in 0..3 {
            assert!(!q.push(msg(n)));
        }
        assert!(q.push(msg(3)));
        assert!(q.push(msg(4)));
        assert_eq!(payloads(&q), ["2", "3", "4"]);
        assert_eq!((q.len(), q.pushed(), q.dropped()), (3, 5, 2));
    }

    #[test]
    fn a_sent_message_stays_until_acknowledged_and_goes_when_it_is() {
        let mut q = Queue::new(3);
        for n in 0..3 {
            q.push(msg(n));
        }
        // Sent 0 and 1; only 1 is acknowledged (a broker restart took 0).
        let (a, _) = q.next_after(None).expect("0");
        let (b, _) = q.next_after(Some(a)).expect("1");
        assert!(q.ack(b));
        assert!(!q.ack(b), "acknowledged twice");
        // On a new connection, sending starts over from the oldest held.
        assert_eq!(payloads(&q), ["0", "2"]);
        // An unacknowledged message is the oldest, so it goes first when
        // the queue overflows; its late acknowledgement finds nothing.
        q.push(msg(3));
        q.push(msg(4));
        assert_eq!(payloads(&q), ["2", "3", "4"]);
        assert!(!q.ack(a));
        assert_eq!(q.dropped(), 1);
    }
}
