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

use crate::config::sparkplug::SparkplugSource;
use crate::config::{
    BrokerUrl, BrokerUrlError, MQTT_PROTOCOL_MAX_PACKET, MqttConnection, MqttSource, Secret,
    parse_broker_url,
};
use crate::sources::backoff::Backoff;
use crate::twin::Reason;
use crate::wallclock;

/// Where to connect: host, port and whether to use TLS.
pub type Endpoint = BrokerUrl;

/// Parse a broker URL given at run time (`--mqtt`, `--endpoints`), with the
/// parser the config uses.
pub fn parse_endpoint(url: &str) -> Result<Endpoint, BrokerUrlError> {
    parse_broker_url(url)
}

/// What an MQTT client needs from a source's config, MQTT or Sparkplug:
/// the one input of [`options`].
#[derive(Debug, Clone, Copy)]
pub struct ClientSpec<'a> {
    /// "MQTT" or "Sparkplug", for messages.
    pub kind: &'static str,
    pub name: &'a str,
    pub conn: &'a MqttConnection,
    pub clean_session: bool,
    /// Manual acknowledgements: only once samples are with the core.
    pub manual_acks: bool,
}

impl<'a> From<&'a MqttSource> for ClientSpec<'a> {
    fn from(s: &'a MqttSource) -> Self {
        ClientSpec {
            kind: "MQTT",
            name: &s.name.value,
            conn: &s.connection,
            clean_session: s.clean_session,
            manual_acks: true,
        }
    }
}

impl<'a> From<&'a SparkplugSource> for ClientSpec<'a> {
    fn from(s: &'a SparkplugSource) -> Self {
        ClientSpec {
            kind: "Sparkplug",
            name: &s.name.value,
            conn: &s.connection,
            // Sparkplug 3.0 has host applications connect with a clean
            // session: state comes from births, not from queued messages.
            clean_session: true,
            manual_acks: false,
        }
    }
}

/// Why a source could not be set up. Each names the source and the config
/// key to look at.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "{kind} source \"{source_name}\": environment variable {var} (from password_env) is not set or not UTF-8; export it before starting twin, or give the password in a file with password_file"
    )]
    PasswordEnv {
        kind: &'static str,
        source_name: String,
        var: String,
    },
    #[error("{kind} source \"{source_name}\": cannot read {key} {}: {error}", path.display())]
    ReadFile {
        kind: &'static str,
        source_name: String,
        key: &'static str,
        path: PathBuf,
        error: String,
    },
    #[error("{kind} source \"{source_name}\": {key} {} holds no PEM {what}", path.display())]
    NoPem {
        kind: &'static str,
        source_name: String,
        key: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    #[error(
        "{kind} source \"{source_name}\": no trusted CA certificates found in the system store; set ca_file"
    )]
    NoSystemRoots {
        kind: &'static str,
        source_name: String,
    },
    #[error("{kind} source \"{source_name}\": TLS set-up failed: {error}")]
    Tls {
        kind: &'static str,
        source_name: String,
        error: String,
    },
}

/// rumqttc options for the source `src` at `ep`: the one place MQTT and
/// Sparkplug clients are configured. Relative file paths start from
/// `base_dir`, the config file's folder.
pub fn options(
    src: &ClientSpec<'_>,
    ep: &Endpoint,
    base_dir: &Path,
) -> Result<MqttOptions, SetupError> {
    let mut opts = MqttOptions::new(&src.conn.client_id, ep.host.clone(), ep.port);
    opts.set_keep_alive(src.conn.keep_alive);
    // A persistent MQTT session (the default there) keeps our subscriptions
    // and queues QoS 1 messages at the broker while we are away. The client
    // id is stable (from the config), so the broker finds the session again.
    opts.set_clean_session(src.clean_session);
    // rumqttc drops the connection on an incoming packet above its limit
    // (10 KiB by default), and the broker resends the same (retained or
    // queued) message on the next connection: a reconnect loop, and for
    // Sparkplug a lost birth (rumqtt #856). So the client takes anything the
    // protocol allows, and the source enforces `max_packet_size` itself after
    // receipt, by dropping, counting and warning.
    opts.set_max_packet_size(MQTT_PROTOCOL_MAX_PACKET, MQTT_PROTOCOL_MAX_PACKET);
    opts.set_manual_acks(src.manual_acks);
    if let Some(user) = &src.conn.username {
        let password = match &src.conn.password {
            None => String::new(),
            Some(s) => read_secret(src, s, base_dir)?,
        };
        opts.set_credentials(&user.value, password);
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

fn read_secret(src: &ClientSpec<'_>, s: &Secret, base_dir: &Path) -> Result<String, SetupError> {
    match s {
        Secret::Env(var) => std::env::var(&var.value).map_err(|_| SetupError::PasswordEnv {
            kind: src.kind,
            source_name: src.name.to_string(),
            var: var.value.clone(),
        }),
        Secret::File(f) => {
            let path = config_path(base_dir, &f.value);
            let text = std::fs::read_to_string(&path).map_err(|e| SetupError::ReadFile {
                kind: src.kind,
                source_name: src.name.to_string(),
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

fn tls_config(src: &ClientSpec<'_>, base_dir: &Path) -> Result<rustls::ClientConfig, SetupError> {
    let (kind, name) = (src.kind, src.name);
    let tls_err = |e: rustls::Error| SetupError::Tls {
        kind,
        source_name: name.to_string(),
        error: e.to_string(),
    };
    let read_err = |key, path: &Path, e: &dyn std::fmt::Display| SetupError::ReadFile {
        kind,
        source_name: name.to_string(),
        key,
        path: path.to_path_buf(),
        error: e.to_string(),
    };
    let mut roots = rustls::RootCertStore::empty();
    match &src.conn.tls_files.ca_file {
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
                    kind,
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
                    kind,
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
    match (&src.conn.tls_files.cert_file, &src.conn.tls_files.key_file) {
        (Some(cert), Some(key)) => {
            let cert_path = config_path(base_dir, &cert.value);
            let certs =
                read_certs(&cert_path).map_err(|e| read_err("cert_file", &cert_path, &e))?;
            if certs.is_empty() {
                return Err(SetupError::NoPem {
                    kind,
                    source_name: name.to_string(),
                    key: "cert_file",
                    path: cert_path,
                    what: "certificate",
                });
            }
            let key_path = config_path(base_dir, &key.value);
            let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| match e {
                rustls::pki_types::pem::Error::NoItemsFound => SetupError::NoPem {
                    kind,
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

/// The certificates in a PEM file, in order (also the HTTP surface's
/// `--http-tls-cert`, src/http/tls.rs).
pub(crate) fn read_certs(
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
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
    pub fn failed(&mut self, e: &ConnectionError) -> (Reason, Duration) {
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
            Reason::BrokerRefused
        } else {
            Reason::BrokerUnreachable
        };
        (reason, wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Loc;

    #[test]
    fn r9_setup_errors_name_the_kind_of_source_they_are_for() {
        let conn = MqttConnection {
            broker: Loc::new(
                crate::config::Broker::Tcp {
                    host: "127.0.0.1".into(),
                    port: 8883,
                },
                0..0,
            ),
            client_id: "twin-edge".into(),
            keep_alive: Duration::from_secs(10),
            max_packet_size: 1024,
            max_clock_skew: Duration::from_secs(2),
            username: Some(Loc::new("twin".to_string(), 0..0)),
            password: Some(Secret::Env(Loc::new(
                "TWIN_UNIT_NO_SUCH_VARIABLE".to_string(),
                0..0,
            ))),
            tls: true,
            tls_files: crate::config::TlsFiles::default(),
        };
        let spec = ClientSpec {
            kind: "Sparkplug",
            name: "edge",
            conn: &conn,
            clean_session: true,
            manual_acks: false,
        };
        let ep = parse_endpoint("mqtts://127.0.0.1:8883").expect("url");
        let err = options(&spec, &ep, Path::new(".")).expect_err("no such variable");
        assert_eq!(
            err.to_string(),
            "Sparkplug source \"edge\": environment variable TWIN_UNIT_NO_SUCH_VARIABLE (from password_env) is not set or not UTF-8; export it before starting twin, or give the password in a file with password_file"
        );
    }
}
