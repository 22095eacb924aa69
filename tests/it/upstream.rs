//! The upstream MQTT publisher (`[[sinks.mqtt]]`, issue 13): two real
//! `twin demo` processes, one per line, publish to one Debian mosquitto on
//! a loopback port; a rumqttc subscriber in the test sees each under its
//! own topics. The broker is stopped for a few seconds and started again
//! on the same port: every event line the twins wrote to `--events` must
//! still reach the subscriber, those of the outage included (they were held
//! in the twins' queues). A twin whose queue is too small for an outage
//! says how many messages it dropped.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use prost::Message;
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use twin::sources::sparkplug::proto::{Metric, MetricValue, Payload};

use crate::mqtt::Mosquitto;
use crate::util::*;

const PREFIX: &str = "acme/twin";

/// The demo config for line `line`, publishing to `port` with `extra` keys.
fn config(dir: &Path, line: &str, port: u16, extra: &str) -> std::path::PathBuf {
    let text = demo_text().replace("= \"line1\"", &format!("= \"{line}\""));
    let text = format!(
        "{text}\n[[sinks.mqtt]]\nname = \"site\"\nbroker = \"mqtt://127.0.0.1:{port}\"\ntopic_prefix = \"{PREFIX}\"\n{extra}"
    );
    let path = dir.join(format!("{line}.toml"));
    std::fs::write(&path, text).expect("write config");
    path
}

fn demo(cfg: &Path, events: &Path, secs: u32) -> Proc {
    let mut cmd = twin();
    cmd.arg("demo")
        .arg("--config")
        .arg(cfg)
        .arg("--events")
        .arg(events)
        .arg("--no-table")
        .arg("--for")
        .arg(format!("{secs}s"));
    Proc::spawn(cmd)
}

/// Messages a subscriber received: (topic, payload).
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A subscriber to `filter` at QoS 1 with a persistent session, so the
/// broker keeps what arrives for it while it reconnects. Runs until the
/// test ends.
fn subscribe(port: u16, filter: &str) -> Received {
    let filter = filter.to_string();
    let mut opts = MqttOptions::new("upstream-test-consumer", "127.0.0.1", port);
    opts.set_clean_session(false);
    opts.set_keep_alive(Duration::from_secs(5));
    opts.set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut conn) = Client::new(opts, 100);
    let got: Received = Arc::default();
    let g = got.clone();
    let subscribed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = subscribed.clone();
    thread::spawn(move || {
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                    // A session the broker lost must be made again (rumqtt #250).
                    if !ack.session_present {
                        let _ = client.try_subscribe(filter.clone(), QoS::AtLeastOnce);
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    s.store(true, std::sync::atomic::Ordering::Release);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    g.lock()
                        .expect("lock")
                        .push((p.topic.clone(), p.payload.to_vec()));
                }
                Ok(_) => {}
                // The broker is away: try again shortly, unless the test
                // is over (its broker gone for good).
                Err(_) => {
                    if Arc::strong_count(&g) == 1 {
                        return;
                    }
                    thread::sleep(Duration::from_millis(100));
                }
            }
        }
    });
    let end = twin::wallclock::monotonic() + Duration::from_secs(10);
    while !subscribed.load(std::sync::atomic::Ordering::Acquire) {
        assert!(
            twin::wallclock::monotonic() < end,
            "the test's subscriber did not subscribe"
        );
        thread::sleep(Duration::from_millis(20));
    }
    got
}

/// The payloads received under topics starting with `stem`.
fn payloads_under(got: &Received, stem: &str) -> HashSet<String> {
    got.lock()
        .expect("lock")
        .iter()
        .filter(|(t, _)| t.starts_with(stem))
        .map(|(_, p)| String::from_utf8_lossy(p).into_owned())
        .collect()
}

/// The `line` and `tag` lines of an event file: what a twin published on
/// its line's topics (every tag of the demo is a machine's on the line).
fn line_and_tag_lines(events: &Path) -> Vec<String> {
    std::fs::read_to_string(events)
        .expect("event file")
        .lines()
        .filter(|l| l.contains("\"type\":\"line\"") || l.contains("\"type\":\"tag\""))
        .map(str::to_string)
        .collect()
}

fn missing(want: &[String], have: &HashSet<String>) -> Vec<String> {
    want.iter()
        .filter(|l| !have.contains(*l))
        .cloned()
        .collect()
}

/// The number after `key=` in the publisher's closing log line.
fn summary_field(stderr: &str, key: &str) -> u64 {
    let line = stderr
        .lines()
        .find(|l| l.contains("Upstream MQTT publisher stopped"))
        .unwrap_or_else(|| panic!("no closing summary in:\n{stderr}"));
    let at = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    line[at + key.len() + 2..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{key} is no number in {line}"))
}

/// The body of `GET /metrics` on loopback `port`, or "" while nothing
/// answers there yet.
fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

#[test]
fn two_twins_publish_under_their_own_topics_and_a_broker_restart_loses_nothing_held() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let port = free_port();
    // No limit on what the broker queues for the subscriber while it is
    // reconnecting (1000 by default): the test counts every message.
    let extra = "max_queued_messages 0\n";
    let broker = Mosquitto::start(dir.path(), port, &state, extra);
    let got = subscribe(port, &format!("{PREFIX}/#"));

    let (ev1, ev2) = (
        dir.path().join("line1.jsonl"),
        dir.path().join("line2.jsonl"),
    );
    let mut a = demo(&config(dir.path(), "line1", port, ""), &ev1, 60);
    let mut b = demo(&config(dir.path(), "line2", port, ""), &ev2, 60);
    let stem = |line: &str| format!("{PREFIX}/packaging-line-1/{line}/");

    // 1. Both lines arrive, each under its own line's topics.
    let both = |got: &Received| {
        ["line1", "line2"]
            .iter()
            .all(|l| payloads_under(got, &format!("{}line", stem(l))).len() >= 2)
    };
    let end = twin::wallclock::monotonic() + Duration::from_secs(30);
    while !both(&got) {
        assert!(
            twin::wallclock::monotonic() < end,
            "no line state from both twins:\n{}\n{}",
            a.stderr(),
            b.stderr()
        );
        thread::sleep(Duration::from_millis(50));
    }
    {
        let g = got.lock().expect("lock");
        let topics: HashSet<&str> = g.iter().map(|(t, _)| t.as_str()).collect();
        for want in [
            "acme/twin/packaging-line-1/line1/infeed/tag",
            "acme/twin/packaging-line-1/line2/infeed/tag",
            "acme/twin/packaging-line-1/line1/line",
            "acme/twin/packaging-line-1/line2/line",
        ] {
            assert!(topics.contains(want), "{want} not in {topics:?}");
        }
        // A line's payload is the twin's own event line, with its line id.
        for (t, p) in g.iter() {
            if t.ends_with("/line2/line") {
                let v: serde_json::Value = serde_json::from_slice(p).expect("a JSON event line");
                assert_eq!(
                    (v["type"].as_str(), v["line"].as_str()),
                    (Some("line"), Some("line2"))
                );
            }
        }
    }

    // 2. The broker goes away for a few seconds (saving its sessions) and
    //    comes back on the same port.
    broker.stop();
    thread::sleep(Duration::from_secs(4));
    let broker = Mosquitto::start(dir.path(), port, &state, extra);
    for p in [&a, &b] {
        assert!(
            p.wait_for(Duration::from_secs(30), |_| p
                .stderr()
                .matches("Upstream MQTT connection is up")
                .count()
                >= 2),
            "the twin did not reconnect:\n{}",
            p.stderr()
        );
    }
    thread::sleep(Duration::from_secs(2));

    // 3. The twins stop, handing over what they hold.
    a.terminate();
    b.terminate();
    assert_eq!(a.wait(Duration::from_secs(20)), Some(0), "{}", a.stderr());
    assert_eq!(b.wait(Duration::from_secs(20)), Some(0), "{}", b.stderr());

    for (p, ev, line) in [(&a, &ev1, "line1"), (&b, &ev2, "line2")] {
        let err = p.stderr();
        // Messages were held across the outage...
        let held_on_reconnect = err
            .lines()
            .filter(|l| l.contains("Upstream MQTT connection is up"))
            .nth(1)
            .and_then(|l| l.split(" held=").nth(1))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(0);
        assert!(
            held_on_reconnect > 0,
            "nothing held over the outage:\n{err}"
        );
        assert_eq!(summary_field(&err, "dropped"), 0, "{err}");
        assert_eq!(summary_field(&err, "undelivered"), 0, "{err}");
        // ...and every line and tag event of the run reached the consumer,
        // those of the outage included.
        let want = line_and_tag_lines(ev);
        assert!(want.len() > 100, "too few events in {}", ev.display());
        let end = twin::wallclock::monotonic() + Duration::from_secs(20);
        loop {
            let lost = missing(&want, &payloads_under(&got, &stem(line)));
            if lost.is_empty() {
                break;
            }
            assert!(
                twin::wallclock::monotonic() < end,
                "{} of {} events of {line} never arrived, e.g. {:?}\n{err}\n{}",
                lost.len(),
                want.len(),
                lost.first(),
                broker.log()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
    // Neither twin's lines showed up under the other's topics.
    let g = got.lock().expect("lock");
    for (t, p) in g.iter() {
        let p = String::from_utf8_lossy(p);
        if t.contains("/line1/") {
            assert!(!p.contains("\"line\":\"line2\""), "{t}: {p}");
        }
    }
}

#[test]
fn a_queue_too_small_for_an_outage_counts_what_it_drops() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens there: the whole run is an outage.
    let port = free_port();
    let cfg = config(
        dir.path(),
        "line1",
        port,
        "queue_capacity = 20\ndrain_timeout = \"500ms\"\n",
    );
    let http = free_port();
    let mut cmd = twin();
    cmd.args(["demo", "--no-table", "--for", "4s", "--http"])
        .arg(format!("127.0.0.1:{http}"))
        .arg("--config")
        .arg(&cfg);
    let mut p = Proc::spawn(cmd);
    // /metrics shows the drops while the run goes on.
    let end = twin::wallclock::monotonic() + Duration::from_secs(20);
    let scraped = loop {
        let text = metrics(http);
        let dropped = text
            .lines()
            .find(|l| l.starts_with("twin_upstream_dropped_total{sink=\"site\"}"))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|n| n.parse::<f64>().ok());
        if dropped.is_some_and(|d| d > 0.0) {
            break text;
        }
        assert!(
            twin::wallclock::monotonic() < end,
            "no drops on /metrics:\n{text}\n{}",
            p.stderr()
        );
        thread::sleep(Duration::from_millis(200));
    };
    assert!(
        scraped.contains("twin_upstream_held{sink=\"site\"} 20"),
        "{scraped}"
    );
    assert_eq!(p.wait(Duration::from_secs(30)), Some(0), "{}", p.stderr());
    let err = p.stderr();
    assert!(
        err.contains("Upstream MQTT queue is full"),
        "no warning about the drops:\n{err}"
    );
    let (messages, delivered, dropped, left) = (
        summary_field(&err, "messages"),
        summary_field(&err, "delivered"),
        summary_field(&err, "dropped"),
        summary_field(&err, "undelivered"),
    );
    assert_eq!(delivered, 0, "{err}");
    assert_eq!(left, 20, "the queue holds its capacity:\n{err}");
    assert!(dropped > 0, "{err}");
    assert_eq!(
        messages,
        dropped + left,
        "every message is accounted for:\n{err}"
    );
}

/// A Sparkplug message as received: its kind (NBIRTH, DDATA, ...), device,
/// and decoded payload.
fn sparkplug(got: &Received) -> Vec<(String, Option<String>, Payload)> {
    got.lock()
        .expect("lock")
        .iter()
        .map(|(t, p)| {
            let levels: Vec<&str> = t.split('/').collect();
            (
                levels[2].to_string(),
                levels.get(4).map(|d| d.to_string()),
                Payload::decode(p.as_slice()).expect("a Sparkplug B payload"),
            )
        })
        .collect()
}

fn metric<'a>(p: &'a Payload, name: &str) -> Option<&'a Metric> {
    p.metrics.iter().find(|m| m.name.as_deref() == Some(name))
}

#[test]
fn the_twin_is_a_sparkplug_edge_node_with_births_sequence_numbers_and_a_will() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let broker = Mosquitto::start(dir.path(), port, &dir.path().join("state"), "");
    let got = subscribe(port, "spBv1.0/site/#");
    let text = format!(
        "{}\n[[sinks.sparkplug]]\nname = \"scada\"\nbroker = \"mqtt://127.0.0.1:{port}\"\ngroup = \"site\"\nkeep_alive = \"1s\"\n",
        demo_text()
    );
    let cfg = dir.path().join("spb.toml");
    std::fs::write(&cfg, text).expect("write config");
    let mut p = demo(&cfg, &dir.path().join("ev.jsonl"), 60);
    let ddata = |got: &Received| {
        sparkplug(got)
            .iter()
            .filter(|(k, _, _)| k == "DDATA")
            .count()
    };
    let end = twin::wallclock::monotonic() + Duration::from_secs(30);
    while ddata(&got) < 4 {
        assert!(
            twin::wallclock::monotonic() < end,
            "no DDATA from the edge node:\n{}",
            p.stderr()
        );
        thread::sleep(Duration::from_millis(50));
    }
    // The twin vanishes: the broker publishes its will.
    let _ = p.child.kill();
    let end = twin::wallclock::monotonic() + Duration::from_secs(20);
    while !sparkplug(&got).iter().any(|(k, _, _)| k == "NDEATH") {
        assert!(
            twin::wallclock::monotonic() < end,
            "no NDEATH after the twin died:\n{}",
            broker.log()
        );
        thread::sleep(Duration::from_millis(50));
    }
    let msgs = sparkplug(&got);
    let topics: Vec<String> = got
        .lock()
        .expect("lock")
        .iter()
        .map(|(t, _)| t.clone())
        .collect();
    assert_eq!(
        topics[0], "spBv1.0/site/NBIRTH/packaging-line-1-line1",
        "{topics:?}"
    );
    assert_eq!(
        topics[1],
        "spBv1.0/site/DBIRTH/packaging-line-1-line1/line1"
    );
    let (_, _, nbirth) = &msgs[0];
    assert_eq!(nbirth.seq, Some(0));
    let bd_seq = metric(nbirth, "bdSeq").and_then(|m| m.value.clone());
    assert_eq!(bd_seq, Some(MetricValue::Long(0)));
    assert!(metric(nbirth, "Node Control/Rebirth").is_some());
    let (_, device, dbirth) = &msgs[1];
    assert_eq!(device.as_deref(), Some("line1"));
    for name in [
        "wip",
        "out",
        "lost",
        "throughput_per_min",
        "line_good",
        "residuals",
        "jam",
        "slip/outfeed",
        "risk/filler",
    ] {
        assert!(
            metric(dbirth, name).is_some(),
            "{name} not born: {dbirth:?}"
        );
    }
    // seq runs on over births and data, without a gap.
    let seqs: Vec<u64> = msgs
        .iter()
        .filter(|(k, _, _)| k != "NDEATH")
        .map(|(_, _, p)| p.seq.expect("a seq"))
        .collect();
    let want: Vec<u64> = (0..seqs.len() as u64).map(|n| n % 256).collect();
    assert_eq!(seqs, want);
    // Data carries the line's state, e.g. its WIP.
    assert!(
        msgs.iter()
            .any(|(k, _, p)| k == "DDATA" && metric(p, "wip").is_some()),
        "no wip in DDATA"
    );
    // The will is the death of the birth it follows: the same bdSeq.
    let (_, _, death) = msgs.iter().find(|(k, _, _)| k == "NDEATH").expect("NDEATH");
    assert_eq!(
        metric(death, "bdSeq").and_then(|m| m.value.clone()),
        Some(MetricValue::Long(0))
    );
}

#[test]
fn the_publisher_connects_like_the_sources_over_tls_with_a_client_certificate_and_a_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    crate::mqtt::make_certs(dir.path());
    let d = dir.path().display();
    let pw = dir.path().join("passwd");
    let out = std::process::Command::new(crate::mqtt::tool("mosquitto_passwd"))
        .arg("-c")
        .arg("-b")
        .arg(&pw)
        .args(["twin", "s3cret"])
        .output()
        .expect("mosquitto_passwd");
    assert!(out.status.success(), "{out:?}");
    let broker = Mosquitto::start(
        dir.path(),
        free_port(),
        &dir.path().join("state"),
        &format!(
            "cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\nrequire_certificate true\nallow_anonymous false\npassword_file {}\n",
            pw.display()
        ),
    );
    // The PEM files are named relative to the config, as for sources.
    let cfg = config(
        dir.path(),
        "line1",
        0,
        "username = \"twin\"\npassword_env = \"TWIN_UPSTREAM_TEST_PASSWORD\"\nca_file = \"ca.pem\"\ncert_file = \"client.pem\"\nkey_file = \"client.key\"\n",
    );
    let text = std::fs::read_to_string(&cfg).expect("config").replace(
        "broker = \"mqtt://127.0.0.1:0\"",
        &format!("broker = \"mqtts://127.0.0.1:{}\"", broker.port),
    );
    std::fs::write(&cfg, text).expect("write config");
    let run = |password: &str| {
        let mut cmd = twin();
        cmd.args(["demo", "--no-table", "--for", "3s", "--config"])
            .arg(&cfg)
            .env("TWIN_UPSTREAM_TEST_PASSWORD", password);
        let mut p = Proc::spawn(cmd);
        assert_eq!(p.wait(Duration::from_secs(30)), Some(0), "{}", p.stderr());
        p.stderr()
    };
    let err = run("s3cret");
    assert!(err.contains("Upstream MQTT connection is up"), "{err}");
    assert!(summary_field(&err, "delivered") > 0, "{err}");
    assert_eq!(summary_field(&err, "undelivered"), 0, "{err}");
    // A wrong password: the broker refuses, the twin says so and runs on.
    let err = run("wrong");
    assert!(!err.contains("Upstream MQTT connection is up"), "{err}");
    assert!(
        err.contains("Upstream MQTT broker refused the connection"),
        "{err}"
    );
    assert!(summary_field(&err, "delivered") == 0, "{err}");
}
