//! `[[sources.mqtt]]`: an MQTT broker (embedded or external, plain or
//! TLS), its session and credentials. The topics it maps to tags are in
//! [`super::topic`].

use std::net::SocketAddr;
use std::time::Duration;

use super::decode::{HOUR, Loc, MS, Sink, Table};
use super::diagnostics::Diagnostic;
use super::topic::{TopicMap, decode_topic};

#[derive(Debug, Clone, PartialEq)]
pub enum Broker {
    /// An MQTT broker inside the `twin` process (rumqttd), listening here.
    Embedded { listen: SocketAddr },
    /// An external broker at `mqtt://host:port`.
    Tcp { host: String, port: u16 },
}

/// Largest MQTT packet the protocol allows: a remaining length of
/// 268,435,455 bytes (MQTT 3.1.1, 2.2.3) plus the fixed header.
pub const MQTT_PROTOCOL_MAX_PACKET: usize = 268_435_455 + 5;

/// How far ahead of its receive time a device may stamp a sample before the
/// sample is flagged `uncertain` (`clock_skew`), for MQTT and Sparkplug
/// sources. 2 s sits well above what an NTP-synchronised clock is off by
/// (milliseconds) and above a tick or two of scheduling jitter, so healthy
/// devices are never flagged, while a device clock that has run or been set
/// ahead shows up within the shortest sensible `stale_after`. (The core
/// bounds every source time to its receive time whatever this says; this
/// only decides whether the sample is still called good.)
pub const DEFAULT_MAX_CLOCK_SKEW: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct MqttSource {
    pub name: Loc<String>,
    pub connection: MqttConnection,
    pub stale_after: Option<Duration>,
    /// false (the default): a persistent session, so QoS 1 messages published
    /// while the twin is away are queued by the broker and delivered on
    /// reconnect.
    pub clean_session: bool,
    pub topics: Vec<TopicMap>,
}

/// How an MQTT-based source (MQTT or Sparkplug) reaches its broker: the
/// keys both share, decoded and checked by [`decode_connection`] alone so
/// the two accept and diagnose them alike, and held alike by both.
#[derive(Debug, Clone)]
pub struct MqttConnection {
    pub broker: Loc<Broker>,
    pub client_id: String,
    pub keep_alive: Duration,
    /// Largest PUBLISH packet accepted, in bytes; bigger ones are counted and
    /// dropped.
    pub max_packet_size: usize,
    /// Samples stamped further ahead of their receive time than this are
    /// kept as `uncertain` (`clock_skew`) at their receive time.
    pub max_clock_skew: Duration,
    pub username: Option<Loc<String>>,
    pub password: Option<Secret>,
    /// Connect with TLS: the broker was written `mqtts://`.
    pub tls: bool,
    pub tls_files: TlsFiles,
}

/// Where a secret is read from at start-up. Never the config text itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Secret {
    /// The value of this environment variable.
    Env(Loc<String>),
    /// The contents of this file (one trailing newline removed); a relative
    /// path starts from the config file's folder.
    File(Loc<String>),
}

/// PEM files for `mqtts://`; relative paths start from the config file's
/// folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsFiles {
    /// CA certificates to trust; without it, the system's trust store.
    pub ca_file: Option<Loc<String>>,
    /// Client certificate and key, for brokers that authenticate clients by
    /// certificate. Both or neither.
    pub cert_file: Option<Loc<String>>,
    pub key_file: Option<Loc<String>>,
}

pub(super) fn decode_mqtt(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<MqttSource> {
    let name = t.req_str(sink, "name");
    let conn = decode_connection(sink, &mut t, MQTT_DEFAULT_MAX_PACKET);
    let stale_after = t
        .opt_duration(sink, "stale_after", MS, HOUR)
        .map(|d| d.value);
    let clean_session = t.opt_bool(sink, "clean_session").is_some_and(|b| b.value);
    let topics: Vec<TopicMap> = t
        .opt_table_array(sink, "topics")
        .into_iter()
        .filter_map(|m| decode_topic(sink, m))
        .collect();
    t.finish(sink);
    let Some((name, connection)) = name.and_then(|n| conn.of(&n).map(|c| (n, c))) else {
        for tp in &topics {
            sink.broken_tags
                .extend(tp.tag_names().into_iter().map(|(tag, _)| tag));
        }
        return None;
    };
    Some(MqttSource {
        name,
        connection,
        stale_after,
        clean_session,
        topics,
    })
}

/// Default `max_packet_size` of an MQTT source: plant telemetry messages
/// are small, and 256 KiB leaves room for JSON arrays of samples.
pub const MQTT_DEFAULT_MAX_PACKET: usize = 256 * 1024;

/// The connection keys as decoded, before the source's name gives the
/// default client id.
#[derive(Debug, Clone)]
pub(super) struct Connection {
    pub broker: Option<Loc<Broker>>,
    /// None: "twin-" and the source name.
    pub client_id: Option<String>,
    pub keep_alive: Duration,
    pub max_packet_size: usize,
    pub max_clock_skew: Duration,
    pub username: Option<Loc<String>>,
    pub password: Option<Secret>,
    pub tls: bool,
    pub tls_files: TlsFiles,
}

impl Connection {
    /// The connection of the source called `name`; `None` without a broker
    /// (already reported).
    pub(super) fn of(self, name: &Loc<String>) -> Option<MqttConnection> {
        Some(MqttConnection {
            broker: self.broker?,
            client_id: self
                .client_id
                .unwrap_or_else(|| format!("twin-{}", name.value)),
            keep_alive: self.keep_alive,
            max_packet_size: self.max_packet_size,
            max_clock_skew: self.max_clock_skew,
            username: self.username,
            password: self.password,
            tls: self.tls,
            tls_files: self.tls_files,
        })
    }
}

/// Decode the connection keys of an MQTT or Sparkplug source: `broker`,
/// `listen`, `client_id`, `keep_alive`, `max_packet_size`, the credentials
/// and the TLS files.
pub(super) fn decode_connection(
    sink: &mut Sink,
    t: &mut Table<'_, '_>,
    default_max_packet: usize,
) -> Connection {
    decode_connection_as(sink, t, Some(default_max_packet))
}

/// [`decode_connection`] for a source (`Some(default max_packet_size)`) or
/// for a publisher (`None`): a publisher reads no `listen`,
/// `max_packet_size` or `max_clock_skew` (they are about what a source
/// receives, so they stay unknown keys there, with a did-you-mean), and
/// its broker must be an external one (checked by its caller).
pub(super) fn decode_connection_as(
    sink: &mut Sink,
    t: &mut Table<'_, '_>,
    source_max_packet: Option<usize>,
) -> Connection {
    let broker_raw = t.req_str(sink, "broker");
    let listen = match source_max_packet {
        Some(_) => t.opt_str(sink, "listen"),
        None => None,
    };
    let client_id = t.opt_str(sink, "client_id");
    if let Some(c) = &client_id
        && c.value.trim().is_empty()
    {
        sink.push(
            Diagnostic::error(c.span.clone(), t.key_path("client_id"), "must not be empty")
                .expected("a client id unique on the broker, e.g. \"twin-cell1\"")
                .help(if source_max_packet.is_some() {
                    "leave `client_id` out to use \"twin-\" followed by the source name"
                } else {
                    "leave `client_id` out to use \"twin-\", the plant id, the line ids and the publisher's name"
                }),
        );
    }
    let keep_alive = t
        .opt_duration(sink, "keep_alive", Duration::from_secs(1), HOUR)
        .map(|d| d.value)
        .unwrap_or(Duration::from_secs(10));
    let (max_packet_size, max_clock_skew) = match source_max_packet {
        Some(default_max_packet) => (
            t.opt_int(
                sink,
                "max_packet_size",
                128,
                MQTT_PROTOCOL_MAX_PACKET as i64,
            )
            .map_or(default_max_packet, |v| v.value as usize),
            t.opt_duration(sink, "max_clock_skew", Duration::ZERO, HOUR)
                .map_or(DEFAULT_MAX_CLOCK_SKEW, |d| d.value),
        ),
        None => (MQTT_PROTOCOL_MAX_PACKET, DEFAULT_MAX_CLOCK_SKEW),
    };
    let username = t.opt_str(sink, "username");
    reject_plain_password(sink, t);
    let password_env = t.opt_str(sink, "password_env");
    let password_file = t.opt_str(sink, "password_file");
    let tls_files = TlsFiles {
        ca_file: t.opt_str(sink, "ca_file"),
        cert_file: t.opt_str(sink, "cert_file"),
        key_file: t.opt_str(sink, "key_file"),
    };
    let mut tls = false;
    let broker = broker_raw.and_then(|b| {
        let path = t.key_path("broker");
        let (broker, is_tls) =
            parse_broker(sink, &path, &b, listen.as_ref(), &t.key_path("listen"))?;
        tls = is_tls;
        Some(Loc::new(broker, b.span))
    });
    if let (Some(l), Some(b)) = (&listen, &broker)
        && !matches!(b.value, Broker::Embedded { .. })
    {
        sink.push(
            Diagnostic::error(
                l.span.clone(),
                t.key_path("listen"),
                "`listen` only applies to broker = \"embedded\"",
            )
            .help("remove `listen`, or set `broker = \"embedded\"`"),
        );
    }
    let connection_keys = [
        ("username", &username),
        ("password_env", &password_env),
        ("password_file", &password_file),
        ("ca_file", &tls_files.ca_file),
        ("cert_file", &tls_files.cert_file),
        ("key_file", &tls_files.key_file),
    ];
    match broker.as_ref().map(|b| (&b.value, tls)) {
        Some((Broker::Embedded { .. }, _)) => {
            for (key, v) in connection_keys {
                if let Some(v) = v {
                    sink.push(
                        Diagnostic::error(
                            v.span.clone(),
                            t.key_path(key),
                            format!("`{key}` does not apply to broker = \"embedded\""),
                        )
                        .help(format!(
                            "the embedded broker has neither authentication nor TLS; remove `{key}`, or name an external broker"
                        )),
                    );
                }
            }
        }
        Some((Broker::Tcp { .. }, false)) => {
            for (key, v) in &connection_keys[3..] {
                if let Some(v) = v {
                    sink.push(
                        Diagnostic::error(
                            v.span.clone(),
                            t.key_path(key),
                            format!("`{key}` only applies to an mqtts:// broker"),
                        )
                        .help("write the broker as \"mqtts://host:port\" to connect with TLS"),
                    );
                }
            }
            if let Some(p) = password_env.as_ref().or(password_file.as_ref()) {
                sink.push(
                    Diagnostic::warning(
                        p.span.clone(),
                        t.key_path(if password_env.is_some() {
                            "password_env"
                        } else {
                            "password_file"
                        }),
                        "the password is sent unencrypted over mqtt://",
                    )
                    .help("connect with \"mqtts://host:port\" unless the network is trusted"),
                );
            }
        }
        _ => {}
    }
    match (&tls_files.cert_file, &tls_files.key_file) {
        (Some(c), None) => sink.push(
            Diagnostic::error(
                c.span.clone(),
                t.key_path("cert_file"),
                "`cert_file` needs `key_file`",
            )
            .expected("both cert_file and key_file (PEM), or neither"),
        ),
        (None, Some(k)) => sink.push(
            Diagnostic::error(
                k.span.clone(),
                t.key_path("key_file"),
                "`key_file` needs `cert_file`",
            )
            .expected("both cert_file and key_file (PEM), or neither"),
        ),
        _ => {}
    }
    let password = match (password_env, password_file) {
        (Some(_), Some(f)) => {
            sink.push(
                Diagnostic::error(
                    f.span.clone(),
                    t.key_path("password_file"),
                    "give either `password_env` or `password_file`, not both",
                )
                .help("remove one of them"),
            );
            None
        }
        (Some(e), None) => {
            check_env_name(sink, &t.key_path("password_env"), &e);
            Some(Secret::Env(e))
        }
        (None, Some(f)) => {
            if f.value.trim().is_empty() {
                sink.push(
                    Diagnostic::error(
                        f.span.clone(),
                        t.key_path("password_file"),
                        "must not be empty",
                    )
                    .expected("the path of a file holding the password"),
                );
            }
            Some(Secret::File(f))
        }
        (None, None) => None,
    };
    if let Some(p) = &password
        && username.is_none()
    {
        let (Secret::Env(l) | Secret::File(l)) = p;
        sink.push(
            Diagnostic::error(
                l.span.clone(),
                t.key_path("username"),
                "a password needs a `username`",
            )
            .expected("username = \"...\" next to the password"),
        );
    }
    Connection {
        broker,
        client_id: client_id.map(|c| c.value).filter(|c| !c.trim().is_empty()),
        keep_alive,
        max_packet_size,
        max_clock_skew,
        username,
        password,
        tls,
        tls_files,
    }
}

/// A literal `password` is refused: plant files travel through version
/// control and support tickets. It is asked for only when present, so it
/// never shows up among the keys an unknown key is compared with.
fn reject_plain_password(sink: &mut Sink, t: &mut Table<'_, '_>) {
    let Some(span) = t.key_span("password") else {
        return;
    };
    // Marks the key as known; its type does not matter, so any type error
    // goes to a scratch sink.
    let _ = t.opt_str(&mut Sink::default(), "password");
    sink.push(
        Diagnostic::error(
            span,
            t.key_path("password"),
            "a password in plain text is not accepted in the config",
        )
        .expected("password_env = \"VARIABLE\" or password_file = \"path\"")
        .help("put the password in an environment variable, or in a file only the twin's user can read, and name it here"),
    );
}

fn check_env_name(sink: &mut Sink, path: &str, name: &Loc<String>) {
    let v = name.value.trim();
    let bad = if v.is_empty() {
        Some("must not be empty".to_string())
    } else {
        v.chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
            .map(|c| {
                format!(
                    "environment variable name \"{}\" contains {c:?}",
                    name.value
                )
            })
    };
    if let Some(msg) = bad {
        let help = v.strip_prefix('$').map(|rest| {
            format!(
                "write the name without `$`: \"{}\"",
                rest.trim_matches(['{', '}'])
            )
        });
        sink.push(
            Diagnostic::error(name.span.clone(), path, msg)
                .expected("the name of an environment variable, e.g. \"MQTT_PASSWORD\"")
                .maybe_help(help),
        );
    }
}

/// An MQTT broker URL: `mqtt://host[:port]` (port 1883) or
/// `mqtts://host[:port]` (8883, TLS). The one parser for config files and
/// run-time endpoint overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

/// What a broker URL accepts, for messages.
pub const BROKER_URL_EXPECTED: &str = "\"mqtt://host:port\" or \"mqtts://host:port\"";

/// Why a broker URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerUrlError {
    #[error("invalid broker \"{url}\"")]
    Scheme { url: String, help: String },
    #[error("invalid port in broker \"{url}\"")]
    Port { url: String },
    #[error("missing host in broker \"{url}\"")]
    Host { url: String },
}

impl BrokerUrlError {
    /// How to write it instead, where that can be guessed.
    pub fn help(&self) -> Option<&str> {
        match self {
            BrokerUrlError::Scheme { help, .. } => Some(help),
            _ => None,
        }
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Parse a broker URL (not "embedded": that is a config word, not a URL).
pub fn parse_broker_url(url: &str) -> Result<BrokerUrl, BrokerUrlError> {
    let (rest, tls, default_port) = if let Some(rest) = url.strip_prefix("mqtt://") {
        (rest, false, 1883)
    } else if let Some(rest) = url.strip_prefix("mqtts://") {
        (rest, true, 8883)
    } else {
        let help = if let Some(rest) = url.strip_prefix("ssl://") {
            format!("write \"mqtts://{rest}\"")
        } else if let Some(rest) = url.strip_prefix("tcp://") {
            // MQTT over plain TCP is what `tcp://` means in most clients
            // (Paho, for one); we spell it mqtt://.
            format!("write \"mqtt://{rest}\"")
        } else if url.contains("://") {
            "only the mqtt:// and mqtts:// schemes are supported".to_string()
        } else {
            format!("write \"mqtt://{url}\"")
        };
        return Err(BrokerUrlError::Scheme {
            url: url.to_string(),
            help,
        });
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => match p.parse::<u16>() {
            Ok(p) => (h, p),
            Err(_) => {
                return Err(BrokerUrlError::Port {
                    url: url.to_string(),
                });
            }
        },
        None => (rest, default_port),
    };
    if host.is_empty() {
        return Err(BrokerUrlError::Host {
            url: url.to_string(),
        });
    }
    Ok(BrokerUrl {
        host: host.to_string(),
        port,
        tls,
    })
}

/// The `broker` key: "embedded" (listening on `listen`) or a broker URL;
/// says whether the broker is to be reached over TLS.
fn parse_broker(
    sink: &mut Sink,
    path: &str,
    b: &Loc<String>,
    listen: Option<&Loc<String>>,
    listen_path: &str,
) -> Option<(Broker, bool)> {
    if b.value == "embedded" {
        let listen_addr = match listen {
            None => SocketAddr::from(([127, 0, 0, 1], 1883)),
            Some(l) => match l.value.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    sink.push(
                        Diagnostic::error(
                            l.span.clone(),
                            listen_path,
                            format!("invalid listen address \"{}\"", l.value),
                        )
                        .expected("ip:port, e.g. \"127.0.0.1:1883\""),
                    );
                    return None;
                }
            },
        };
        return Some((
            Broker::Embedded {
                listen: listen_addr,
            },
            false,
        ));
    }
    match parse_broker_url(&b.value) {
        Ok(u) => Some((
            Broker::Tcp {
                host: u.host,
                port: u.port,
            },
            u.tls,
        )),
        Err(e) => {
            let d = Diagnostic::error(b.span.clone(), path, e.to_string())
                .expected(format!("\"embedded\", {BROKER_URL_EXPECTED}"));
            sink.push(match e.help() {
                Some(h) => d.help(h),
                None => d,
            });
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let u = |h: &str, port, tls| {
            Ok(BrokerUrl {
                host: h.into(),
                port,
                tls,
            })
        };
        assert_eq!(
            parse_broker_url("mqtt://127.0.0.1:1884"),
            u("127.0.0.1", 1884, false)
        );
        assert_eq!(parse_broker_url("mqtt://broker"), u("broker", 1883, false));
        assert_eq!(parse_broker_url("mqtts://broker/"), u("broker", 8883, true));
        assert_eq!(parse_broker_url("mqtts://b:1"), u("b", 1, true));
        let e = parse_broker_url("ssl://b:1").expect_err("ssl");
        assert_eq!(e.help(), Some("write \"mqtts://b:1\""));
        assert!(matches!(
            parse_broker_url("mqtt://:1"),
            Err(BrokerUrlError::Host { .. })
        ));
        assert!(matches!(
            parse_broker_url("mqtt://b:x"),
            Err(BrokerUrlError::Port { .. })
        ));
        assert_eq!(
            u("b", 8883, true).expect("url").to_string(),
            "mqtts://b:8883"
        );
    }
}
