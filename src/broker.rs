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
    #[error(
        "embedded MQTT broker did not start listening on {0}; if another program took the port, choose another `listen` address or port"
    )]
    NotListening(SocketAddr),
}

/// How long a broker on a port we picked gets to listen before another
/// port is tried.
const PICKED_PORT_WAIT: Duration = Duration::from_secs(3);
/// How many picked ports are tried.
const PICKED_PORT_TRIES: usize = 3;

/// Start an embedded broker on `listen`; port 0 picks a free port. Returns the
/// address it listens on. The broker runs on its own threads until the process
/// exits.
pub fn start_embedded(listen: SocketAddr) -> Result<SocketAddr, BrokerError> {
    if listen.port() != 0 {
        // Fail early and clearly if the port is taken.
        drop(
            TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
                addr: listen,
                source,
            })?,
        );
        return start_on(listen, Duration::from_secs(5));
    }
    // rumqttd does not report the port it bound, so port 0 is resolved here:
    // a probe socket takes a free port and is closed, and rumqttd binds it
    // after. Another process may take the port in between (two demos
    // starting together, a busy test machine); rumqttd then logs the clash
    // and never listens, and the next try takes another port.
    let mut last = None;
    for _ in 0..PICKED_PORT_TRIES {
        let probe = TcpListener::bind(listen).map_err(|source| BrokerError::Bind {
            addr: listen,
            source,
        })?;
        let addr = probe.local_addr().map_err(|source| BrokerError::Bind {
            addr: listen,
            source,
        })?;
        drop(probe);
        match start_on(addr, PICKED_PORT_WAIT) {
            Ok(a) => return Ok(a),
            Err(e) => {
                tracing::warn!(%addr, "The embedded MQTT broker could not listen on the port picked for it; trying another.");
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(BrokerError::NotListening(listen)))
}

/// Whether something listens on `addr`: a bind of a socket that allows
/// address reuse and never listens fails then, and only then. Unlike a
/// listening probe it cannot take the port from under a broker binding it
/// at that moment, and unlike a connection it is not logged by the broker
/// as a failed MQTT handshake.
fn listening(addr: SocketAddr) -> bool {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    };
    match socket {
        Ok(s) => s.set_reuseaddr(true).is_ok() && s.bind(addr).is_err(),
        Err(_) => false,
    }
}

/// Start rumqttd on `addr` and wait up to `wait` for it to listen.
fn start_on(addr: SocketAddr, wait: Duration) -> Result<SocketAddr, BrokerError> {
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

    // Wait until it listens so clients do not race its start.
    let polls = (wait.as_millis() / 50).max(1);
    for _ in 0..polls {
        if listening(addr) {
            info!(%addr, "Embedded MQTT broker listening.");
            return Ok(addr);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(BrokerError::NotListening(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_readiness_probe_sees_a_listener_and_never_takes_its_port() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = l.local_addr().expect("address");
        assert!(listening(addr), "a listening port is seen");
        drop(l);
        assert!(!listening(addr), "a free port is not");
        // The probe's socket, bound but not listening, does not keep a
        // broker from binding the port while it exists (the race the old
        // listening probe lost under load).
        let probe = tokio::net::TcpSocket::new_v4().expect("socket");
        probe.set_reuseaddr(true).expect("reuse");
        probe.bind(addr).expect("the probe binds the free port");
        let broker = TcpListener::bind(addr);
        assert!(
            broker.is_ok(),
            "a listener binds beside the probe: {broker:?}"
        );
        drop(probe);
        assert!(listening(addr), "and is seen listening");
    }
}
