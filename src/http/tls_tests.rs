//! HTTPS: a self-signed certificate made here with the openssl CLI
//! (scripts/setup.sh installs it), the accept loop serving TLS to a rustls
//! client that trusts only that certificate, plain HTTP on the TLS port
//! told what to do, the handshake and write timeouts under TLS, and bad
//! certificate and key files named in the error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::tls::{TlsError, server_config};
use super::{Limits, accept_loop};

/// A self-signed certificate for 127.0.0.1 and its key (P-256) in `dir`,
/// named `{name}.crt` and `{name}.key`.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=twin test"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        // webpki refuses a CA certificate as a server's own.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (cert, key)
}

/// Reads until the peer closes (or `wait` passes): the bytes, and whether
/// it closed.
async fn until_closed<S: AsyncRead + Unpin>(s: &mut S, wait: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(wait, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    (got, read.is_ok())
}

/// A TLS connection trusting `ca` alone.
async fn tls_connect(
    addr: std::net::SocketAddr,
    ca: &Path,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    tls_over(TcpStream::connect(addr).await?, ca).await
}

/// A TLS client on `tcp`, trusting `ca` alone.
async fn tls_over(
    tcp: TcpStream,
    ca: &Path,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let addr = tcp.peer_addr()?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).expect("read the test CA") {
        roots.add(c.expect("a PEM certificate")).expect("a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    // Offer h2 first: the server must still pick HTTP/1.1, all it serves.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::IpAddress(addr.ip().into());
    connector.connect(name, tcp).await
}

/// A GET of `/` over TLS, trusting `ca` alone: the answer, and the
/// protocol ALPN settled on.
async fn https_get(addr: std::net::SocketAddr, ca: &Path) -> (String, Option<Vec<u8>>) {
    let mut tls = tls_connect(addr, ca)
        .await
        .expect("TLS handshake with the test certificate");
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    tls.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let (got, closed) = until_closed(&mut tls, Duration::from_secs(10)).await;
    assert!(closed, "the answer ends");
    (String::from_utf8_lossy(&got).into_owned(), alpn)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_is_served_and_plain_http_on_its_port_is_told_to_use_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path(), "server");
    let config = server_config(&cert, &key).expect("a good certificate and key");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    const BIG: usize = 32 << 20;
    let big = vec![b'x'; BIG];
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .route("/big", axum::routing::get(move || async move { big }));
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(accept_loop(
        listener,
        app,
        Some(tokio_rustls::TlsAcceptor::from(config)),
        stop.clone(),
        Limits {
            handshake_timeout: Duration::from_millis(500),
            write_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
    ));

    let (answer, alpn) = https_get(addr, &cert).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
        "served over TLS: {answer:?}"
    );
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]), "ALPN: HTTP/1.1");

    // Plain HTTP on the TLS port: a plain answer saying what to do, then
    // the close.
    let mut plain = TcpStream::connect(addr).await.expect("connect");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("send");
    let (got, closed) = until_closed(&mut plain, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(closed, "closed after the answer");
    assert!(
        text.starts_with("HTTP/1.1 400") && text.contains("https://"),
        "told to use https: {text:?}"
    );

    // A client that never starts its handshake is cut off.
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let (got, closed) = until_closed(&mut silent, Duration::from_secs(10)).await;
    assert!(
        closed && got.is_empty(),
        "closed unanswered after the handshake timeout"
    );

    // A TLS client that trusts another certificate fails its handshake,
    // and the server goes on serving.
    let (other, _) = self_signed(dir.path(), "other");
    assert!(
        tls_connect(addr, &other).await.is_err(),
        "a client that does not trust the server's certificate fails"
    );
    let (answer, _) = https_get(addr, &cert).await;
    assert!(answer.ends_with("ok"), "still serving: {answer:?}");

    // Under TLS too, a client that stops reading its answer is cut off
    // (the write timeout is on the TCP stream, beneath TLS).
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let tcp = socket.connect(addr).await.expect("connect");
    let mut stalled = tls_over(tcp, &cert).await.expect("TLS handshake");
    stalled
        .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (got, closed) = until_closed(&mut stalled, Duration::from_secs(30)).await;
    assert!(closed, "the connection ends");
    assert!(
        got.starts_with(b"HTTP/1.1 200") && got.len() < BIG,
        "cut off before the end of the answer ({} bytes of {BIG})",
        got.len()
    );
    stop.cancel();
}

#[test]
fn bad_certificate_and_key_files_are_named_with_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path(), "server");
    let (_, other_key) = self_signed(dir.path(), "other");
    let missing = dir.path().join("missing.crt");
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

    let err = |cert: &Path, key: &Path| match server_config(cert, key) {
        Ok(_) => panic!("{} with {} was taken", cert.display(), key.display()),
        Err(e) => (e.to_string(), e),
    };
    let shown = |p: &Path| p.display().to_string();

    let (text, e) = err(&missing, &key);
    assert!(matches!(e, TlsError::ReadCert { .. }), "{e:?}");
    assert!(
        text.contains("--http-tls-cert") && text.contains(&shown(&missing)),
        "{text}"
    );

    // A key where the certificate should be.
    let (text, e) = err(&key, &key);
    assert!(matches!(e, TlsError::NoCert { .. }), "{e:?}");
    assert!(
        text.contains(&shown(&key)) && text.contains("BEGIN CERTIFICATE"),
        "{text}"
    );

    // A certificate where the key should be.
    let (text, e) = err(&cert, &cert);
    assert!(matches!(e, TlsError::NoKey { .. }), "{e:?}");
    assert!(
        text.contains("--http-tls-key") && text.contains(&shown(&cert)),
        "{text}"
    );

    let (text, e) = err(&cert, &other_key);
    assert!(matches!(e, TlsError::KeyMismatch { .. }), "{e:?}");
    assert!(
        text.contains(&shown(&other_key)) && text.contains(&shown(&cert)),
        "{text}"
    );

    let (text, e) = err(&cert, &encrypted);
    assert!(matches!(e, TlsError::EncryptedKey { .. }), "{e:?}");
    assert!(
        text.contains(&shown(&encrypted)) && text.contains("openssl pkey"),
        "{text}"
    );

    // And the pair that belongs together is taken, offering HTTP/1.1 only.
    let config = server_config(&cert, &key).expect("a good pair");
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
}
