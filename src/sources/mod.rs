//! Sources: the adapters that read the plant and turn what they read into
//! timestamped [`Sample`]s for the core.
//!
//! Each protocol lives in its own folder behind the small [`Source`] trait.
//! Sources only read; writing back is a separate capability (sinks, guard).
//! They stamp samples with wall-clock time ([`crate::wallclock`]), which is
//! the boundary where the outside world's time enters the twin.

pub mod backoff;
pub mod health;
pub mod limit;
pub mod modbus;
pub mod mqtt;
pub mod sparkplug;

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::LoadedConfig;
use crate::endpoints::Endpoints;
use crate::twin::Sample;

/// Sources send samples in batches (one per poll or message): one channel
/// operation per batch instead of per sample.
pub type SampleTx = mpsc::Sender<Vec<Sample>>;
pub type SampleRx = mpsc::Receiver<Vec<Sample>>;

/// A running source: a future that produces samples until cancelled.
pub type SourceTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a running source is given.
#[derive(Clone)]
pub struct SourceContext {
    pub tx: SampleTx,
    /// The task ends when this is cancelled.
    pub shutdown: CancellationToken,
    /// Where the source reports its health.
    pub health: health::HealthHandle,
}

/// A reading adapter.
pub trait Source: Send {
    /// The name given in the config (used in logs).
    fn name(&self) -> &str;
    /// "modbus", "mqtt" or "sparkplug".
    fn kind(&self) -> &'static str;
    /// Start reading.
    fn start(self: Box<Self>, cx: SourceContext) -> SourceTask;
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("endpoint override names unknown {kind} source \"{name}\"; known: {known}")]
    UnknownOverride {
        kind: &'static str,
        name: String,
        known: String,
    },
    #[error(
        "invalid MQTT URL \"{url}\" for source \"{name}\": {reason}; expected mqtt://host:port or mqtts://host:port"
    )]
    BadUrl {
        name: String,
        url: String,
        reason: String,
    },
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerError),
    #[error(transparent)]
    Mqtt(#[from] mqtt::SetupError),
}

/// Build every source of a plant. Sources whose MQTT broker is `embedded` and
/// that have no endpoint override start the embedded broker here.
pub fn build(
    cfg: &LoadedConfig,
    endpoints: &Endpoints,
    shutdown: &CancellationToken,
) -> Result<Vec<Box<dyn Source>>, BuildError> {
    Ok(build_with_links(cfg, endpoints, shutdown)?.sources)
}

/// The sources of a plant, and what the setpoint writers need of them.
pub struct Built {
    pub sources: Vec<Box<dyn Source>>,
    /// The Modbus links by device index: the writer's handle on the links
    /// the pollers read through (`ModbusWriter::from_config`).
    pub links: Vec<modbus::link::Link>,
    /// Where each MQTT source connects (overrides and the embedded broker
    /// resolved), by index: where its command connection goes.
    pub mqtt: Vec<mqtt::Endpoint>,
    /// The same for each Sparkplug source, with the births its subscriber
    /// reports for the setpoint writer.
    pub sparkplug: Vec<(mqtt::Endpoint, sparkplug::writer::Births)>,
}

/// [`build`], and what the setpoint writers need: the Modbus links, the
/// MQTT and Sparkplug endpoints, the Sparkplug births.
pub fn build_with_links(
    cfg: &LoadedConfig,
    endpoints: &Endpoints,
    shutdown: &CancellationToken,
) -> Result<Built, BuildError> {
    for (kind, map, names) in [
        (
            "modbus",
            &endpoints.modbus,
            cfg.config
                .modbus
                .iter()
                .map(|d| d.name.value.as_str())
                .collect::<Vec<_>>(),
        ),
        (
            "mqtt",
            &endpoints.mqtt,
            // Sparkplug sources are MQTT clients too and share the map.
            cfg.config
                .mqtt
                .iter()
                .map(|d| d.name.value.as_str())
                .chain(cfg.config.sparkplug.iter().map(|s| s.name.value.as_str()))
                .collect::<Vec<_>>(),
        ),
    ] {
        for name in map.keys() {
            if !names.contains(&name.as_str()) {
                return Err(BuildError::UnknownOverride {
                    kind,
                    name: name.clone(),
                    known: if names.is_empty() {
                        format!("the config has no {kind} source")
                    } else {
                        names.join(", ")
                    },
                });
            }
        }
    }

    let mut out: Vec<Box<dyn Source>> = Vec::new();
    // Several sources may share one embedded broker: start it once.
    let mut brokers: std::collections::BTreeMap<std::net::SocketAddr, std::net::SocketAddr> =
        std::collections::BTreeMap::new();
    let addresses: Vec<String> = cfg
        .config
        .modbus
        .iter()
        .map(|dev| {
            endpoints
                .modbus
                .get(&dev.name.value)
                .cloned()
                .unwrap_or_else(|| dev.address.value.clone())
        })
        .collect();
    let links = modbus::links(cfg, &addresses, shutdown);
    for (i, link) in links.iter().enumerate() {
        out.push(Box::new(modbus::ModbusPoller::new(
            cfg,
            i,
            addresses[i].clone(),
            link.clone(),
        )));
    }
    let mut mqtt_eps = Vec::new();
    for (i, src) in cfg.config.mqtt.iter().enumerate() {
        let endpoint = resolve_broker(&src.name.value, &src.connection, endpoints, &mut brokers)?;
        mqtt_eps.push(endpoint.clone());
        out.push(Box::new(mqtt::MqttSubscriber::new(cfg, i, endpoint)?));
    }
    let mut sparkplug_eps = Vec::new();
    for (i, src) in cfg.config.sparkplug.iter().enumerate() {
        let endpoint = resolve_broker(&src.name.value, &src.connection, endpoints, &mut brokers)?;
        let births = sparkplug::writer::Births::for_source(cfg, i);
        sparkplug_eps.push((endpoint.clone(), births.clone()));
        out.push(Box::new(
            sparkplug::SparkplugSubscriber::new(cfg, i, endpoint)?.with_births(births),
        ));
    }
    Ok(Built {
        sources: out,
        links,
        mqtt: mqtt_eps,
        sparkplug: sparkplug_eps,
    })
}

/// Where an MQTT-based source connects: its endpoint override, its external
/// broker, or the embedded broker (started once per listen address).
fn resolve_broker(
    name: &str,
    conn: &crate::config::MqttConnection,
    endpoints: &Endpoints,
    started: &mut std::collections::BTreeMap<std::net::SocketAddr, std::net::SocketAddr>,
) -> Result<mqtt::Endpoint, BuildError> {
    if let Some(url) = endpoints.mqtt.get(name) {
        return mqtt::parse_endpoint(url).map_err(|e| BuildError::BadUrl {
            name: name.to_string(),
            url: url.clone(),
            reason: match e.help() {
                Some(h) => format!("{e}; {h}"),
                None => e.to_string(),
            },
        });
    }
    Ok(match &conn.broker.value {
        crate::config::Broker::Tcp { host, port } => mqtt::Endpoint {
            host: host.clone(),
            port: *port,
            tls: conn.tls,
        },
        crate::config::Broker::Embedded { listen } => {
            let addr = match started.get(listen) {
                Some(a) => *a,
                None => {
                    let a = crate::broker::start_embedded(*listen)?;
                    started.insert(*listen, a);
                    a
                }
            };
            mqtt::Endpoint {
                host: addr.ip().to_string(),
                port: addr.port(),
                tls: false,
            }
        }
    })
}

/// Engineering value of a raw value: `raw * scale + offset`. Shared by every
/// source that scales (Modbus registers, MQTT payloads, Sparkplug metrics).
///
/// Decimal scales such as 0.1 or 0.001 are not exact in binary, so
/// `538 * 0.1` gives 53.800000000000004. When the scale is the reciprocal of
/// a whole number we divide by that number instead, which yields the closest
/// double to the decimal value (53.8) — what an engineer reading the PLC
/// expects to see.
pub fn apply_scale(raw: f64, scale: f64, offset: f64) -> f64 {
    let inv = 1.0 / scale;
    let scaled = if scale.abs() < 1.0 && (inv - inv.round()).abs() < 1e-9 * inv.abs() {
        raw / inv.round()
    } else {
        raw * scale
    };
    // Adding a zero offset would turn -0.0 into +0.0.
    if offset == 0.0 {
        scaled
    } else {
        scaled + offset
    }
}

#[cfg(test)]
mod tests {
    use super::apply_scale;

    #[test]
    fn decimal_scales_give_decimal_values() {
        assert_eq!(apply_scale(538.0, 0.1, 0.0), 53.8);
        assert_eq!(apply_scale(608.0, 0.001, 0.0), 0.608);
        assert_eq!(apply_scale(3.0, 2.5, 1.0), 8.5);
        assert_eq!(apply_scale(-7.0, 0.01, 0.0), -0.07);
    }
}
