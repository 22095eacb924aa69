//! Sparkplug under hostile or merely large traffic, through a real broker
//! (embedded rumqttd on 127.0.0.1:0) and the real `twin run` binary: big
//! births arrive whole, oversized retained messages are dropped without
//! reconnecting, and floods from invented node ids neither grow the state
//! nor the log.

use std::time::Duration;

use prost::Message as _;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use twin::sources::sparkplug::proto::{Metric, MetricValue, Payload, datatype};

use crate::util::*;

const CONNECTED: &str = "Connected to Sparkplug broker";

fn metric(name: &str, alias: u64, v: f64) -> Metric {
    Metric {
        name: Some(name.to_string()),
        alias: Some(alias),
        timestamp: None,
        datatype: Some(datatype::DOUBLE),
        is_historical: None,
        is_transient: None,
        is_null: None,
        value: Some(MetricValue::Double(v)),
    }
}

/// An NBIRTH of `node` with `Line/Speed` = `speed` and `extra` more metrics.
fn nbirth(speed: f64, extra: usize) -> Vec<u8> {
    let mut metrics = vec![metric("Line/Speed", 0, speed)];
    metrics.extend((1..=extra).map(|i| {
        metric(
            &format!("Cell{:02}/Sensor{i:04}/Temperature", i % 20),
            i as u64,
            0.5,
        )
    }));
    Payload {
        timestamp: None,
        metrics,
        seq: Some(0),
        uuid: None,
        body: None,
    }
    .encode_to_vec()
}

/// Publish every message at QoS 1 from one connection, in order, and return
/// once the broker has acknowledged them all.
fn publish_all(broker: std::net::SocketAddr, msgs: Vec<(String, Vec<u8>, bool)>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut opts = MqttOptions::new("it-publisher", broker.ip().to_string(), broker.port());
        opts.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let n = msgs.len();
        let sender = tokio::spawn(async move {
            for (topic, body, retain) in msgs {
                client
                    .publish(topic, QoS::AtLeastOnce, retain, body)
                    .await
                    .expect("queue a publish");
            }
            client
        });
        let mut acked = 0;
        let done = tokio::time::timeout(Duration::from_secs(60), async {
            while acked < n {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => acked += 1,
                    Ok(_) => {}
                    Err(e) => panic!("publisher: {e}"),
                }
            }
        })
        .await;
        assert!(done.is_ok(), "only {acked} of {n} messages acknowledged");
        let client = sender.await.expect("sender");
        let _ = client.disconnect().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
    });
}

fn start_twin(cfg: &str, broker: std::net::SocketAddr) -> Proc {
    let mut run = twin();
    run.args(["run", cfg, "--events", "-", "--for", "60s"])
        .arg("--mqtt")
        .arg(format!("edge=mqtt://{broker}"));
    let run = Proc::spawn(run);
    assert!(
        run.wait_for(Duration::from_secs(15), |_| run
            .stderr()
            .contains(CONNECTED)),
        "twin never connected:\n{}",
        run.stderr()
    );
    // Subscribed before anything is published: the subscription is queued
    // right after the connection.
    std::thread::sleep(Duration::from_millis(500));
    run
}

fn wait_speed(run: &Proc, v: f64) {
    assert!(
        run.wait_for(Duration::from_secs(30), |lines| {
            tag_events(&events(lines), "line.speed")
                .iter()
                .any(|e| e["quality"] == "good" && e["value"].as_f64() == Some(v))
        }),
        "line.speed never became {v}:\n{}",
        run.stderr()
    );
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.lines().filter(|l| l.contains(needle)).count()
}

fn embedded() -> std::net::SocketAddr {
    twin::broker::start_embedded("127.0.0.1:0".parse().expect("addr")).expect("broker")
}

#[test]
fn r9_a_400_metric_sparkplug_birth_arrives_whole_on_one_connection() {
    let broker = embedded();
    let mut run = start_twin("tests/configs/sparkplug-interop.toml", broker);
    let birth = nbirth(3.5, 400);
    assert!(birth.len() > 16 * 1024, "{} bytes", birth.len());
    publish_all(
        broker,
        vec![("spBv1.0/Plant1/NBIRTH/Line1".into(), birth, false)],
    );
    wait_speed(&run, 3.5);
    let err = run.stderr();
    assert_eq!(count(&err, CONNECTED), 1, "{err}");
    assert_eq!(count(&err, "broker unreachable"), 0, "{err}");
    run.terminate();
    assert_eq!(run.wait(Duration::from_secs(10)), Some(0), "{err}");
}

#[test]
fn r9_an_oversized_retained_sparkplug_message_is_dropped_once_without_reconnecting() {
    let broker = embedded();
    // 12 KB, retained under the group's namespace, before the twin starts:
    // the broker sends it on every subscribe.
    publish_all(
        broker,
        vec![(
            "spBv1.0/Plant1/STATE/junk".into(),
            vec![b'x'; 12 * 1024],
            true,
        )],
    );
    let mut run = start_twin("tests/configs/sparkplug-limits.toml", broker);
    let warning = "over the source's max_packet_size";
    assert!(
        run.wait_for(Duration::from_secs(15), |_| run.stderr().contains(warning)),
        "no oversize warning:\n{}",
        run.stderr()
    );
    // The connection carries on: a birth still gets through...
    publish_all(
        broker,
        vec![("spBv1.0/Plant1/NBIRTH/Line1".into(), nbirth(2.5, 3), false)],
    );
    wait_speed(&run, 2.5);
    // ...and over several retry periods there is no second connection.
    std::thread::sleep(Duration::from_secs(3));
    let err = run.stderr();
    assert_eq!(count(&err, CONNECTED), 1, "reconnected:\n{err}");
    assert_eq!(count(&err, "broker unreachable"), 0, "{err}");
    assert_eq!(count(&err, warning), 1, "{err}");
    let line = err.lines().find(|l| l.contains(warning)).expect("warning");
    assert!(
        line.contains("source=edge")
            && line.contains("`max_packet_size`")
            && line.contains("max_packet_size=8192")
            && line.contains("retained=true"),
        "{line}"
    );
    run.terminate();
    assert_eq!(run.wait(Duration::from_secs(10)), Some(0), "{err}");
}

#[test]
fn r9_a_flood_from_invented_sparkplug_nodes_gives_a_bounded_number_of_warnings() {
    let broker = embedded();
    let mut run = start_twin("tests/configs/sparkplug-limits.toml", broker);
    // Data from 3,000 nodes that never were born, births of 1,000 more
    // (each with a protocol problem: seq 5), then a real birth.
    let mut msgs = Vec::new();
    let ndata = Payload {
        timestamp: None,
        metrics: vec![],
        seq: Some(3),
        uuid: None,
        body: None,
    }
    .encode_to_vec();
    for i in 0..3_000 {
        msgs.push((
            format!("spBv1.0/Plant1/NDATA/ghost{i}"),
            ndata.clone(),
            false,
        ));
    }
    let mut bad_birth = Payload::decode(nbirth(1.0, 1).as_slice()).expect("decode");
    bad_birth.seq = Some(5);
    let bad_birth = bad_birth.encode_to_vec();
    for i in 0..1_000 {
        msgs.push((
            format!("spBv1.0/Plant1/NBIRTH/born{i}"),
            bad_birth.clone(),
            false,
        ));
    }
    msgs.push(("spBv1.0/Plant1/NBIRTH/Line1".into(), nbirth(4.5, 3), false));
    publish_all(broker, msgs);
    wait_speed(&run, 4.5);
    let err = run.stderr();
    // One warning per kind per 10 s per source, not one per node.
    let warnings = count(&err, " WARN ");
    assert!(warnings <= 4, "{warnings} warnings:\n{err}");
    run.terminate();
    assert_eq!(run.wait(Duration::from_secs(10)), Some(0), "{err}");
    // The state stayed at the bound (100 nodes the config does not name).
    let stopped = run
        .stderr()
        .lines()
        .find(|l| l.contains("Sparkplug source stopped"))
        .map(str::to_string)
        .expect("stop line");
    assert!(
        stopped.contains("nodes=101") || stopped.contains("nodes=100"),
        "{stopped}"
    );
}
