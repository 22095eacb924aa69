//! Endpoint overrides: where to find each source at run time.
//!
//! A plant file names the production addresses. On a test bench, in CI or in
//! the demo the same file is pointed elsewhere: `twin sim --endpoints-out FILE`
//! writes where it actually listens, and `twin run --endpoints FILE` (or
//! `--modbus NAME=ADDR`, `--mqtt NAME=URL`) connects there instead.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoints {
    /// Modbus device name → `host:port`.
    #[serde(default)]
    pub modbus: BTreeMap<String, String>,
    /// MQTT or Sparkplug source name → `mqtt://host:port` or
    /// `mqtts://host:port`; parsed by the config's broker URL parser
    /// ([`crate::config::parse_broker_url`]) when the sources are built.
    #[serde(default)]
    pub mqtt: BTreeMap<String, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointsError {
    #[error("cannot read endpoints file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "endpoints file {path}:{line}:{column}: {message}; expected {{\"modbus\": {{\"device\": \"host:port\"}}, \"mqtt\": {{\"source\": \"mqtt://host:port\"}}}}"
    )]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("invalid override \"{0}\": expected NAME=VALUE")]
    Override(String),
    #[error(
        "endpoints file {path}: Modbus device \"{name}\" has address \"{address}\"; expected HOST:PORT with a port 1..=65535"
    )]
    ModbusAddress {
        path: String,
        name: String,
        address: String,
    },
}

/// Whether `s` is `HOST:PORT` with a port a client can connect to: the
/// shape a Modbus address must have, on the command line or in a file.
pub fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

impl Endpoints {
    pub fn load(path: &Path) -> Result<Self, EndpointsError> {
        let text = std::fs::read_to_string(path).map_err(|source| EndpointsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let ep: Endpoints = serde_json::from_str(&text).map_err(|e| EndpointsError::Parse {
            path: path.display().to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        // Checked here, like `--modbus`: a hand-edited file with no port
        // left the device unreachable for the whole run, with a warning.
        if let Some((name, address)) = ep.modbus.iter().find(|(_, a)| !is_host_port(a)) {
            return Err(EndpointsError::ModbusAddress {
                path: path.display().to_string(),
                name: name.clone(),
                address: address.clone(),
            });
        }
        Ok(ep)
    }

    /// Write atomically (temp file + rename) so a reader never sees half a file.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    /// Apply `NAME=VALUE` overrides given on the command line.
    pub fn apply(
        map: &mut BTreeMap<String, String>,
        overrides: &[String],
    ) -> Result<(), EndpointsError> {
        for o in overrides {
            let (k, v) = o
                .split_once('=')
                .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                .ok_or_else(|| EndpointsError::Override(o.clone()))?;
            map.insert(k.to_string(), v.to_string());
        }
        Ok(())
    }
}
