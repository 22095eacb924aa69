//! The publisher's routing, on the demo plant: each event line is queued
//! once under its machine's, line's or plant's topic, as the twin wrote it.

use std::path::PathBuf;
use std::sync::Arc;

use super::publisher::Shared;
use super::*;
use crate::runtime::Driver;

fn demo(sink: &str) -> LoadedConfig {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plant-configs/packaging-line.toml");
    let text = std::fs::read_to_string(&path).expect("the demo config") + sink;
    match crate::config::load_str(&path, &text) {
        Ok(c) => c,
        Err(r) => panic!("{}", r.render()),
    }
}

const SITE: &str = "\n[[sinks.mqtt]]\nname = \"site\"\nbroker = \"mqtt://127.0.0.1:1883\"\n";

/// Run the demo's core (no sources: every tag stays `no_data`) for
/// `ticks`, with a publisher for its first `[[sinks.mqtt]]`; returns the
/// event lines written and the messages queued.
fn run(cfg: &LoadedConfig, ticks: usize) -> (Vec<String>, Vec<(String, String)>) {
    let shared = Shared::new(10_000);
    let up = &cfg.config.upstream[0];
    let mut d = Driver::new(cfg, 0);
    d.add_sink(Box::new(MqttPublisher::new(cfg, up, shared.clone())))
        .expect("the publisher starts");
    let mut lines = Vec::new();
    for _ in 0..ticks {
        let step = d.step();
        lines.extend(
            String::from_utf8_lossy(step.jsonl)
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>(),
        );
    }
    let q = shared.queue();
    let mut msgs = Vec::new();
    let mut at = None;
    while let Some((id, m)) = q.next_after(at) {
        msgs.push((
            m.topic.to_string(),
            String::from_utf8_lossy(&m.payload).into_owned(),
        ));
        at = Some(id);
    }
    (lines, msgs)
}

#[test]
fn every_event_line_is_queued_under_its_machines_or_lines_topic() {
    let cfg = demo(SITE);
    let up = &cfg.config.upstream[0];
    assert_eq!(up.plant_id, "packaging-line-1");
    assert_eq!(up.connection.client_id, "twin-packaging-line-1-line1-site");
    assert_eq!((up.qos, up.topic_prefix.as_str()), (1, "twin"));
    // Eleven ticks of 100 ms: the first tick's `tag` events and the `line`
    // event at 1 s.
    let (lines, msgs) = run(&cfg, 11);
    assert!(lines.iter().any(|l| l.contains("\"type\":\"line\"")));
    let payloads: Vec<&str> = msgs.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(payloads, lines, "one message per event line, in order");
    for (topic, payload) in &msgs {
        let v: serde_json::Value = serde_json::from_str(payload).expect("JSON");
        let want = match v["type"].as_str() {
            Some("tag") => format!(
                "twin/packaging-line-1/line1/{}/tag",
                v["machine"].as_str().expect("every demo tag has a machine")
            ),
            Some("line") => "twin/packaging-line-1/line1/line".to_string(),
            other => panic!("unexpected event {other:?}"),
        };
        assert_eq!(topic, &want, "{payload}");
    }
}

#[test]
fn only_the_outputs_listed_in_publish_are_queued() {
    let cfg = demo(&format!(
        "{SITE}publish = [\"line\"]\nplant_id = \"north\"\ntopic_prefix = \"acme/twin\"\n"
    ));
    let (lines, msgs) = run(&cfg, 11);
    assert!(lines.len() > msgs.len());
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0].0, "acme/twin/north/line1/line");
    assert_eq!(
        cfg.config.upstream[0].connection.client_id,
        "twin-north-line1-site"
    );
}

#[test]
fn lines_the_driver_adds_after_the_events_go_to_the_plants_error_topic() {
    let cfg = demo(SITE);
    let shared = Shared::new(10);
    let mut p = MqttPublisher::new(&cfg, &cfg.config.upstream[0], shared.clone());
    let d = Driver::new(&cfg, 0);
    let line = br#"{"v":1,"type":"error","t":"1970-01-01T00:00:00.000Z","component":"recorder"}"#;
    let jsonl = [&line[..], b"\n"].concat();
    p.write_tick(&TickOutput {
        tick: 0,
        t_ns: 0,
        events: &[],
        jsonl: &jsonl,
        core: d.core(),
        tick_time: Duration::ZERO,
    })
    .expect("queued");
    let q = shared.queue();
    let (_, m) = q.next_after(None).expect("one message");
    assert_eq!(&*m.topic, "twin/packaging-line-1/error");
    assert_eq!(m.payload, line);
    assert_eq!(Arc::strong_count(&shared), 2);
}
