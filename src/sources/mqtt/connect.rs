//! Connection set-up: broker URL, session, credentials, TLS and packet
//! limits, turned into rumqttc options once at start-up.
//!
//! Secrets (passwords, keys) are read here, from the environment or files,
//! never from the config text. A missing variable or unreadable file stops
//! start-up with an error that names the source and the key, rather than
//! connecting without credentials and being refused over and over.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{ConnectionError, MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use tracing::{debug, warn};

use crate::config::{MQTT_PROTOCOL_MAX_PACKET, MqttSource, Secret};
use crate::sources::backoff::Backoff;
use crate::wallclock;

/// Where to connect: host, port and whether to use TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Parse `mqtt://host[:port]` (port 1883) or `mqtts://host[:port]` (8883).
pub fn parse_endpoint(url: &str) -> Option<Endpoint> {
    let (rest, tls, default_port) = if let Some(r) = url.strip_prefix("mqtt://") {
        (r, false, 1883)
    } else {
        (url.strip_prefix("mqtts://")?, true, 8883)
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (rest, default_port),
    };
    (!host.is_empty()).then(|| Endpoint {
        host: host.to_string(),
        port,
        tls,
    })
}

/// Why a source could not be set up. Each names the source and the config
/// key to look at.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "MQTT source \"{source_name}\": environment variable {var} (from password_env) is not set or not UTF-8"
    )]
    PasswordEnv { source_name: String, var: String },
    #[error("MQTT source \"{source_name}\": cannot read {key} {}: {error}", path.display())]
    ReadFile {
        source_name: String,
        key: &'static str,
        path: PathBuf,
        error: String,
    },
    #[error("MQTT source \"{source_name}\": {key} {} holds no PEM {what}", path.display())]
    NoPem {
        source_name: String,
        key: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error(
        "MQTT source \"{source_name}\": no trusted CA certificates found in the system store; set ca_file"
    )]
    NoSystemRoots { source_name: String },
    #[error("MQTT source \"{source_name}\": TLS set-up failed: {error}")]
    Tls { source_name: String, error: String },
}

/// rumqttc options for `src` at `ep`. Relative file paths start from
/// `base_dir`, the config file's folder.
pub fn options(
    src: &MqttSource,
    ep: &Endpoint,
    base_dir: &Path,
) -> Result<MqttOptions, SetupError> {
    let name = &src.name.value;
    let mut opts = MqttOptions::new(src.client_id.clone(), ep.host.clone(), ep.port);
    opts.set_keep_alive(src.keep_alive);
    // A persistent session (the default) keeps our subscriptions and queues
    // QoS 1 messages at the broker while we are away. The client id is
    // stable (from the config), so the broker finds the session again.
    opts.set_clean_session(src.clean_session);
    // rumqttc drops the connection on an incoming packet above its limit,
    // and the broker resends the same (retained or queued) message on the
    // next connection: a reconnect loop (rumqtt #856). So the client takes
    // anything the protocol allows, and the source enforces
    // `max_packet_size` itself after receipt, by dropping and counting.
    opts.set_max_packet_size(MQTT_PROTOCOL_MAX_PACKET, MQTT_PROTOCOL_MAX_PACKET);
    // Acknowledge only once the message's samples are handed to the core.
    opts.set_manual_acks(true);
    if let Some(user) = &src.username {
        let password = match &src.password {
            None => String::new(),
            Some(s) => read_secret(name, s, base_dir)?,
        };
        opts.set_credentials(user.value.clone(), password);
    }
    if ep.tls {
        let config = tls_config(src, base_dir)?;
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(config),
        )));
    }
    Ok(opts)
}

/// A file named in the config, relative to the config's folder.
pub fn config_path(base_dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

fn read_secret(name: &str, s: &Secret, base_dir: &Path) -> Result<String, SetupError> {
    match s {
        Secret::Env(var) => std::env::var(&var.value).map_err(|_| SetupError::PasswordEnv {
            source_name: name.to_string(),
            var: var.value.clone(),
        }),
        Secret::File(f) => {
            let path = config_path(base_dir, &f.value);
            let text = std::fs::read_to_string(&path).map_err(|e| SetupError::ReadFile {
                source_name: name.to_string(),
                key: "password_file",
                path: path.clone(),
                error: e.to_string(),
            })?;
            // Editors end files with a newline; it is not part of the password.
            let text = text.strip_suffix('\n').unwrap_or(&text);
            Ok(text.strip_suffix('\r').unwrap_or(text).to_string())
        }
    }
}

fn tls_config(src: &MqttSource, base_dir: &Path) -> Result<rustls::ClientConfig, SetupError> {
    let name = &src.name.value;
    let tls_err = |e: rustls::Error| SetupError::Tls {
        source_name: name.to_string(),
        error: e.to_string(),
    };
    let read_err = |key, path: &Path, e: &dyn std::fmt::Display| SetupError::ReadFile {
        source_name: name.to_string(),
        key,
        path: path.to_path_buf(),
        error: e.to_string(),
    };
    let mut roots = rustls::RootCertStore::empty();
    match &src.tls_files.ca_file {
        Some(ca) => {
            let path = config_path(base_dir, &ca.value);
            let certs = read_certs(&path).map_err(|e| read_err("ca_file", &path, &e))?;
            for c in &certs {
                roots
                    .add(c.clone())
                    .map_err(|e| read_err("ca_file", &path, &e))?;
            }
            if roots.is_empty() {
                return Err(SetupError::NoPem {
                    source_name: name.to_string(),
                    key: "ca_file",
                    path,
                    what: "certificate",
                });
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(SetupError::NoSystemRoots {
                    source_name: name.to_string(),
                });
            }
        }
    }
    // ring, not aws-lc-rs: it builds with a C compiler alone (no cmake).
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_root_certificates(roots);
    match (&src.tls_files.cert_file, &src.tls_files.key_file) {
        (Some(cert), Some(key)) => {
            let cert_path = config_path(base_dir, &cert.value);
            let certs =
                read_certs(&cert_path).map_err(|e| read_err("cert_file", &cert_path, &e))?;
            if certs.is_empty() {
                return Err(SetupError::NoPem {
                    source_name: name.to_string(),
                    key: "cert_file",
                    path: cert_path,
                    what: "certificate",
                });
            }
            let key_path = config_path(base_dir, &key.value);
            let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| match e {
                rustls::pki_types::pem::Error::NoItemsFound => SetupError::NoPem {
                    source_name: name.to_string(),
                    key: "key_file",
                    path: key_path.clone(),
                    what: "private key",
                },
                e => read_err("key_file", &key_path, &e),
            })?;
            builder.with_client_auth_cert(certs, key).map_err(tls_err)
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
    CertificateDer::pem_file_iter(path)?.collect()
}

/// How long a clean disconnect may take at shutdown before the connection
/// is just dropped.
pub const DISCONNECT_GRACE: Duration = Duration::from_millis(500);

/// Reconnect delays: the first retry comes after about a second, as it
/// always did; a broker that stays away is tried every 30 s at most, so its
/// return is noticed within half a minute.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A connection that stayed up this long was healthy: the next outage
/// starts again from the shortest delay. One that fails sooner (a broker
/// that accepts and then drops us) keeps backing off.
const STABLE: Duration = Duration::from_secs(30);

/// Connection state and reconnect pacing of one MQTT-based source (MQTT or
/// Sparkplug): it logs each outage once and says how long to wait before
/// the event loop tries again.
#[derive(Debug)]
pub struct Reconnect {
    /// "MQTT" or "Sparkplug", for log lines.
    kind: &'static str,
    name: String,
    broker: String,
    backoff: Backoff,
    /// None before the first attempt's outcome; then whether it is up.
    up: Option<bool>,
    up_since: Option<std::time::Instant>,
}

impl Reconnect {
    pub fn new(kind: &'static str, name: &str, broker: &str) -> Self {
        Reconnect {
            kind,
            name: name.to_string(),
            broker: broker.to_string(),
            backoff: Backoff::new(name, BACKOFF_MIN, BACKOFF_MAX),
            up: None,
            up_since: None,
        }
    }

    /// The broker accepted the connection (CONNACK).
    pub fn connected(&mut self) {
        self.up = Some(true);
        self.up_since = Some(wallclock::monotonic());
    }

    /// Whether the connection is up now.
    pub fn is_up(&self) -> bool {
        self.up == Some(true)
    }

    /// The event loop failed with `e`: log it (a warning once per outage,
    /// the retries at debug level) and return the health reason and how long
    /// to wait before polling again.
    pub fn failed(&mut self, e: &ConnectionError) -> (&'static str, Duration) {
        if self
            .up_since
            .take()
            .is_some_and(|t| wallclock::since(t) >= STABLE)
        {
            self.backoff.reset();
        }
        let wait = self.backoff.step();
        let (kind, name, broker) = (self.kind, &self.name, &self.broker);
        let refused = matches!(e, ConnectionError::ConnectionRefused(_));
        if self.up != Some(false) {
            if let ConnectionError::ConnectionRefused(code) = e {
                warn!(source = %name, broker = %broker, code = ?code, retry_in = ?wait,
                    "{kind} broker refused the connection; check username, password and client_id. Retrying.");
            } else {
                warn!(source = %name, broker = %broker, error = %e, retry_in = ?wait,
                    "{kind} broker unreachable; retrying. Its tags go stale after their stale_after.");
            }
        } else {
            debug!(source = %name, broker = %broker, error = %e, retry_in = ?wait, "{kind} reconnect failed.");
        }
        self.up = Some(false);
        let reason = if refused {
            "broker_refused"
        } else {
            "broker_unreachable"
        };
        (reason, wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let ep = |h: &str, port, tls| {
            Some(Endpoint {
                host: h.into(),
                port,
                tls,
            })
        };
        assert_eq!(
            parse_endpoint("mqtt://127.0.0.1:1884"),
            ep("127.0.0.1", 1884, false)
        );
        assert_eq!(parse_endpoint("mqtt://broker"), ep("broker", 1883, false));
        assert_eq!(parse_endpoint("mqtts://broker/"), ep("broker", 8883, true));
        assert_eq!(parse_endpoint("mqtts://b:1"), ep("b", 1, true));
        assert_eq!(parse_endpoint("http://x"), None);
        assert_eq!(parse_endpoint("mqtt://:1"), None);
        assert_eq!(
            ep("b", 8883, true).expect("endpoint").to_string(),
            "mqtts://b:8883"
        );
    }
}
