//! Process models for the virtual plant's signals.
//!
//! Simple, plausible and time-varying: drive speeds wander around their
//! setpoint, motor currents follow load, temperatures rise to a steady state,
//! vibration wanders around a baseline, counters integrate throughput. The
//! model is picked from the tag's machine role (or its name) and its unit. The
//! physics issue replaces these with a rapier truth model.

/// Small deterministic PRNG (xorshift64*) so a seed reproduces a run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    Speed {
        nominal: f64,
    },
    Current {
        idle: f64,
        full: f64,
    },
    Temperature {
        ambient: f64,
        steady: f64,
        tau_s: f64,
    },
    Vibration {
        base: f64,
    },
    Counter {
        per_s: f64,
        total: f64,
    },
    Running,
    Fault,
    Pressure {
        nominal: f64,
    },
    Level {
        nominal: f64,
    },
    Generic {
        mid: f64,
        amp: f64,
    },
}

impl Model {
    /// Pick a model from a role or tag name and a unit.
    pub fn pick(role: &str, unit: &str, is_bool: bool) -> Model {
        let r = role.to_ascii_lowercase();
        let u = unit.to_ascii_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| r.contains(w));
        if has(&["fault", "alarm", "jam", "error", "trip", "estop"]) {
            return Model::Fault;
        }
        if is_bool {
            return Model::Running;
        }
        if has(&["count", "total", "produced", "reject", "cycles"]) {
            let per_s = if r.contains("reject") { 0.03 } else { 2.0 };
            return Model::Counter { per_s, total: 0.0 };
        }
        if has(&["current", "amps"]) {
            return Model::Current {
                idle: 2.5,
                full: 9.0,
            };
        }
        if has(&["temp"]) {
            let (ambient, steady) = if u.contains('f') {
                (77.0, 140.0)
            } else {
                (25.0, 58.0)
            };
            return Model::Temperature {
                ambient,
                steady,
                tau_s: 300.0,
            };
        }
        if has(&["vib"]) {
            return Model::Vibration {
                base: if u.contains('g') { 0.15 } else { 1.8 },
            };
        }
        if has(&["pressure"]) {
            return Model::Pressure {
                nominal: if u.contains("kpa") { 250.0 } else { 2.5 },
            };
        }
        if has(&["level", "fill", "volume"]) {
            return Model::Level { nominal: 500.0 };
        }
        if has(&["speed", "rate", "velocity", "frequency"]) {
            let nominal = match u.as_str() {
                "m/s" => 0.6,
                "m/min" => 36.0,
                "rpm" => 1450.0,
                "hz" => 50.0,
                "%" => 75.0,
                "bpm" | "1/min" | "/min" | "ppm" => 120.0,
                _ => 100.0,
            };
            return Model::Speed { nominal };
        }
        Model::Generic {
            mid: 50.0,
            amp: 10.0,
        }
    }

    /// Advance to time `t` (s since start) by `dt` and return the value.
    /// `load` in [0, 1] couples currents and counters to the line's speed.
    pub fn step(&mut self, t: f64, dt: f64, load: f64, rng: &mut Rng) -> f64 {
        use std::f64::consts::TAU;
        match self {
            Model::Speed { nominal } => {
                *nominal * (1.0 + 0.05 * (TAU * t / 90.0).sin() + 0.005 * rng.unit())
            }
            Model::Current { idle, full } => *idle + (*full - *idle) * load + 0.05 * rng.unit(),
            Model::Temperature {
                ambient,
                steady,
                tau_s,
            } => {
                *ambient
                    + (*steady - *ambient) * (1.0 - (-t / *tau_s).exp())
                    + 0.4 * (TAU * t / 240.0).sin()
                    + 0.05 * rng.unit()
            }
            Model::Vibration { base } => {
                *base * (1.0 + 0.15 * (TAU * t / 37.0).sin() + 0.08 * rng.unit())
            }
            Model::Counter { per_s, total } => {
                *total += *per_s * load * dt;
                total.floor()
            }
            // A short planned stop every 5 minutes keeps the state moving.
            Model::Running => f64::from(u8::from((t % 300.0) < 290.0)),
            Model::Fault => 0.0,
            Model::Pressure { nominal } => {
                *nominal * (1.0 + 0.02 * (TAU * t / 45.0).sin() + 0.01 * rng.unit())
            }
            Model::Level { nominal } => *nominal + 2.0 * (TAU * t / 20.0).sin() + 0.5 * rng.unit(),
            Model::Generic { mid, amp } => *mid + *amp * (TAU * t / 60.0).sin(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_follow_roles_and_stay_plausible() {
        let mut rng = Rng::new(7);
        let mut temp = Model::pick("bearing_temperature", "degC", false);
        let mut count = Model::pick("good_count", "", false);
        let mut speed = Model::pick("speed", "m/s", false);
        assert!(matches!(temp, Model::Temperature { .. }));
        let mut last = 0.0;
        for i in 0..6000 {
            let t = f64::from(i) * 0.1;
            let c = count.step(t, 0.1, 1.0, &mut rng);
            assert!(c >= last, "counters never go backwards");
            last = c;
            let s = speed.step(t, 0.1, 1.0, &mut rng);
            assert!((0.5..0.7).contains(&s), "speed {s}");
            let th = temp.step(t, 0.1, 1.0, &mut rng);
            assert!((20.0..65.0).contains(&th), "temperature {th}");
        }
        assert!(
            (1150.0..=1210.0).contains(&last),
            "2/s for 600 s, got {last}"
        );
        assert_eq!(Model::pick("motor_fault", "", true), Model::Fault);
    }
}
