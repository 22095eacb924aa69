//! Cross-check behaviour that the broken-config corpus does not show:
//! what a valid file's tag table holds.

mod stale_after {
    use crate::config::load_str;
    use std::path::Path;
    use std::time::Duration;

    #[test]
    fn stale_after_is_tag_then_source_then_plant() {
        let cfg = load_str(
            Path::new("s.toml"),
            r#"
[plant]
name = "p"
stale_after = "9s"
[[sources.modbus]]
name = "d"
address = "127.0.0.1:502"
stale_after = "4s"
registers = [
  { tag = "a", table = "holding", address = 0, stale_after = "2s" },
  { tag = "b", table = "holding", address = 1 },
]
[[sources.mqtt]]
name = "m"
broker = "embedded"
topics = [{ topic = "t/c", tag = "c" }, { topic = "t/e", tag = "e", stale_after = "30s" }]
[[machines]]
id = "x"
kind = "generic"
tags = { a = "a", b = "b", c = "c", e = "e" }
"#,
        )
        .expect("valid");
        let age = |n: &str| cfg.tags.get(cfg.tags.id(n).expect("tag")).stale_after;
        assert_eq!(age("a"), Duration::from_secs(2));
        assert_eq!(age("b"), Duration::from_secs(4));
        assert_eq!(age("c"), Duration::from_secs(9));
        assert_eq!(age("e"), Duration::from_secs(30));
    }
}

mod warnings {
    use crate::config::load_str;
    use std::path::Path;

    #[test]
    fn an_enabled_setpoint_loads_without_a_stale_write_back_warning() {
        let cfg = load_str(
            Path::new("w.toml"),
            r#"
[plant]
name = "p"
[[sources.modbus]]
name = "d"
address = "127.0.0.1:502"
registers = [{ tag = "a", table = "holding", address = 0 }]
[[machines]]
id = "x"
kind = "generic"
tags = { a = "a" }
[[setpoints]]
tag = "a"
min = 0
max = 10
enabled = true
"#,
        )
        .expect("valid");
        // Write-back is wired (docs/writeback.md): enabling a setpoint is
        // not something to warn about.
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    }
}

mod mqtt {
    use crate::config::{Broker, Secret, load_str};
    use std::path::Path;

    const HEAD: &str = r#"
[plant]
name = "p"
[[machines]]
id = "filler"
kind = "filler"
[[machines]]
id = "capper"
kind = "capper"
"#;

    fn load(mqtt: &str) -> Result<crate::config::LoadedConfig, String> {
        load_str(Path::new("m.toml"), &format!("{HEAD}{mqtt}")).map_err(|r| {
            r.diagnostics
                .iter()
                .map(|d| format!("{}: {}", d.path, d.message))
                .collect::<Vec<_>>()
                .join("\n")
        })
    }

    #[test]
    fn a_machine_capture_declares_one_bound_tag_per_listed_machine() {
        let cfg = load(
            r#"
[[sources.mqtt]]
name = "m"
broker = "mqtt://10.0.0.1"
  [[sources.mqtt.topics]]
  topic = "plant/{machine}/vibration/#"
  tag = "{machine}.vibration"
  machines = ["filler", "capper"]
  [[sources.mqtt.topics]]
  topic = "plant/{machine}/t"
  tag = "{machine}.temp_c"
  role = "temperature"
  machines = ["capper"]
"#,
        )
        .expect("valid");
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        let bound = |t: &str| {
            let d = cfg.tags.get(cfg.tags.id(t).expect(t));
            (d.machine.clone(), d.role.clone())
        };
        assert_eq!(
            bound("filler.vibration"),
            (Some("filler".into()), Some("vibration".into()))
        );
        assert_eq!(
            bound("capper.vibration"),
            (Some("capper".into()), Some("vibration".into()))
        );
        assert_eq!(
            bound("capper.temp_c"),
            (Some("capper".into()), Some("temperature".into()))
        );
        assert_eq!(cfg.tags.len(), 3);
    }

    #[test]
    fn a_captured_tag_is_not_bound_twice() {
        let e = load(
            r#"
[[sources.mqtt]]
name = "m"
broker = "mqtt://10.0.0.1"
topics = [{ topic = "p/{machine}/v", tag = "{machine}.v", machines = ["filler"] }]
[[machines]]
id = "x"
kind = "generic"
tags = { v = "filler.v" }
"#,
        )
        .expect_err("invalid");
        assert!(e.contains("already bound to machine \"filler\""), "{e}");
        let e = load(
            r#"
[[sources.mqtt]]
name = "m"
broker = "mqtt://10.0.0.1"
topics = [{ topic = "p/{machine}/v", tag = "{machine}.v", machines = ["filler", "filler"] }]
"#,
        )
        .expect_err("invalid");
        assert!(e.contains("listed twice"), "{e}");
    }

    #[test]
    fn connection_keys() {
        let cfg = load(
            r#"
[[sources.mqtt]]
name = "m"
broker = "mqtts://broker.local"
username = "twin"
password_env = "MQTT_PASSWORD"
ca_file = "ca.pem"
max_packet_size = 1024
clean_session = true
topics = [{ topic = "a/+/b", tag = "filler.any" }]
[[machines]]
id = "x"
kind = "generic"
tags = { any = "filler.any" }
"#,
        )
        .expect("valid");
        let m = &cfg.config.mqtt[0];
        assert_eq!(
            m.connection.broker.value,
            Broker::Tcp {
                host: "broker.local".into(),
                port: 8883
            }
        );
        assert!(m.connection.tls && m.clean_session);
        assert_eq!(m.connection.max_packet_size, 1024);
        assert!(
            matches!(&m.connection.password, Some(Secret::Env(v)) if v.value == "MQTT_PASSWORD")
        );
        assert_eq!(m.connection.client_id, "twin-m");

        // The embedded broker has no authentication to give credentials to.
        let e = load(
            r#"
[[sources.mqtt]]
name = "m"
broker = "embedded"
username = "twin"
password_env = "$PASS"
"#,
        )
        .expect_err("invalid");
        assert!(e.contains("`username` does not apply"), "{e}");
        assert!(e.contains("environment variable name"), "{e}");

        // Credentials over plain mqtt:// are allowed, with a warning.
        let cfg = load(
            r#"
[[sources.mqtt]]
name = "m"
broker = "mqtt://10.0.0.1"
username = "twin"
password_file = "secret"
"#,
        )
        .expect("valid");
        assert!(
            cfg.warnings
                .iter()
                .any(|w| w.message.contains("unencrypted")),
            "{:?}",
            cfg.warnings
        );
    }
}

mod registers {
    use crate::config::load_str;
    use std::path::Path;

    /// Overlaps are found per address, not by scanning every earlier
    /// register (issue 9: quadratic in one device's registers; the figure is
    /// in `benches/config_check.rs`). The report must still name the first
    /// register in file order that the new one overlaps, and only within
    /// one table.
    #[test]
    fn r9_an_overlap_names_the_first_earlier_register_in_the_same_table() {
        let r = load_str(
            Path::new("o.toml"),
            r#"
[plant]
name = "p"
[[sources.modbus]]
name = "d"
address = "127.0.0.1:502"
registers = [
  { tag = "late", table = "holding", address = 5 },
  { tag = "early", table = "holding", address = 2, type = "f64" },
  { tag = "other_table", table = "input", address = 3 },
  { tag = "text", table = "holding", address = 0, type = "string", length = 10 },
  { tag = "after", table = "holding", address = 20, type = "u32" },
  { tag = "word", table = "holding", address = 21 },
]
"#,
        )
        .expect_err("overlaps");
        let overlaps: Vec<(&str, &str)> = r
            .diagnostics
            .iter()
            .filter(|d| d.message.contains("overlaps"))
            .map(|d| (d.path.as_str(), d.message.as_str()))
            .collect();
        assert_eq!(
            overlaps,
            [
                (
                    "sources.modbus[0].registers[1].address",
                    "holding registers 2..=5 (tag \"early\") overlaps holding register 5 (tag \"late\")"
                ),
                (
                    "sources.modbus[0].registers[3].address",
                    "holding registers 0..=9 (tag \"text\") overlaps holding register 5 (tag \"late\")"
                ),
                (
                    "sources.modbus[0].registers[5].address",
                    "holding register 21 (tag \"word\") overlaps holding registers 20..=21 (tag \"after\")"
                ),
            ]
        );
    }
}

mod stations {
    use crate::config::load_str;
    use std::path::Path;

    /// A measured rate on a station with a fixed cycle would be ignored:
    /// it is a located error, not a silent no-op.
    #[test]
    fn a_rate_tag_on_a_fixed_cycle_station_is_a_located_error() {
        let demo = include_str!("../../../plant-configs/packaging-line.toml");
        let tagged = "  cycle_time_tag = \"filler.cycle_sp\"\n";
        assert!(demo.contains(tagged), "the demo's filler has a cycle tag");
        let text = demo.replace(tagged, "");
        let report = load_str(Path::new("demo.toml"), &text).expect_err("invalid");
        let d = report
            .errors()
            .find(|d| d.path == "lines[0].stations[0].rate_tag")
            .unwrap_or_else(|| {
                panic!("{:?}", report.errors().map(|d| &d.path).collect::<Vec<_>>())
            });
        assert!(
            d.message.contains("does not follow a measured rate"),
            "{}",
            d.message
        );
        assert_eq!(&text[d.span.clone()], "\"filler.speed\"");
    }
}
