//! `twin sim CONFIG`: the virtual plant.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use tracing::error;

use super::EXIT_FAILURE;
use crate::endpoints::Endpoints;
use crate::sim::{SimOptions, start};

#[derive(Debug, Args)]
pub struct SimArgs {
    /// Plant config file.
    pub config: PathBuf,
    /// Serve device DEVICE on 127.0.0.1:PORT (DEVICE may be `*`; PORT 0 picks a
    /// free port). Default: the port in the device's configured address.
    #[arg(long = "modbus-port", value_name = "DEVICE=PORT")]
    pub modbus_port: Vec<String>,
    /// Port of the embedded MQTT broker (0 picks a free port).
    #[arg(long = "mqtt-port", value_name = "PORT")]
    pub mqtt_port: Option<u16>,
    /// Publish MQTT source SOURCE to an external broker at URL instead.
    #[arg(long = "mqtt", value_name = "SOURCE=URL")]
    pub mqtt: Vec<String>,
    /// Write the addresses actually served, as JSON, for `twin run --endpoints`.
    #[arg(long = "endpoints-out", value_name = "FILE")]
    pub endpoints_out: Option<PathBuf>,
    /// Write every value served (after quantisation) as JSON lines.
    #[arg(long, value_name = "FILE")]
    pub truth: Option<PathBuf>,
    /// Signal update period.
    #[arg(long, default_value = "100ms", value_parser = super::parse_duration)]
    pub update: Duration,
    /// MQTT publish period.
    #[arg(long, default_value = "1s", value_parser = super::parse_duration)]
    pub publish: Duration,
    /// Seed of the signal noise.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this long.
    #[arg(long = "for", value_name = "DURATION", value_parser = super::parse_duration)]
    pub duration: Option<Duration>,
}

pub fn run(args: SimArgs, log: Option<&str>) -> i32 {
    super::init_logging(log, false);
    let cfg = match super::run::load(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
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
    };
    super::block_on(|shutdown| async move {
        let handle = match start(&cfg, opts, shutdown.clone()).await {
            Ok(h) => h,
            Err(e) => {
                error!("{e}");
                return EXIT_FAILURE;
            }
        };
        {
            let mut out = std::io::stdout().lock();
            for (name, addr) in &handle.endpoints.modbus {
                let _ = writeln!(out, "modbus {name} {addr}");
            }
            for (name, url) in &handle.endpoints.mqtt {
                let _ = writeln!(out, "mqtt {name} {url}");
            }
            let _ = out.flush();
        }
        if let Some(p) = &args.endpoints_out
            && let Err(e) = handle.endpoints.save(p)
        {
            error!(path = %p.display(), error = %e, "Cannot write the endpoints file.");
            shutdown.cancel();
            return EXIT_FAILURE;
        }
        match args.duration {
            Some(d) => {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(d) => shutdown.cancel(),
                }
            }
            None => shutdown.cancelled().await,
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), handle.task).await;
        0
    })
}
