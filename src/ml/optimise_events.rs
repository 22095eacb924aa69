//! The optimiser's events (docs/events.md): `proposal`, the run's
//! `optimiser` summary, and an `error` (component `optimiser`) for a round
//! that could not be vetted.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::ser::SerializeMap;

use super::vetting::{Origin, Round, Scored, Vetoes};

#[derive(Debug, Clone, PartialEq)]
pub enum OptimiserEvent {
    Proposal(Box<Proposal>),
    Summary(Box<Summary>),
    Error(RoundError),
}

/// The best vetted candidate of a round, with its forecast.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// The tick the round's result applies at (`apply_after` after the
    /// model ran).
    pub t_ns: i64,
    /// The tick the model ran at, whose line state was forecast.
    pub based_on_ns: i64,
    pub model: Arc<str>,
    /// The model file's sha256, lowercase hex.
    pub sha256: Arc<str>,
    pub machine: Option<Arc<str>>,
    pub line: Arc<str>,
    /// The setpoint tags, in the model's output column order.
    pub tags: Arc<[Arc<str>]>,
    pub horizon: Duration,
    /// The setpoints as the line ran them when the model ran.
    pub current: Vec<f64>,
    /// The model's output as it was, before it was made legal.
    pub model_output: Vec<f64>,
    pub origin: Origin,
    pub best: Scored,
    pub round: Round,
}

/// A round that gave no verdict: the baseline's forecast failed, or the
/// job did not finish.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundError {
    pub t_ns: i64,
    pub model: Arc<str>,
    pub machine: Option<Arc<str>>,
    pub error: String,
}

/// What a setpoint model's optimiser did over the run (`scope` `run`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub t_ns: i64,
    pub model: Arc<str>,
    pub line: Arc<str>,
    pub counts: Counts,
}

/// Deterministic counts of an optimiser.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    /// Rounds vetted (their results applied).
    pub rounds: u64,
    /// Model rows not vetted: the row was `uncertain`, or the line was.
    pub skipped_uncertain_input: u64,
    pub skipped_line_uncertain: u64,
    /// Rounds whose vetting failed.
    pub failed: u64,
    /// Rounds still running when the run ended (their tick never came).
    pub unfinished: u64,
    pub proposals: u64,
    pub gain_sum: f64,
    pub gain_max: f64,
    pub throughput_gain_sum: f64,
    pub throughput_gain_max: f64,
    pub tried: u64,
    pub passed: u64,
    pub vetoed: Vetoes,
}

impl Counts {
    /// Adds a vetted round, and its proposal if it made one.
    pub fn round(&mut self, r: &Round, proposed: Option<&Scored>) {
        self.rounds += 1;
        self.tried += r.tried;
        self.passed += r.passed;
        self.vetoed.merge(&r.vetoed);
        if let Some(best) = proposed {
            let gain = best.objective - r.baseline.objective;
            let tp = best.forecast.throughput_per_min - r.baseline.forecast.throughput_per_min;
            if self.proposals == 0 {
                (self.gain_max, self.throughput_gain_max) = (gain, tp);
            }
            self.proposals += 1;
            self.gain_sum += gain;
            self.gain_max = self.gain_max.max(gain);
            self.throughput_gain_sum += tp;
            self.throughput_gain_max = self.throughput_gain_max.max(tp);
        }
    }
}

impl OptimiserEvent {
    pub fn t_ns(&self) -> i64 {
        match self {
            OptimiserEvent::Proposal(p) => p.t_ns,
            OptimiserEvent::Summary(s) => s.t_ns,
            OptimiserEvent::Error(e) => e.t_ns,
        }
    }

    /// The event as one JSON line body (no newline).
    pub fn write_json(&self, t: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
        let v = crate::twin::events::EVENT_VERSION;
        match self {
            OptimiserEvent::Proposal(p) => proposal(p, v, t, out),
            OptimiserEvent::Summary(s) => summary(s, v, t, out),
            OptimiserEvent::Error(e) => {
                #[derive(Serialize)]
                struct Line<'a> {
                    v: u32,
                    #[serde(rename = "type")]
                    kind: &'static str,
                    t: &'a str,
                    component: &'static str,
                    target: &'a str,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    machine: Option<&'a str>,
                    error: &'a str,
                    effect: &'static str,
                }
                serde_json::to_writer(
                    out,
                    &Line {
                        v,
                        kind: "error",
                        t,
                        component: "optimiser",
                        target: &e.model,
                        machine: e.machine.as_deref(),
                        error: &e.error,
                        effect: "no proposal from this round",
                    },
                )
            }
        }
    }
}

/// A number for JSON, to 6 decimals; non-finite values never reach here
/// (the model's were refused, forecasts are counts) but would be `null`.
fn num(x: f64) -> Option<f64> {
    x.is_finite().then_some((x * 1e6).round() / 1e6 + 0.0)
}

/// `{tag: value}` in column order.
struct Values<'a>(&'a [Arc<str>], &'a [f64]);

impl Serialize for Values<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0.iter().zip(self.1) {
            m.serialize_entry(&**k, &num(*v))?;
        }
        m.end()
    }
}

struct VetoCounts<'a>(&'a Vetoes);

impl Serialize for VetoCounts<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.0.len()))?;
        for (k, v) in self.0.iter() {
            m.serialize_entry(k, &v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct Tried<'a> {
    tried: u64,
    passed: u64,
    vetoed: VetoCounts<'a>,
}

#[derive(Serialize)]
struct ForecastJson {
    throughput_per_min: Option<f64>,
    out: u64,
    lost: u64,
    jam_risk: Option<f64>,
    energy: Option<f64>,
    wip_end: u64,
}

impl ForecastJson {
    fn of(s: &Scored) -> Self {
        ForecastJson {
            throughput_per_min: num(s.forecast.throughput_per_min),
            out: s.forecast.out,
            lost: s.forecast.lost,
            jam_risk: num(s.forecast.jam_risk),
            energy: num(s.energy),
            wip_end: s.forecast.wip_end,
        }
    }
}

fn proposal(p: &Proposal, v: u32, t: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
    #[derive(Serialize)]
    struct Forecasts {
        baseline: ForecastJson,
        candidate: ForecastJson,
    }
    #[derive(Serialize)]
    struct Line<'a> {
        v: u32,
        #[serde(rename = "type")]
        kind: &'static str,
        t: &'a str,
        model: &'a str,
        model_sha256: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        machine: Option<&'a str>,
        line: &'a str,
        based_on: String,
        origin: &'static str,
        setpoints: Values<'a>,
        current: Values<'a>,
        model_output: Values<'a>,
        horizon_s: f64,
        forecast: Forecasts,
        gain_per_min: Option<f64>,
        throughput_gain_per_min: Option<f64>,
        candidates: Tried<'a>,
    }
    let b = &p.round.baseline;
    serde_json::to_writer(
        out,
        &Line {
            v,
            kind: "proposal",
            t,
            model: &p.model,
            model_sha256: &p.sha256,
            machine: p.machine.as_deref(),
            line: &p.line,
            based_on: crate::twin::events::rfc3339(p.based_on_ns),
            origin: p.origin.as_str(),
            setpoints: Values(&p.tags, &p.best.values),
            current: Values(&p.tags, &p.current),
            model_output: Values(&p.tags, &p.model_output),
            horizon_s: p.horizon.as_secs_f64(),
            forecast: Forecasts {
                baseline: ForecastJson::of(b),
                candidate: ForecastJson::of(&p.best),
            },
            gain_per_min: num(p.best.objective - b.objective),
            throughput_gain_per_min: num(
                p.best.forecast.throughput_per_min - b.forecast.throughput_per_min
            ),
            candidates: Tried {
                tried: p.round.tried,
                passed: p.round.passed,
                vetoed: VetoCounts(&p.round.vetoed),
            },
        },
    )
}

fn summary(s: &Summary, v: u32, t: &str, out: &mut Vec<u8>) -> serde_json::Result<()> {
    #[derive(Serialize)]
    struct Skipped {
        uncertain_input: u64,
        line_uncertain: u64,
    }
    #[derive(Serialize)]
    struct Gain {
        mean: Option<f64>,
        max: Option<f64>,
    }
    #[derive(Serialize)]
    struct Line<'a> {
        v: u32,
        #[serde(rename = "type")]
        kind: &'static str,
        t: &'a str,
        model: &'a str,
        line: &'a str,
        scope: &'static str,
        rounds: u64,
        skipped: Skipped,
        failed: u64,
        unfinished: u64,
        proposals: u64,
        gain_per_min: Gain,
        throughput_gain_per_min: Gain,
        candidates: Tried<'a>,
    }
    let c = &s.counts;
    let gain = |sum: f64, max: f64| match c.proposals {
        0 => Gain {
            mean: None,
            max: None,
        },
        n => Gain {
            mean: num(sum / n as f64),
            max: num(max),
        },
    };
    serde_json::to_writer(
        out,
        &Line {
            v,
            kind: "optimiser",
            t,
            model: &s.model,
            line: &s.line,
            scope: "run",
            rounds: c.rounds,
            skipped: Skipped {
                uncertain_input: c.skipped_uncertain_input,
                line_uncertain: c.skipped_line_uncertain,
            },
            failed: c.failed,
            unfinished: c.unfinished,
            proposals: c.proposals,
            gain_per_min: gain(c.gain_sum, c.gain_max),
            throughput_gain_per_min: gain(c.throughput_gain_sum, c.throughput_gain_max),
            candidates: Tried {
                tried: c.tried,
                passed: c.passed,
                vetoed: VetoCounts(&c.vetoed),
            },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::physics::lookahead::Forecast;

    fn scored(values: &[f64], tp: f64, out: u64, lost: u64, jam: f64, energy: f64) -> Scored {
        Scored {
            values: values.to_vec(),
            forecast: Forecast {
                throughput_per_min: tp,
                out,
                lost,
                jam_risk: jam,
                wip_end: 17,
                ..Forecast::default()
            },
            energy,
            objective: tp,
        }
    }

    fn examples() -> Vec<(&'static str, OptimiserEvent)> {
        let tags: Arc<[Arc<str>]> =
            vec![Arc::from("infeed.speed"), Arc::from("outfeed.speed")].into();
        let mut vetoed = Vetoes::default();
        vetoed.add(super::super::vetting::Veto::LostProduct);
        vetoed.add(super::super::vetting::Veto::NoGain);
        vetoed.add(super::super::vetting::Veto::NoGain);
        let round = Round {
            baseline: scored(&[0.3, 0.3], 52.0, 50, 0, 0.32, 2.7),
            best: None,
            tried: 5,
            passed: 2,
            vetoed,
        };
        let mut summary = Counts::default();
        let best = scored(&[0.4, 0.3], 56.0, 55, 0, 0.21, 3.1);
        for _ in 0..3 {
            summary.round(&round, Some(&best));
        }
        summary.round(&round, None);
        summary.skipped_uncertain_input = 1;
        summary.unfinished = 1;
        vec![
            (
                "2026-12-05T01:13:01.000Z",
                OptimiserEvent::Proposal(Box::new(Proposal {
                    t_ns: 0,
                    based_on_ns: 1_796_433_180_000_000_000,
                    model: Arc::from("belt_speeds"),
                    sha256: Arc::from(
                        "2729db70b210c1cb97743dc047c2b612db47ab9d327694b958bad63f3022cea1",
                    ),
                    machine: None,
                    line: Arc::from("line1"),
                    tags,
                    horizon: Duration::from_secs(60),
                    current: vec![0.3, 0.3],
                    model_output: vec![0.45, 0.3],
                    origin: Origin::Model,
                    best,
                    round,
                })),
            ),
            (
                "2026-12-05T01:20:00.000Z",
                OptimiserEvent::Summary(Box::new(Summary {
                    t_ns: 0,
                    model: Arc::from("belt_speeds"),
                    line: Arc::from("line1"),
                    counts: summary,
                })),
            ),
            (
                "2026-12-05T01:13:01.000Z",
                OptimiserEvent::Error(RoundError {
                    t_ns: 0,
                    model: Arc::from("belt_speeds"),
                    machine: None,
                    error: "the forecast at the current setpoints failed: unknown conveyor #3"
                        .into(),
                }),
            ),
        ]
    }

    /// docs/events.md's `proposal`, `optimiser` and optimiser `error`
    /// examples are what the encoder writes.
    #[test]
    fn r11_the_documented_optimiser_examples_are_the_encoders_output() {
        let docs = include_str!("../../docs/events.md");
        let missing: Vec<String> = examples()
            .into_iter()
            .map(|(t, e)| {
                let mut out = Vec::new();
                e.write_json(t, &mut out).expect("encodes");
                String::from_utf8(out).expect("utf-8")
            })
            .filter(|line| !docs.contains(line))
            .collect();
        assert!(
            missing.is_empty(),
            "not in docs/events.md:\n{}",
            missing.join("\n")
        );
    }
}
