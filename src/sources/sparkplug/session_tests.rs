use super::*;

const T: i64 = 1_800_000_000_000_000_000;

fn metric(name: Option<&str>, alias: Option<u64>, dt: u32, v: MetricValue) -> Metric {
    Metric {
        name: name.map(str::to_string),
        alias,
        timestamp: None,
        datatype: Some(dt),
        is_historical: None,
        is_transient: None,
        is_null: None,
        value: Some(v),
    }
}

fn payload(seq: Option<u64>, metrics: Vec<Metric>) -> Payload {
    Payload {
        timestamp: Some(1_800_000_000_000),
        metrics,
        seq,
        uuid: None,
        body: None,
    }
}

fn topic(kind: &str, device: Option<&str>) -> Topic {
    let t = match device {
        Some(d) => format!("spBv1.0/Plant1/{kind}/Line1/{d}"),
        None => format!("spBv1.0/Plant1/{kind}/Line1"),
    };
    parse_topic(&t).expect("valid topic")
}

const LIMITS: Limits = Limits {
    max_nodes: 50,
    max_devices: 100,
};

fn session() -> Session {
    Session::new(
        "Plant1",
        vec![
            Binding {
                node: "Line1".into(),
                device: None,
                metric: "Line/Speed".into(),
                tag: TagId(0),
                scale: 1.0,
                offset: 0.0,
            },
            Binding {
                node: "Line1".into(),
                device: Some("Filler".into()),
                metric: "Motor/Current".into(),
                tag: TagId(1),
                scale: 0.1,
                offset: 0.0,
            },
            Binding {
                node: "Line1".into(),
                device: Some("Filler".into()),
                metric: "Temp".into(),
                tag: TagId(2),
                scale: 1.0,
                offset: 0.0,
            },
        ],
        LIMITS,
    )
}

fn samples(out: &[Action]) -> Vec<(TagId, Option<Value>, Quality)> {
    out.iter()
        .filter_map(|a| match a {
            Action::Sample(s) => Some((s.tag, s.value.clone(), s.quality)),
            _ => None,
        })
        .collect()
}

fn born(s: &mut Session) {
    let mut out = Vec::new();
    s.handle(
        &topic("NBIRTH", None),
        &payload(
            Some(0),
            vec![
                metric(Some("bdSeq"), None, datatype::INT64, MetricValue::Long(7)),
                metric(
                    Some("Line/Speed"),
                    Some(1),
                    datatype::FLOAT,
                    MetricValue::Float(1.5),
                ),
            ],
        ),
        T,
        &mut out,
    );
    assert_eq!(
        samples(&out),
        vec![(TagId(0), Some(Value::Num(1.5)), Quality::Good)]
    );
    out.clear();
    s.handle(
        &topic("DBIRTH", Some("Filler")),
        &payload(
            Some(1),
            vec![
                metric(
                    Some("Motor/Current"),
                    Some(10),
                    datatype::INT16,
                    MetricValue::Int(0xFFF6),
                ),
                metric(
                    Some("Temp"),
                    Some(11),
                    datatype::DOUBLE,
                    MetricValue::Double(41.5),
                ),
            ],
        ),
        T,
        &mut out,
    );
    assert_eq!(
        samples(&out),
        vec![
            (TagId(1), Some(Value::Num(-1.0)), Quality::Good),
            (TagId(2), Some(Value::Num(41.5)), Quality::Good)
        ]
    );
}

#[test]
fn topics() {
    assert_eq!(
        topic("DDATA", Some("Filler")).device.as_deref(),
        Some("Filler")
    );
    assert!(
        parse_topic("spBv1.0/G/NDATA/N/D").is_none(),
        "node message with a device"
    );
    assert!(
        parse_topic("spBv1.0/G/DDATA/N").is_none(),
        "device message without one"
    );
    assert!(parse_topic("spAv1.0/G/NDATA/N").is_none());
    assert!(parse_topic("spBv1.0/G/BOGUS/N").is_none());
}

#[test]
fn data_by_alias_after_births() {
    let mut s = session();
    born(&mut s);
    let mut out = Vec::new();
    s.handle(
        &topic("DDATA", Some("Filler")),
        &payload(
            Some(2),
            vec![metric(
                None,
                Some(10),
                datatype::INT16,
                MetricValue::Int(123),
            )],
        ),
        T,
        &mut out,
    );
    assert_eq!(
        samples(&out),
        vec![(TagId(1), Some(Value::Num(12.3)), Quality::Good)]
    );
    assert!(!out.iter().any(|a| matches!(a, Action::Rebirth { .. })));
}

#[test]
fn seq_gap_requests_rebirth_and_wraps_cleanly() {
    let mut s = session();
    born(&mut s);
    let mut out = Vec::new();
    // 2..=255 then 0: no gap across the wrap.
    for seq in (2..=255).chain([0, 1]) {
        s.handle(
            &topic("NDATA", None),
            &payload(Some(seq), vec![]),
            T,
            &mut out,
        );
    }
    assert!(
        !out.iter().any(|a| matches!(a, Action::Rebirth { .. })),
        "{out:?}"
    );
    s.handle(
        &topic("NDATA", None),
        &payload(Some(5), vec![]),
        T,
        &mut out,
    );
    assert!(matches!(
        out.last(),
        Some(Action::Rebirth {
            why: "sequence number gap",
            ..
        })
    ));
}

#[test]
fn deaths_make_tags_stale_and_old_wills_are_ignored() {
    let mut s = session();
    born(&mut s);
    let mut out = Vec::new();
    s.handle(
        &topic("DDEATH", Some("Filler")),
        &payload(Some(2), vec![]),
        T,
        &mut out,
    );
    let st = samples(&out);
    assert_eq!(st.len(), 2);
    assert!(
        st.iter()
            .all(|(t, v, q)| *t != TagId(0) && v.is_none() && *q == Quality::Stale)
    );
    out.clear();
    // A will carrying an older bdSeq is from a previous session.
    let old = payload(
        None,
        vec![metric(
            Some("bdSeq"),
            None,
            datatype::INT64,
            MetricValue::Long(6),
        )],
    );
    s.handle(&topic("NDEATH", None), &old, T, &mut out);
    assert!(out.is_empty());
    let current = payload(
        None,
        vec![metric(
            Some("bdSeq"),
            None,
            datatype::INT64,
            MetricValue::Long(7),
        )],
    );
    s.handle(&topic("NDEATH", None), &current, T, &mut out);
    assert_eq!(
        samples(&out).len(),
        3,
        "node death covers the node and its devices"
    );
    out.clear();
    s.handle(
        &topic("NDATA", None),
        &payload(Some(3), vec![]),
        T,
        &mut out,
    );
    assert!(
        matches!(&out[..], [Action::Rebirth { .. }]),
        "data after death needs a rebirth"
    );
}

#[test]
fn timestamps_nulls_and_unknown_aliases() {
    let mut s = session();
    born(&mut s);
    let mut out = Vec::new();
    let mut m = metric(None, Some(11), datatype::DOUBLE, MetricValue::Double(50.0));
    m.timestamp = Some(1_800_000_000_500);
    let mut null = metric(
        Some("Motor/Current"),
        None,
        datatype::INT16,
        MetricValue::Int(0),
    );
    null.is_null = Some(true);
    s.handle(
        &topic("DDATA", Some("Filler")),
        &payload(
            Some(2),
            vec![
                m,
                null,
                metric(None, Some(99), datatype::DOUBLE, MetricValue::Double(1.0)),
            ],
        ),
        T,
        &mut out,
    );
    let Action::Sample(first) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(first.source_time_ns, 1_800_000_000_500 * 1_000_000);
    assert_eq!(first.recv_time_ns, T);
    let Action::Sample(second) = &out[1] else {
        panic!("{out:?}")
    };
    assert_eq!(
        (second.quality, second.reason),
        (Quality::Bad, Some(Reason::NullValue))
    );
    assert!(matches!(&out[2], Action::Problem { what, .. } if what.contains("first 99")));
}

fn spb(kind: &str, node: &str, device: Option<&str>) -> Topic {
    let t = match device {
        Some(d) => format!("spBv1.0/Plant1/{kind}/{node}/{d}"),
        None => format!("spBv1.0/Plant1/{kind}/{node}"),
    };
    parse_topic(&t).expect("valid topic")
}

#[test]
fn r9_a_flood_of_births_from_new_node_ids_keeps_the_state_at_the_bound() {
    let mut s = session();
    born(&mut s);
    let mut out = Vec::new();
    let birth = payload(
        Some(0),
        vec![metric(
            Some("x"),
            Some(1),
            datatype::DOUBLE,
            MetricValue::Double(1.0),
        )],
    );
    for i in 0..5_000 {
        let node = format!("flood-{i}");
        s.handle(&spb("NBIRTH", &node, None), &birth, T, &mut out);
        for d in ["a", "b", "c"] {
            s.handle(&spb("DBIRTH", &node, Some(d)), &birth, T, &mut out);
        }
        let (nodes, devices) = s.tracked();
        assert!(
            nodes <= 51 && devices <= 102,
            "{nodes} nodes, {devices} devices after {i}"
        );
    }
    assert!(s.evicted() >= 4_950, "oldest evicted: {}", s.evicted());
    // The nodes the config names survive the flood: data by alias still
    // decodes.
    out.clear();
    s.handle(
        &topic("DDATA", Some("Filler")),
        &payload(
            Some(2),
            vec![metric(
                None,
                Some(11),
                datatype::DOUBLE,
                MetricValue::Double(7.0),
            )],
        ),
        T,
        &mut out,
    );
    assert_eq!(
        samples(&out),
        vec![(TagId(2), Some(Value::Num(7.0)), Quality::Good)]
    );
}

#[test]
fn r9_data_from_unborn_nodes_keeps_the_state_bounded_and_asks_only_named_nodes_for_births() {
    let mut s = session();
    let mut out = Vec::new();
    for i in 0..5_000 {
        s.handle(
            &spb("NDATA", &format!("ghost-{i}"), None),
            &payload(Some(1), vec![]),
            T,
            &mut out,
        );
    }
    assert!(s.tracked().0 <= 50, "{:?}", s.tracked());
    assert!(
        out.is_empty(),
        "no rebirth requests to nodes the config does not name: {:?}",
        &out[..3]
    );
    // The named node, unborn: asked once, not again within the interval.
    for k in 0..10 {
        s.handle(
            &topic("NDATA", None),
            &payload(Some(1), vec![]),
            T + k,
            &mut out,
        );
    }
    assert_eq!(
        out.iter()
            .filter(|a| matches!(a, Action::Rebirth { .. }))
            .count(),
        1,
        "{out:?}"
    );
    s.handle(
        &topic("NDATA", None),
        &payload(Some(1), vec![]),
        T + REBIRTH_INTERVAL_NS,
        &mut out,
    );
    assert_eq!(
        out.iter()
            .filter(|a| matches!(a, Action::Rebirth { .. }))
            .count(),
        2
    );
}

#[test]
fn r9_deaths_free_the_state_of_their_node_or_device() {
    let mut s = session();
    born(&mut s);
    assert_eq!(s.tracked(), (1, 1));
    let mut out = Vec::new();
    s.handle(
        &topic("DDEATH", Some("Filler")),
        &payload(Some(2), vec![]),
        T,
        &mut out,
    );
    assert_eq!(s.tracked(), (1, 0));
    let death = payload(
        None,
        vec![metric(
            Some("bdSeq"),
            None,
            datatype::INT64,
            MetricValue::Long(7),
        )],
    );
    s.handle(&topic("NDEATH", None), &death, T, &mut out);
    assert_eq!(s.tracked(), (0, 0));
}

#[test]
fn r9_a_future_metric_timestamp_does_not_freeze_its_tag() {
    use crate::twin::{TickClock, TwinCore};
    use prost::Message as _;
    const MS: i64 = 1_000_000;
    const DAY_MS: u64 = 86_400_000;
    let cfg = crate::config::load_str(
        std::path::Path::new("sp.toml"),
        r#"
[plant]
name = "p"
tick = "100ms"
stale_after = "1s"
[[sources.sparkplug]]
name = "sp"
broker = "mqtt://127.0.0.1:1"
group = "Plant1"
  [[sources.sparkplug.metrics]]
  node = "Line1"
  metric = "Line/Speed"
  tag = "line.speed"
"#,
    )
    .expect("valid");
    assert_eq!(cfg.tags.id("line.speed"), Some(TagId(0)));
    let mut core = TwinCore::new(
        &cfg,
        TickClock::new(T, std::time::Duration::from_millis(100)),
    );
    let mut s = session();
    born(&mut s);

    // Speed by alias in NDATA, through the wire format: a day ahead, then
    // two with honest times.
    let t_ms = (T / MS) as u64;
    let sent = [
        (t_ms + DAY_MS, 9.0, 150),
        (t_ms + 240, 2.0, 250),
        (t_ms + 340, 3.0, 350),
    ];
    let mut out = Vec::new();
    for (seq, (ts, v, recv_ms)) in (2..).zip(sent) {
        let mut m = metric(None, Some(1), datatype::FLOAT, MetricValue::Float(v));
        m.timestamp = Some(ts);
        let wire = payload(Some(seq), vec![m]).encode_to_vec();
        let decoded = Payload::decode(wire.as_slice()).expect("decodes");
        s.handle(&topic("NDATA", None), &decoded, T + recv_ms * MS, &mut out);
    }
    let pushed: Vec<Sample> = out
        .iter()
        .filter_map(|a| match a {
            Action::Sample(x) => Some(x.clone()),
            _ => None,
        })
        .collect();
    // The future one: kept, uncertain, at its receive time; reported once.
    assert_eq!(
        (
            pushed[0].quality,
            pushed[0].reason,
            pushed[0].source_time_ns
        ),
        (Quality::Uncertain, Some(Reason::ClockSkew), T + 150 * MS)
    );
    let skews: Vec<_> = out
        .iter()
        .filter(|a| matches!(a, Action::ClockSkew { metric, .. } if metric == "Line/Speed"))
        .collect();
    assert_eq!(skews.len(), 1, "{out:?}");

    // The core follows the honest samples after it, then ages the tag.
    for x in pushed {
        core.push(x);
    }
    let mut states = Vec::new();
    while core.clock().now_ns() < T + 2_000 * MS {
        core.advance();
        core.drain_events();
        states.push(core.tag_states().remove(0));
    }
    let at_400 = &states[3];
    assert_eq!(
        (at_400.value.clone(), at_400.quality, at_400.source_time_ns),
        (Some(Value::Num(3.0)), Quality::Good, Some(T + 340 * MS))
    );
    let last = states.last().expect("ticks");
    assert_eq!(
        (last.quality, last.reason),
        (Quality::Stale, Some(Reason::NoUpdate))
    );
}

#[test]
fn the_clock_skew_allowance_is_the_sources() {
    let mut s = session().with_max_clock_skew(std::time::Duration::from_secs(3600));
    born(&mut s);
    let mut m = metric(None, Some(1), datatype::FLOAT, MetricValue::Float(1.0));
    m.timestamp = Some((T / 1_000_000) as u64 + 60_000);
    let mut out = Vec::new();
    s.handle(
        &topic("NDATA", None),
        &payload(Some(2), vec![m]),
        T,
        &mut out,
    );
    assert_eq!(
        samples(&out),
        vec![(TagId(0), Some(Value::Num(1.0)), Quality::Good)]
    );
    assert_eq!(out.len(), 1, "{out:?}");
}

/// A stamp too far ahead to hold in nanoseconds (a node sending garbage
/// timestamps, up to `u64::MAX` ms) used to be taken as no stamp at all:
/// the sample was good at its receive time, while one an hour ahead was
/// flagged. Both are clock skew.
#[test]
fn r_hostile_a_timestamp_beyond_the_year_2262_is_clock_skew_not_good() {
    for ms in [u64::MAX, 1u64 << 63, 10_000_000_000_000] {
        let mut s = session();
        born(&mut s);
        let mut m = metric(None, Some(1), datatype::FLOAT, MetricValue::Float(1.0));
        m.timestamp = Some(ms);
        let mut out = Vec::new();
        s.handle(
            &topic("NDATA", None),
            &payload(Some(2), vec![m]),
            T,
            &mut out,
        );
        let got: Vec<_> = out
            .iter()
            .filter_map(|a| match a {
                Action::Sample(x) => Some((x.quality, x.reason, x.source_time_ns)),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![(Quality::Uncertain, Some(Reason::ClockSkew), T)],
            "stamp {ms} ms"
        );
        assert!(
            out.iter().any(|a| matches!(a, Action::ClockSkew { .. })),
            "stamp {ms} ms: {out:?}"
        );
    }
}

#[test]
fn accepted_births_and_deaths_are_reported_for_the_setpoint_writer() {
    let lives = |out: &[Action]| -> Vec<(bool, Option<String>)> {
        out.iter()
            .filter_map(|a| match a {
                Action::Born { device, .. } => Some((true, device.clone())),
                Action::Died { device, .. } => Some((false, device.clone())),
                _ => None,
            })
            .collect()
    };
    let mut s = session();
    let mut out = Vec::new();
    // A DBIRTH of a node not born is not accepted: no birth to write by.
    s.handle(
        &topic("DBIRTH", Some("Filler")),
        &payload(Some(1), vec![]),
        T,
        &mut out,
    );
    assert_eq!(lives(&out), vec![]);
    born(&mut s);
    out.clear();
    s.handle(
        &topic("DBIRTH", Some("Filler")),
        &payload(Some(2), vec![]),
        T,
        &mut out,
    );
    s.handle(
        &topic("DDEATH", Some("Filler")),
        &payload(Some(3), vec![]),
        T,
        &mut out,
    );
    s.handle(&topic("NDEATH", None), &payload(None, vec![]), T, &mut out);
    assert_eq!(
        lives(&out),
        vec![
            (true, Some("Filler".to_string())),
            (false, Some("Filler".to_string())),
            (false, None)
        ]
    );
}
