//! Reconnect pacing shared by every source: exponential backoff with jitter,
//! capped, reset by the caller once a connection has proved itself.
//!
//! Pure: it never reads a clock, so the policy is tested as a function and
//! each source decides what "proved itself" means (a Modbus reply, an MQTT
//! connection that stayed up).

use std::time::Duration;

/// Delays `min`, `2 min`, `4 min`, ... up to `max`, each scaled by a jitter
/// of ±20 % so a plant's clients do not reconnect in lock-step after a
/// shared outage (a switch reboot, a broker restart).
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    seed: u64,
}

impl Backoff {
    /// A policy for the client called `name`: the name seeds the jitter, so
    /// two clients of one plant draw different delays, and one client draws
    /// the same sequence in every run.
    pub fn new(name: &str, min: Duration, max: Duration) -> Self {
        let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        let min = min.max(Duration::from_millis(1));
        Backoff {
            min,
            max: max.max(min),
            next: min,
            seed: seed | 1,
        }
    }

    /// Start again from the shortest delay.
    pub fn reset(&mut self) {
        self.next = self.min;
    }

    /// The delay before the next attempt; each call doubles the next one.
    pub fn step(&mut self) -> Duration {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base.mul_f64(0.8 + (self.seed % 401) as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn delays_grow_exponentially_within_jitter_then_cap_and_reset() {
        let mut b = Backoff::new("cm", S, 30 * S);
        let delays: Vec<Duration> = (0..8).map(|_| b.step()).collect();
        for (i, d) in delays.iter().enumerate() {
            let base = (S * (1 << i)).min(30 * S);
            assert!(
                *d >= base.mul_f64(0.8) && *d <= base.mul_f64(1.2),
                "attempt {i}: {d:?} not within 20 % of {base:?}"
            );
        }
        // Spaced increasingly until the cap, whatever the jitter drew.
        for w in delays[..5].windows(2) {
            assert!(w[1] > w[0], "{delays:?}");
        }
        assert!(delays[7] <= 36 * S, "capped: {delays:?}");
        b.reset();
        assert!(
            b.step() <= S.mul_f64(1.2),
            "reset starts again at the minimum"
        );
    }

    #[test]
    fn clients_draw_different_jitter_but_the_same_sequence_each_run() {
        let seq = |name: &str| {
            let mut b = Backoff::new(name, S, 60 * S);
            (0..4).map(|_| b.step()).collect::<Vec<_>>()
        };
        assert_eq!(seq("a"), seq("a"));
        assert_ne!(seq("a"), seq("b"));
    }
}
