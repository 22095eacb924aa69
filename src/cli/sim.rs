//! `twin sim CONFIG`: the virtual plant, served live on loopback, or run
//! headless (`--headless`) as fast as it goes to write training data: the
//! truth log and the ground-truth fault labels of a `--scenario`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tracing::error;

use super::output::{Stderr, Stdout};
use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::endpoints::Endpoints;
use crate::sim::{HeadlessOptions, SimOptions, run_headless, scenario, start};

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Plant config file.
    pub config: PathBuf,
    /// Serve device DEVICE on 127.0.0.1:PORT (DEVICE may be `*`; PORT 0 picks a
    /// free port). Default: the port in the device's configured address.
    #[arg(long = "modbus-port", value_name = "DEVICE=PORT", value_parser = parse_port_override)]
    pub modbus_port: Vec<String>,
    /// Port of the embedded MQTT broker (0 picks a free port).
    #[arg(long = "mqtt-port", value_name = "PORT")]
    pub mqtt_port: Option<u16>,
    /// Publish MQTT source SOURCE to an external broker at URL instead.
    #[arg(long = "mqtt", value_name = "SOURCE=URL", value_parser = super::parse_override)]
    pub mqtt: Vec<String>,
    /// Write the addresses actually served, as JSON, for `twin run --endpoints`.
    #[arg(long = "endpoints-out", value_name = "FILE")]
    pub endpoints_out: Option<PathBuf>,
    /// Write every value served (after quantisation) as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// Write the ground-truth fault labels as JSON lines. Default with
    /// --truth: next to it, `X.jsonl` → `X.labels.jsonl`.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Inject the faults of this scenario file (plant-configs/scenarios/).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Run sim time this many times faster than wall time (≥ 1).
    #[arg(long, value_name = "N", default_value_t = 1.0, value_parser = parse_speed)]
    pub speed: f64,
    /// No servers: step the plant as fast as possible for --for of sim time
    /// and write --truth and the labels only.
    #[arg(long)]
    pub headless: bool,
    /// Signal update period.
    #[arg(long, value_name = "DURATION", default_value = "100ms", value_parser = super::parse_period)]
    pub update: Duration,
    /// MQTT publish period.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = super::parse_period)]
    pub publish: Duration,
    /// Seed of the signal noise.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub seed: u64,
    /// Append every Modbus write request the devices receive (accepted or
    /// refused) as JSON lines, one per request (docs/sim.md, "Write log").
    #[arg(long = "write-log", value_name = "FILE")]
    pub write_log: Option<PathBuf>,
    /// Stop after this much sim time (wall time × --speed).
    #[arg(long = "for", value_name = "DURATION", value_parser = super::parse_duration)]
    pub duration: Option<Duration>,
}

/// A usage error, as clap reports one.
const EXIT_USAGE: i32 = 2;

/// `DEVICE=PORT`, the port a number, as a usage error when it is not.
fn parse_port_override(s: &str) -> Result<String, String> {
    let shape = || "expected DEVICE=PORT, e.g. plc=5020 or '*=0'".to_string();
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => match v.parse::<u16>() {
            Ok(_) => Ok(s.to_string()),
            Err(_) => Err(format!(
                "the port {v:?} must be a number 0..=65535 (0: any free port)"
            )),
        },
        _ => Err(shape()),
    }
}

/// The fastest `--speed`: a year of sim time in about half a minute, far
/// more than a live plant keeps up with. Without a bound, a factor such as
/// `1e300` overflowed the sim clock's Duration and panicked the plant's
/// task, leaving a process that served nothing and never stopped.
const MAX_SPEED: f64 = 1e6;

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (1.0..=MAX_SPEED).contains(&v) => Ok(v),
        _ => Err(
            "the speed must be a number from 1 to 1000000, e.g. 60 (an hour of sim time per wall minute)"
                .into(),
        ),
    }
}

/// `--labels`, or next to `--truth`: `X.jsonl` → `X.labels.jsonl` (any
/// other name gets `.labels.jsonl` appended).
pub fn labels_path(
    truth: Option<&std::path::Path>,
    labels: Option<&std::path::Path>,
) -> Option<PathBuf> {
    if let Some(l) = labels {
        return Some(l.to_path_buf());
    }
    let t = truth?;
    let name = t.file_name()?.to_string_lossy();
    let stem = name.strip_suffix(".jsonl").unwrap_or(&name);
    Some(t.with_file_name(format!("{stem}.labels.jsonl")))
}

pub fn run(args: SimArgs, log: Option<&str>) -> i32 {
    super::init_logging(log, false);
    let cfg = match super::load::load(&args.config, Stderr::Queue) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let scenario = match &args.scenario {
        Some(p) => match scenario::load_file(p, &cfg) {
            Ok(s) => Some(s),
            Err(report) => {
                Stderr::Queue.write(&super::load::render_report(&report, false));
                return EXIT_CONFIG;
            }
        },
        None => None,
    };
    let labels = labels_path(args.truth.as_deref(), args.labels.as_deref());
    if args.headless {
        let (Some(duration), Some(_)) = (args.duration, args.truth.as_ref()) else {
            error!(
                "--headless needs --for (how much sim time to run) and --truth (where to write it)"
            );
            return EXIT_USAGE;
        };
        let opts = HeadlessOptions {
            duration,
            seed: args.seed,
            update: args.update,
            publish: args.publish,
            truth: args.truth.clone(),
            labels,
            stop: Some(super::stop_flag_on_signals()),
        };
        let wall = crate::wallclock::monotonic();
        return match run_headless(&cfg, scenario.as_ref(), &opts) {
            Ok(r) => {
                let secs = crate::wallclock::since(wall).as_secs_f64();
                tracing::info!(
                    sim_s = r.sim.as_secs_f64(),
                    wall_s = secs,
                    speed = r.sim.as_secs_f64() / secs.max(1e-9),
                    values = r.values,
                    labels = r.labels,
                    "Headless run done."
                );
                0
            }
            Err(e) => {
                error!("{e}");
                EXIT_FAILURE
            }
        };
    }
    let mut ports = std::collections::BTreeMap::new();
    if let Err(e) = Endpoints::apply(&mut ports, &args.modbus_port) {
        error!("{e}");
        return EXIT_FAILURE;
    }
    let mut modbus_ports = std::collections::BTreeMap::new();
    for (k, v) in ports {
        match v.parse::<u16>() {
            Ok(p) => {
                modbus_ports.insert(k, p);
            }
            Err(_) => {
                error!("--modbus-port {k}={v}: the port must be a number 0..=65535");
                return EXIT_FAILURE;
            }
        }
    }
    let mut mqtt_urls = std::collections::BTreeMap::new();
    if let Err(e) = Endpoints::apply(&mut mqtt_urls, &args.mqtt) {
        error!("{e}");
        return EXIT_FAILURE;
    }
    let opts = SimOptions {
        modbus_ports,
        mqtt_port: args.mqtt_port,
        mqtt_urls,
        update: args.update,
        publish: args.publish,
        seed: args.seed,
        truth: args.truth.clone(),
        labels,
        scenario,
        speed: args.speed,
        // The plant stops itself at the end: sim time, which runs slower
        // than --speed asks when the machine cannot keep up.
        until: args.duration,
        write_log: args.write_log.clone(),
    };
    super::block_on(|shutdown| async move {
        let handle = match start(&cfg, opts, shutdown.clone()).await {
            Ok(h) => h,
            Err(e) => {
                error!("{e}");
                return EXIT_FAILURE;
            }
        };
        // The plant serves on whether or not anyone reads these lines: a
        // script may take the first one and close the pipe (`| head -1`).
        let mut out = Stdout::new();
        let mut text = String::new();
        for (name, addr) in &handle.endpoints.modbus {
            text += &format!("modbus {name} {addr}\n");
        }
        for (name, url) in &handle.endpoints.mqtt {
            text += &format!("mqtt {name} {url}\n");
        }
        out.write(&text);
        if let Some(e) = out.failure() {
            tracing::warn!(error = %e, "Cannot write the endpoints to stdout; serving on.");
        }
        if let Some(p) = &args.endpoints_out
            && let Err(e) = handle.endpoints.save(p)
        {
            error!(path = %p.display(), error = %e, "Cannot write the endpoints file.");
            shutdown.cancel();
            return EXIT_FAILURE;
        }
        // With `--for` the plant cancels the token itself once its sim
        // time gets there.
        shutdown.cancelled().await;
        let _ = tokio::time::timeout(Duration::from_secs(3), handle.task).await;
        0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_hostile_sim_speed_is_bounded_so_the_sim_clock_cannot_overflow() {
        assert_eq!(parse_speed("60"), Ok(60.0));
        assert_eq!(parse_speed("1000000"), Ok(1e6));
        for bad in ["0.5", "1e300", "1000001", "inf", "NaN", "-5", "fast"] {
            let e = parse_speed(bad).expect_err(bad);
            assert!(e.contains("from 1 to 1000000"), "{bad}: {e}");
        }
    }
    use std::path::Path;

    #[test]
    fn labels_go_next_to_the_truth_log_unless_named() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            labels_path(Some(Path::new("d/run.jsonl")), None),
            p("d/run.labels.jsonl")
        );
        assert_eq!(
            labels_path(Some(Path::new("run.log")), None),
            p("run.log.labels.jsonl")
        );
        assert_eq!(
            labels_path(Some(Path::new("run.jsonl")), Some(Path::new("l.jsonl"))),
            p("l.jsonl")
        );
        assert_eq!(labels_path(None, None), None);
    }
}
