//! The poller's health record across a shutdown of its link.

use std::path::Path;
use std::time::Duration;

use tokio::sync::mpsc;

use super::*;
use crate::config::load_str;
use crate::sources::health::HealthBoard;

/// A device on a port nobody listens on.
fn config(port: u16) -> LoadedConfig {
    let text = format!(
        r#"
[plant]
name = "poller-test"
tick = "100ms"

[[sources.modbus]]
name = "plc"
address = "127.0.0.1:{port}"
poll_interval = "50ms"
timeout = "200ms"
registers = [{{ tag = "belt.speed", table = "holding", address = 0 }}]
"#
    );
    match load_str(Path::new("poller-test.toml"), &text) {
        Ok(c) => c,
        Err(report) => panic!("test config is invalid: {report:?}"),
    }
}

/// A closed port: bind one, note it, drop the listener.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = l.local_addr().expect("local address").port();
    drop(l);
    port
}

/// Regression (CI flake): when the link shut down before its poller did,
/// the reads in flight came back `Closed` and the poller recorded that as a
/// device failure, so the shutdown summary said `reason=shutdown` instead
/// of why the device was down.
#[tokio::test]
async fn a_link_shut_down_under_the_poller_keeps_the_device_s_own_reason() {
    let port = closed_port();
    let cfg = config(port);
    let address = format!("127.0.0.1:{port}");
    // The link stops on its own token; the poller's stays live, the order
    // a racing shutdown can take.
    let link_stop = CancellationToken::new();
    let link = links(&cfg, std::slice::from_ref(&address), &link_stop).remove(0);
    let poller = ModbusPoller::new(&cfg, 0, address, link);
    let board = HealthBoard::default();
    let health = board.register("plc", "modbus");
    let (tx, mut rx) = mpsc::channel(64);
    let poller_stop = CancellationToken::new();
    let task = tokio::spawn(Box::new(poller).start(SourceContext {
        tx,
        shutdown: poller_stop.clone(),
        health,
    }));

    // Wait for the device's own failure to be recorded.
    let reason = || board.snapshot().first().and_then(|(_, h)| h.reason);
    let mut seen = false;
    for _ in 0..100 {
        if reason() == Some(Reason::ConnectionRefused) {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "the refused connection is recorded: {:?}", reason());
    let failures = board.snapshot()[0].1.failures;

    // The link goes first; every poll from now on meets a closed link.
    link_stop.cancel();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(reason(), Some(Reason::ConnectionRefused));
    assert!(
        board.snapshot()[0].1.failures <= failures + 1,
        "a closed link is not counted as the device failing"
    );
    // No tag is turned bad with the link's own reason.
    while let Ok(batch) = rx.try_recv() {
        assert!(
            batch.iter().all(|s| s.reason != Some(Reason::Shutdown)),
            "{batch:?}"
        );
    }
    poller_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
}
