//! The embedded MQTT broker (rumqttd), for `broker = "embedded"`.
//!
//! Plants without a broker of their own, the demo and the tests run one inside
//! the process. It listens on loopback unless the config says otherwise.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use tracing::{error, info};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "cannot bind the embedded MQTT broker to {addr}: {source}; choose another `listen` address or port"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("embedded MQTT broker did not start listening on {0} within 5 s")]
    NotListening(SocketAddr),
}

/// Start an embedded broker on `listen`; port 0 picks a free port. Returns the
/// address it listens on. The broker runs on its own threads until the process
/// exits.
pub fn start_embedded(listen: SocketAddr) -> Result<SocketAddr, BrokerError> {
    // rumqttd does not report the port it bound, so resolve port 0 ourselves.
    // The probe socket is closed right before rumqttd binds the same port.
    let addr = if listen.port() == 0 {
        let probe = TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
            addr: listen,
            source,
        })?;
        let a = probe.local_addr().map_err(|source| BrokerError::Bind {
            addr: listen,
            source,
        })?;
        drop(probe);
        a
    } else {
        // Fail early and clearly if the port is taken.
        drop(
            TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
                addr: listen,
                source,
            })?,
        );
        listen
    };

    let mut v4 = std::collections::HashMap::new();
    v4.insert(
        "v4".to_string(),
        rumqttd::ServerSettings {
            name: "embedded-v4".to_string(),
            listen: addr,
            tls: None,
            next_connection_delay_ms: 1,
            connections: rumqttd::ConnectionSettings {
                connection_timeout_ms: 60_000,
                max_payload_size: 256 * 1024,
                max_inflight_count: 500,
                auth: None,
                external_auth: None,
                dynamic_filters: true,
            },
        },
    );
    let config = rumqttd::Config {
        id: 0,
        router: rumqttd::RouterConfig {
            max_connections: 1_000,
            max_outgoing_packet_count: 1_000,
            max_segment_size: 4 * 1024 * 1024,
            max_segment_count: 4,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(v4),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    std::thread::Builder::new()
        .name("mqtt-broker".to_string())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                error!(%addr, error = %e, "Embedded MQTT broker stopped.");
            }
        })
        .map_err(|source| BrokerError::Bind { addr, source })?;

    // Wait until it listens so clients do not race its start. Probing with a
    // bind (it fails once rumqttd holds the port) avoids opening a connection
    // that the broker would log as a failed MQTT handshake.
    for _ in 0..100 {
        if TcpListener::bind(addr).is_err() {
            info!(%addr, "Embedded MQTT broker listening.");
            return Ok(addr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(BrokerError::NotListening(addr))
}
