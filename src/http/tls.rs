//! HTTPS for the operator surface (`--http-tls-cert FILE --http-tls-key
//! FILE`; docs/api.md, "TLS"): the rustls server config, built once at
//! start-up from PEM files, so a bad file stops the run before it starts
//! with an error that names the file and what to do.
//!
//! rustls with the ring provider, as the MQTT sources use (ring builds
//! with a C compiler alone). HTTP/1.1 only, offered by ALPN: the accept
//! loop serves HTTP/1.1, and a client that asks for h2 must not be told
//! it will get it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

/// A client has this long, from its connection's acceptance, to finish the
/// TLS handshake; until then it holds one of the connection slots, so a
/// client that opens connections and says nothing cannot keep them.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the certificate and key cannot serve HTTPS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "--http-tls-cert {}: cannot read it: {error}; give the server's certificate (then its chain) as a PEM file",
        path.display()
    )]
    ReadCert { path: PathBuf, error: String },
    #[error(
        "--http-tls-cert {}: no certificate in it (no `-----BEGIN CERTIFICATE-----` block); give the server's certificate (then its chain) as a PEM file",
        path.display()
    )]
    NoCert { path: PathBuf },
    #[error(
        "--http-tls-key {}: cannot read it: {error}; give the certificate's private key as a PEM file",
        path.display()
    )]
    ReadKey { path: PathBuf, error: String },
    #[error(
        "--http-tls-key {}: the private key is encrypted, and twin asks for no passphrase; decrypt it into a file only twin's user can read (`openssl pkey -in {} -out server.key && chmod 600 server.key`)",
        path.display(), path.display()
    )]
    EncryptedKey { path: PathBuf },
    #[error(
        "--http-tls-key {}: no private key in it (no `-----BEGIN PRIVATE KEY-----`, `RSA PRIVATE KEY` or `EC PRIVATE KEY` block); give the certificate's private key as a PEM file",
        path.display()
    )]
    NoKey { path: PathBuf },
    #[error(
        "--http-tls-key {} does not match the certificate in --http-tls-cert {}: give the key the certificate was made for (the first certificate in the file is the server's)",
        key.display(), cert.display()
    )]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "--http-tls-cert {} with --http-tls-key {}: {error}; check that both are PEM files, the certificate first, and the key an RSA, ECDSA (P-256, P-384) or Ed25519 key",
        cert.display(), key.display()
    )]
    Rustls {
        cert: PathBuf,
        key: PathBuf,
        error: rustls::Error,
    },
}

/// The server config for `cert` (PEM: the server's certificate, then its
/// chain) and `key` (PEM: its private key, unencrypted).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs =
        crate::sources::mqtt::connect::read_certs(cert).map_err(|e| TlsError::ReadCert {
            path: cert.to_path_buf(),
            error: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert {
            path: cert.to_path_buf(),
        });
    }
    let private_key = read_key(key)?;
    let rustls_err = |error| TlsError::Rustls {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        error,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(rustls_err)?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch {
                    cert: cert.to_path_buf(),
                    key: key.to_path_buf(),
                }
            }
            e => rustls_err(e),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| TlsError::ReadKey {
        path: path.to_path_buf(),
        error: e.to_string(),
    })?;
    // rustls skips the PEM blocks it cannot use, so an encrypted key would
    // read as "no key"; say what it is instead. PKCS#8 marks it in the
    // label, the traditional OpenSSL format in a header.
    let text = String::from_utf8_lossy(&pem);
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(TlsError::EncryptedKey {
            path: path.to_path_buf(),
        });
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        e => TlsError::ReadKey {
            path: path.to_path_buf(),
            error: e.to_string(),
        },
    })
}
