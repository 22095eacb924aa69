//! The accept loop's limits: a cap on connections, a client that sends no
//! complete request head is cut off, and so is one that stops reading its
//! answer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Limits, accept_loop, listen};

/// Reads until the server closes (or `wait` passes): the bytes read, and
/// whether it closed.
async fn until_closed(s: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
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

async fn get(addr: std::net::SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let (got, closed) = until_closed(&mut s, Duration::from_secs(10)).await;
    assert!(closed, "the answer ends");
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_and_a_slow_head_is_cut_off() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(accept_loop(
        listener,
        app,
        None,
        stop.clone(),
        Limits {
            max_connections: 2,
            header_read_timeout: Duration::from_millis(500),
            ..Limits::default()
        },
    ));
    assert!(get(addr).await.ends_with("ok"), "a request is served");

    // Two clients take both slots: one sends nothing, one trickles half a
    // request head and stops (slowloris).
    let mut silent = TcpStream::connect(addr).await.expect("connect");
    let mut slow = TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
        .await
        .expect("send part of a head");
    // Both accepted before the third arrives (accepting is in order).
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A whole request on a third connection: beyond the cap it is closed
    // unanswered (under the cap it would get "ok").
    let mut third = TcpStream::connect(addr).await.expect("connect");
    let _ = third
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await;
    let (got, closed) = until_closed(&mut third, Duration::from_secs(5)).await;
    assert!(
        closed && got.is_empty(),
        "a connection beyond the cap is closed unanswered: {:?}",
        String::from_utf8_lossy(&got)
    );

    // The head timeout frees both slots.
    for s in [&mut slow, &mut silent] {
        let (got, closed) = until_closed(s, Duration::from_secs(10)).await;
        assert!(closed, "cut off after the head timeout");
        let text = String::from_utf8_lossy(&got);
        assert!(
            got.is_empty() || text.starts_with("HTTP/1.1 408"),
            "closed, or told 408: {text:?}"
        );
    }
    assert!(get(addr).await.ends_with("ok"), "the slots are free again");

    // A request head over the limit is refused, not buffered.
    let mut big = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(super::MAX_HEAD_BYTES * 2)
    );
    let _ = big.write_all(head.as_bytes()).await;
    let (got, closed) = until_closed(&mut big, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(closed, "an oversized head ends the connection");
    assert!(
        text.starts_with("HTTP/1.1 431") || got.is_empty(),
        "an oversized head is answered 431 (or cut off): {text:?}"
    );
    assert!(!text.contains("ok"), "it is not served: {text:?}");

    // Just over the limit, in one write: hyper's buffer limit alone let
    // such a head through (up to about twice the limit) and served it.
    for over in [1, 1000, super::MAX_HEAD_BYTES / 2] {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(super::MAX_HEAD_BYTES + over)
        );
        let _ = s.write_all(head.as_bytes()).await;
        let (got, closed) = until_closed(&mut s, Duration::from_secs(10)).await;
        let text = String::from_utf8_lossy(&got);
        assert!(closed, "{over} bytes over: the connection ends");
        assert!(
            text.starts_with("HTTP/1.1 431") || got.is_empty(),
            "{over} bytes over: answered 431 (or cut off): {text:?}"
        );
    }
    // Just under it is served.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(super::MAX_HEAD_BYTES - 200)
    );
    s.write_all(head.as_bytes()).await.expect("send");
    let (got, _) = until_closed(&mut s, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.ends_with("ok"),
        "a head under the limit is served: {text:?}"
    );
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_answer_loses_the_connection() {
    // Far more than the client's small receive buffer and the server's
    // send buffer hold, so the server's writes stall.
    const BODY: usize = 32 << 20;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("address");
    let body = bytes_of(BODY);
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .route("/big", axum::routing::get(move || async move { body }));
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(accept_loop(
        listener,
        app,
        None,
        stop.clone(),
        Limits {
            // One slot: the stalled client holds the only one until cut off.
            max_connections: 1,
            write_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
    ));

    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut stalled = socket.connect(addr).await.expect("connect");
    stalled
        .write_all(b"GET /big HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    // Read nothing for many write timeouts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (got, closed) = until_closed(&mut stalled, Duration::from_secs(30)).await;
    assert!(closed, "the connection ends");
    assert!(
        got.starts_with(b"HTTP/1.1 200") && got.len() < BODY,
        "cut off before the end of the answer ({} bytes of {BODY})",
        got.len()
    );
    assert!(get(addr).await.ends_with("ok"), "its slot is free again");
    stop.cancel();
}

/// A body of `n` bytes.
fn bytes_of(n: usize) -> Vec<u8> {
    vec![b'x'; n]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_whose_client_stops_reading_is_cut_off_with_little_taken_in() {
    let listener = listen("127.0.0.1:0".parse().expect("address")).expect("listen on loopback");
    let addr = listener.local_addr().expect("address");
    // An endless stream, as fast as it is taken (an event stream at its
    // busiest).
    let app = axum::Router::new().route(
        "/stream",
        axum::routing::get(|| async {
            let chunks = futures_util::stream::repeat_with(|| {
                Ok::<_, std::convert::Infallible>(vec![b'x'; 16 * 1024])
            });
            axum::body::Body::from_stream(chunks)
        }),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(accept_loop(
        listener,
        app,
        None,
        stop.clone(),
        Limits {
            write_timeout: Duration::from_millis(300),
            ..Limits::default()
        },
    ));
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut stalled = socket.connect(addr).await.expect("connect");
    stalled
        .write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("send");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (got, closed) = until_closed(&mut stalled, Duration::from_secs(30)).await;
    assert!(closed, "the endless answer is cut off");
    // What the server took in before its writes stalled: the kernel's
    // buffers at the fixed send buffer's size, where Linux's own sizing
    // lets it grow to megabytes.
    assert!(
        got.starts_with(b"HTTP/1.1 200") && got.len() < 1 << 20,
        "{} bytes sent to a client that read none",
        got.len()
    );
    stop.cancel();
}
