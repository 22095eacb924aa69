//! `--http-tls-cert` and `--http-tls-key` on a live demo (docs/api.md,
//! "TLS"): HTTPS served to a client that trusts only the test's own
//! certificate, made here with the openssl CLI (scripts/setup.sh); a key
//! that will not do stops the start with exit 78 naming the file; one flag
//! without the other is a usage error.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::util::{Proc, twin};

/// A self-signed certificate for 127.0.0.1 and its key in `dir`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=twin test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (scripts/setup.sh installs it)");
    assert!(out.status.success(), "openssl req: {out:?}");
    (cert, key)
}

/// The address from the `HTTP server listening.` line, which must say
/// `https://`.
fn listening_https(proc: &mut Proc) -> String {
    for _ in 0..1500 {
        let err = proc.stderr();
        if let Some(line) = err.lines().find(|l| l.contains("HTTP server listening.")) {
            return line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("url=https://"))
                .unwrap_or_else(|| panic!("no url=https:// in {line:?}"))
                .to_string();
        }
        assert!(proc.is_running(), "the twin exited: {err}");
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no HTTP server line: {}", proc.stderr());
}

/// `GET path` over TLS, trusting `ca` alone: the whole answer.
fn https_get(addr: &str, ca: &Path, path: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("read the CA") {
        roots.add(c.expect("a certificate")).expect("a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let sock: std::net::SocketAddr = addr.parse().expect("an address");
    let name = ServerName::IpAddress(sock.ip().into());
    let conn = rustls::ClientConnection::new(Arc::new(config), name).expect("a TLS client");
    let tcp = std::net::TcpStream::connect(sock).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("send over TLS");
    let mut raw = Vec::new();
    // The server may close without a TLS close_notify after the answer.
    let _ = tls.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

#[test]
fn https_serves_the_api_and_bad_tls_files_stop_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path());

    let mut demo = twin();
    demo.args(["demo", "--no-table", "--http", "127.0.0.1:0"])
        .arg("--http-tls-cert")
        .arg(&cert)
        .arg("--http-tls-key")
        .arg(&key);
    let mut proc = Proc::spawn(demo);
    let addr = listening_https(&mut proc);
    let answer = https_get(&addr, &cert, "/healthz");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"ok\":true"),
        "healthz over HTTPS: {answer:?}"
    );
    proc.terminate();
    assert_eq!(
        proc.wait(Duration::from_secs(30)),
        Some(0),
        "{}",
        proc.stderr()
    );

    // The key encrypted: exit 78, the file named, what to do said.
    let encrypted = dir.path().join("encrypted.key");
    let out = std::process::Command::new("openssl")
        .arg("pkey")
        .arg("-in")
        .arg(&key)
        .args(["-aes256", "-passout", "pass:secret", "-out"])
        .arg(&encrypted)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl pkey: {out:?}");
    let out = twin()
        .args(["demo", "--no-table", "--http", "127.0.0.1:0"])
        .arg("--http-tls-cert")
        .arg(&cert)
        .arg("--http-tls-key")
        .arg(&encrypted)
        .output()
        .expect("run twin demo");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(
        err.contains(&format!("--http-tls-key {}", encrypted.display()))
            && err.contains("encrypted")
            && err.contains("openssl pkey"),
        "{err}"
    );

    // The certificate without its key: a usage error.
    let out = twin()
        .args(["demo", "--no-table", "--http", "127.0.0.1:0"])
        .arg("--http-tls-cert")
        .arg(&cert)
        .output()
        .expect("run twin demo");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
