//! What a new user types wrong on the command line and in a first plant
//! file, found by following the README as an integrator and a plant
//! engineer would: each must be a clear error with its documented exit
//! code (2 for a value the command line cannot take, 78 for a config), never
//! a panic, a hang or a run that quietly cannot work.

use std::process::Output;

use crate::util::*;

const DEMO: &str = "plant-configs/packaging-line.toml";
/// sysexits EX_USAGE, as clap and the README's exit-code table give it.
const EXIT_USAGE: i32 = 2;
const EXIT_CONFIG: i32 = 78;

fn twin_out(args: &[&str]) -> Output {
    twin()
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the twin binary")
}

fn assert_usage_error(args: &[&str], says: &str) {
    let out = twin_out(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(101),
        "twin {args:?} panicked: {stderr}"
    );
    assert_eq!(
        out.status.code(),
        Some(EXIT_USAGE),
        "twin {args:?}: {stderr}"
    );
    assert!(
        stderr.contains("invalid value") && stderr.contains(says),
        "twin {args:?} should say {says:?}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "twin {args:?}: {stderr}");
}

/// `twin sim --update 0s` panicked in a tokio interval ("`period` must be
/// non-zero", with a backtrace) and then hung with its servers still up.
#[test]
fn r_user_zero_periods_are_usage_errors() {
    assert_usage_error(
        &["sim", DEMO, "--update", "0s", "--for", "1s"],
        "above zero",
    );
    assert_usage_error(
        &["sim", DEMO, "--publish", "0ms", "--for", "1s"],
        "above zero",
    );
    assert_usage_error(
        &[
            "whatif",
            DEMO,
            "--arrival-interval",
            "0s",
            "--set",
            "outfeed.speed=0.4",
        ],
        "above zero",
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("d.csv");
    std::fs::write(&csv, "a,b\n1,2\n3,4\n").expect("write csv");
    let csv = csv.to_string_lossy().into_owned();
    let mcap = dir.path().join("d.mcap").to_string_lossy().into_owned();
    let starter = dir.path().join("p.toml").to_string_lossy().into_owned();
    // Every row at one time: the import used to succeed with one instant.
    assert_usage_error(
        &["import", &csv, "-o", &mcap, "--period", "0s"],
        "above zero",
    );
    // A tick the starter config cannot have: reported as "a bug in twin
    // import" with exit 1.
    assert_usage_error(
        &[
            "import",
            &csv,
            "-o",
            &mcap,
            "--period",
            "1s",
            "--tick",
            "0s",
            "--config-out",
            &starter,
        ],
        "from 1ms to 1m",
    );
    assert!(!std::path::Path::new(&starter).exists());
}

/// `twin run --modbus plc=10.0.0.5` (no port) and a port over 65535 were
/// taken; the device then stayed "unreachable" for the whole run.
#[test]
fn r_user_a_modbus_override_needs_host_and_port() {
    for bad in [
        "line_plc=127.0.0.1",
        "line_plc=127.0.0.1:99999",
        "line_plc=:502",
        "line_plc=127.0.0.1:0",
    ] {
        assert_usage_error(&["run", DEMO, "--modbus", bad, "--for", "1s"], "HOST:PORT");
        assert_usage_error(
            &[
                "whatif",
                DEMO,
                "--modbus",
                bad,
                "--set",
                "outfeed.speed=0.4",
            ],
            "HOST:PORT",
        );
    }
    // The same address in an endpoints file: a runtime failure naming the
    // file and the device (README: exit 1, "read the endpoints file").
    let dir = tempfile::tempdir().expect("temp dir");
    let ep = dir.path().join("ep.json");
    std::fs::write(&ep, r#"{"modbus": {"line_plc": "127.0.0.1"}}"#).expect("write endpoints");
    let ep = ep.to_string_lossy().into_owned();
    let out = twin_out(&["run", DEMO, "--endpoints", &ep, "--for", "1s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "endpoints file {ep}: Modbus device \"line_plc\" has address \"127.0.0.1\"; expected HOST:PORT"
        )),
        "{stderr}"
    );
}

/// A plant file saved by a Windows editor: a byte-order mark and CRLF line
/// ends. It is valid as such, and a mistake on its first line is placed at
/// the column the user sees (the BOM made it column 2, and the caret sat
/// one place to the right of the key).
#[test]
fn r_user_a_bom_and_crlf_file_is_read_and_located_as_seen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = std::fs::read_to_string(root().join(DEMO)).expect("read the demo config");
    let windows = |text: &str| {
        let mut s = "\u{feff}".to_string();
        s.push_str(&text.replace('\n', "\r\n"));
        s
    };
    let good = dir.path().join("good.toml");
    std::fs::write(&good, windows(&demo)).expect("write config");
    // The demo's model paths are relative to its folder: check the schema.
    let out = twin_out(&["check", "--no-models", &good.to_string_lossy()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, windows("versio = 1\n[plant]\nname = \"x\"\n")).expect("write config");
    let bad = bad.to_string_lossy().into_owned();
    let out = twin_out(&["check", &bad]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(stderr.contains(&format!("{bad}:1:1\n")), "{stderr}");
    assert!(
        stderr.contains("1 | versio = 1\n  | ^^^^^^\n"),
        "the quoted line has no BOM and the caret is under the key:\n{stderr}"
    );
    let out = twin_out(&["check", "--short", &bad]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!("{bad}:1:1: error: versio: unknown key")),
        "{stderr}"
    );
}

/// `order = "CDAB"` copied from a float onto a u16 (or onto a coil) was
/// taken silently, though it changes nothing: the value looked decoded as
/// asked. A warning now names it; the file stays valid, as before.
#[test]
fn r_user_a_word_order_that_does_nothing_is_a_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("mix.toml");
    std::fs::write(
        &cfg,
        r#"[plant]
name = "Mixing station"

[[sources.modbus]]
name = "mixer_plc"
address = "127.0.0.1:6020"
registers = [
  { tag = "mixer.speed", table = "holding", address = 0, type = "u16", order = "CDAB" },
  { tag = "mixer.swapped", table = "holding", address = 1, type = "i16", order = "BADC" },
  { tag = "mixer.flow", table = "input", address = 0, type = "f32", order = "CDAB" },
  { tag = "mixer.running", table = "coil", address = 0, order = "DCBA" },
]

[[machines]]
id = "mixer"
kind = "mixer"
tags = { speed = "mixer.speed", swapped = "mixer.swapped", flow = "mixer.flow", running = "mixer.running" }
"#,
    )
    .expect("write config");
    let cfg = cfg.to_string_lossy().into_owned();
    let out = twin_out(&["check", "--short", &cfg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // A valid file's warnings come on stdout, before its summary line.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(
        lines[0].starts_with(&format!(
            "{cfg}:8:80: warning: sources.modbus[0].registers[0].order: order \"CDAB\" has no effect: a u16 fits in one register"
        )),
        "{stdout}"
    );
    assert!(
        lines[1]
            .contains("registers[3].order: order \"DCBA\" has no effect: a coil is a single bit"),
        "{stdout}"
    );
    assert!(lines[2].ends_with("2 warnings)"), "{stdout}");
}

/// `twin replay REC --from 5s --to 1s` ran the whole recording, wrote no
/// event and exited 0, as if the recording were empty.
#[test]
fn r_user_replay_from_after_to_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rec = dir.path().join("shift.mcap").to_string_lossy().into_owned();
    let out = twin_out(&["demo", "--headless", "--for", "3s", "--record", &rec]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = twin_out(&[
        "replay", &rec, "--from", "5s", "--to", "1s", "--events", "-",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_USAGE), "{stderr}");
    assert!(stderr.contains("--from 5s is after --to 1s"), "{stderr}");
    assert!(out.stdout.is_empty());
    // In order, the same two bounds replay.
    let out = twin_out(&[
        "replay", &rec, "--from", "1s", "--to", "2s", "--events", "-",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"type\":\"tag\""));
}

/// Running a shipped scenario against one's own plant: the scenario's
/// line is not in it. The errors said "unknown key `conveyor`" and
/// "unknown key `tag`" for keys the scenario format has, on top of the
/// real problem.
#[test]
fn r_user_a_scenario_for_another_plant_names_only_the_real_problems() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("mix.toml");
    std::fs::write(
        &cfg,
        r#"[plant]
name = "Mixing station"

[[sources.modbus]]
name = "belt_plc"
address = "127.0.0.1:6022"
registers = [{ tag = "belt.speed", table = "holding", address = 0, scale = 0.001, unit = "m/s" }]

[[machines]]
id = "belt"
kind = "conveyor"
tags = { speed = "belt.speed" }

[[lines]]
id = "pack"
machines = ["belt"]

  [[lines.conveyors]]
  id = "belt"
  speed_tag = "belt.speed"
  width = 0.4
    [[lines.conveyors.segments]]
    length = 5.0

  [lines.product]
  length = 0.2
  width = 0.2
  height = 0.15
  mass = 1.0
  friction = 0.6
  spawn_interval = "2s"
"#,
    )
    .expect("write config");
    let scenario = dir.path().join("jam.toml");
    std::fs::write(
        &scenario,
        r#"[[faults]]
kind = "jam"
at = "60s"
duration = "30s"
line = "line1"
conveyor = "outfeed"
position = 0.1

[[faults]]
kind = "setpoint"
at = "10s"
tag = "filler.cycle_sp"
value = 0.6
"#,
    )
    .expect("write scenario");
    let truth = dir.path().join("truth.jsonl");
    let out = twin_out(&[
        "sim",
        &cfg.to_string_lossy(),
        "--headless",
        "--for",
        "1s",
        "--truth",
        &truth.to_string_lossy(),
        "--scenario",
        &scenario.to_string_lossy(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(stderr.contains("unknown line \"line1\""), "{stderr}");
    assert!(
        stderr.contains("jam.toml:12:1\n"),
        "at the setpoint's tag: {stderr}"
    );
    assert!(
        stderr.contains("the plant has no writable setpoint"),
        "{stderr}"
    );
    assert!(!stderr.contains("unknown key"), "{stderr}");
    assert!(stderr.contains("2 errors"), "{stderr}");
}

/// A plant file saved as Latin-1 or UTF-16 was "cannot read config file:
/// stream did not contain valid UTF-8; check the path and the file's
/// permissions", which sent the user looking at paths and modes.
#[test]
fn r_user_a_file_in_another_encoding_says_so_and_where() {
    let dir = tempfile::tempdir().expect("temp dir");
    let latin1 = dir.path().join("latin1.toml");
    std::fs::write(&latin1, b"[plant]\nname = \"Misch\xe4rstation\"\n").expect("write");
    let latin1 = latin1.to_string_lossy().into_owned();
    let out = twin_out(&["check", "--short", &latin1]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "{latin1}:2:14: error: the config file is not UTF-8: byte 0xe4"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("iconv -f latin1 -t utf-8"), "{stderr}");
    assert!(!stderr.contains("permissions"), "{stderr}");

    let utf16 = dir.path().join("utf16.toml");
    let mut bytes = vec![0xff, 0xfe];
    for u in "[plant]\nname = \"x\"\n".encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    std::fs::write(&utf16, bytes).expect("write");
    let utf16 = utf16.to_string_lossy().into_owned();
    // A folder given for the file: "Is a directory (os error 21)" before.
    let folder = dir.path().to_string_lossy().into_owned();
    let out = twin_out(&["check", "--short", &folder]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(
        stderr.starts_with(&format!(
            "{folder}:1:1: error: this is a directory, not a config file"
        )),
        "{stderr}"
    );
    for cmd in ["check", "run"] {
        let out = twin_out(&[cmd, &utf16]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{cmd}: {stderr}");
        assert!(
            stderr.contains("the config file is UTF-16") && stderr.contains("save it as UTF-8"),
            "{cmd}: {stderr}"
        );
    }
}

/// `--record-rotate` and `--record-flush` without `--record` were taken and
/// did nothing: a user who thought the run was recorded had no recording.
/// `--events-overflow fail` without `--events` promised a failure that
/// could never come.
#[test]
fn r_user_output_options_need_their_output() {
    for args in [
        &["run", DEMO, "--record-rotate", "1h", "--for", "1s"][..],
        &["demo", "--record-flush", "2s", "--for", "1s"][..],
    ] {
        let out = twin_out(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_USAGE), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--record <FILE.mcap>"),
            "{args:?}: {stderr}"
        );
    }
    // Likewise the event stream's overflow policy without an event stream.
    for args in [
        &["run", DEMO, "--events-overflow", "fail", "--for", "1s"][..],
        &["demo", "--events-buffer", "1MiB", "--for", "1s"][..],
    ] {
        let out = twin_out(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_USAGE), "{args:?}: {stderr}");
        assert!(stderr.contains("--events <PATH|->"), "{args:?}: {stderr}");
    }
}

/// A closed-loop setpoint without `--audit`: exit 2, and the message is
/// about the one setpoint ("setpoints mixer.speed can ... set their mode"
/// before).
#[test]
fn r_user_a_writing_setpoint_without_audit_is_named_in_the_singular() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("mix.toml");
    std::fs::write(
        &cfg,
        r#"[plant]
name = "Mixing station"

[[sources.modbus]]
name = "mixer_plc"
address = "127.0.0.1:6020"
registers = [{ tag = "mixer.speed", table = "holding", address = 0 }]

[[machines]]
id = "mixer"
kind = "mixer"
tags = { speed = "mixer.speed" }

[[setpoints]]
tag = "mixer.speed"
min = 0
max = 200
mode = "closed_loop"
"#,
    )
    .expect("write config");
    let out = twin_out(&["run", &cfg.to_string_lossy(), "--for", "1s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_USAGE), "{stderr}");
    assert!(
        stderr.contains("setpoint mixer.speed can write to the plant")
            && stderr.contains("set its mode to shadow"),
        "{stderr}"
    );
}

/// Two entries for one MQTT topic, one reading it as a number and one as
/// JSON (a copy-paste slip), passed: one of the two tags was then bad on
/// every message. Different JSON fields of one topic stay fine.
#[test]
fn r_user_one_topic_read_two_incompatible_ways_is_a_warning() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("mix.toml");
    std::fs::write(
        &cfg,
        r#"[plant]
name = "Mixing station"

[[sources.mqtt]]
name = "sensors"
broker = "embedded"
listen = "127.0.0.1:6883"
topics = [
  { topic = "mix/mixer/vibration", tag = "mixer.vibration", payload = "json", field = "rms" },
  { topic = "mix/mixer/vibration", tag = "mixer.peak", payload = "json", field = "peak" },
  { topic = "mix/mixer/vibration", tag = "mixer.temperature" },
  { topic = "mix/mixer/level", tag = "mixer.level" },
  { topic = "mix/mixer/level", tag = "mixer.level2" },
]

[[machines]]
id = "mixer"
kind = "mixer"
tags = { vibration = "mixer.vibration", peak = "mixer.peak", temperature = "mixer.temperature", level = "mixer.level", level2 = "mixer.level2" }
"#,
    )
    .expect("write config");
    let cfg = cfg.to_string_lossy().into_owned();
    let out = twin_out(&["check", "--short", "--no-models", &cfg]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "two warnings and the summary:\n{stdout}");
    assert!(
        lines[0].starts_with(&format!(
            "{cfg}:11:13: warning: sources.mqtt[0].topics[2].topic: topic \"mix/mixer/vibration\" is read here as a plain number and at line 9:13 as a JSON object"
        )),
        "{stdout}"
    );
    assert!(
        lines[1].contains("topics[4].topic: topic \"mix/mixer/level\" is already read the same way at line 12:13 (tag \"mixer.level\")"),
        "{stdout}"
    );
}

/// A plant with a TLS broker run against `twin sim`: the sim published in
/// plain text to the TLS broker's host and port and wrote that `mqtt://`
/// URL to the endpoints, so `twin run --endpoints` (and `twin demo`) sent
/// the source's username and password unencrypted to the real broker.
/// The TLS source is now not served and not in the endpoints.
#[test]
fn r_user_the_sim_never_downgrades_a_tls_source_to_plain_mqtt() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("tls.toml");
    std::fs::write(
        &cfg,
        r#"[plant]
name = "Mixing station"

[[sources.mqtt]]
name = "site"
broker = "mqtts://127.0.0.1:18883"
username = "twin"
password_env = "TWIN_TEST_PW"
topics = [{ topic = "mix/temp", tag = "mixer.temperature" }]

[[sources.mqtt]]
name = "local"
broker = "embedded"
listen = "127.0.0.1:0"
topics = [{ topic = "mix/level", tag = "mixer.level" }]

[[machines]]
id = "mixer"
kind = "mixer"
tags = { temperature = "mixer.temperature", level = "mixer.level" }
"#,
    )
    .expect("write config");
    let ep = dir.path().join("ep.json");
    let out = twin_out(&[
        "sim",
        &cfg.to_string_lossy(),
        "--for",
        "1s",
        "--endpoints-out",
        &ep.to_string_lossy(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("mqtt local mqtt://127.0.0.1:"), "{stdout}");
    assert!(!stdout.contains("mqtt site"), "{stdout}");
    assert!(
        stderr.contains("does not serve this TLS source"),
        "{stderr}"
    );
    let endpoints: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ep).expect("read endpoints"))
            .expect("endpoints are JSON");
    assert!(endpoints["mqtt"].get("local").is_some(), "{endpoints}");
    assert!(endpoints["mqtt"].get("site").is_none(), "{endpoints}");
}

/// `twin demo --headless --for 4h --record ...` (the README's way to record
/// hours of plant time) had no signal handling: Ctrl-C or SIGTERM killed
/// it, with no summary and a recording cut off mid-file. It now stops at
/// the next tick, exits 0, and its recording replays to the same events.
#[test]
fn r_user_a_headless_run_stops_cleanly_on_sigint_and_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    for signal in ["-INT", "-TERM"] {
        let events = dir.path().join(format!("live{signal}.jsonl"));
        let rec = dir.path().join(format!("shift{signal}.mcap"));
        let mut cmd = twin();
        cmd.args(["demo", "--headless", "--for", "4h", "--events"])
            .arg(&events)
            .arg("--record")
            .arg(&rec);
        let mut p = Proc::spawn(cmd);
        // Wait until it is well under way.
        let end = twin::wallclock::monotonic() + std::time::Duration::from_secs(120);
        while std::fs::metadata(&events).map_or(0, |m| m.len()) < 100_000
            && twin::wallclock::monotonic() < end
        {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = std::process::Command::new("kill")
            .arg(signal)
            .arg(p.child.id().to_string())
            .status();
        let code = p.wait(std::time::Duration::from_secs(60));
        let stderr = p.stderr();
        assert_eq!(code, Some(0), "{signal}: {stderr}");
        assert!(
            stderr.contains("stopped_by_signal=true"),
            "{signal}: {stderr}"
        );
        let replayed = twin_out(&["replay", &rec.to_string_lossy(), "--events", "-"]);
        assert_eq!(replayed.status.code(), Some(0), "{signal}");
        let live = std::fs::read(&events).expect("read events");
        assert!(!live.is_empty());
        assert!(
            replayed.stdout == live,
            "{signal}: the recording replays to the events written"
        );
    }
}

/// A source whose `password_env` names a variable that is not set stopped
/// `twin run` with exit 1, as if the plant had failed, and did not say
/// what to do. It is the config's secret that is missing: exit 78, and the
/// message says to export it or use `password_file`.
#[test]
fn r_user_a_missing_password_variable_is_a_config_error_that_says_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = dir.path().join("pw.toml");
    std::fs::write(
        &cfg,
        r#"[plant]
name = "Mixing station"

[[sources.mqtt]]
name = "site"
broker = "mqtt://127.0.0.1:1"
username = "twin"
password_env = "TWIN_TEST_SURELY_UNSET_PASSWORD"
topics = [{ topic = "mix/temp", tag = "mixer.temperature" }]

[[machines]]
id = "mixer"
kind = "mixer"
tags = { temperature = "mixer.temperature" }
"#,
    )
    .expect("write config");
    let out = twin_out(&["run", &cfg.to_string_lossy(), "--for", "1s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{stderr}");
    assert!(
        stderr.contains("TWIN_TEST_SURELY_UNSET_PASSWORD (from password_env) is not set")
            && stderr.contains("password_file"),
        "{stderr}"
    );
}

/// `twin whatif --horizon 100000h` was accepted and ran for hours; a
/// what-if looks at most a day ahead (and warms up at most a day), and a
/// zero horizon forecasts nothing.
#[test]
fn r_user_whatif_spans_beyond_a_day_are_usage_errors() {
    for (flag, value, says) in [
        ("--horizon", "100000h", "at most 24h"),
        ("--horizon", "25h", "at most 24h"),
        ("--horizon", "0s", "above zero"),
        ("--warmup", "1000d", "at most 24h"),
    ] {
        assert_usage_error(
            &["whatif", DEMO, flag, value, "--set", "outfeed.speed=0.4"],
            says,
        );
    }
}

/// `twin whatif --set outfeed.speed=1e9` forecast a belt at 1e9 m/s without
/// a word; it still answers (a what-if may ask anything), but says the
/// value is outside the setpoint's bounds, so the forecast is not read as
/// a plan. A value inside them gets no note.
#[test]
fn r_user_whatif_says_when_a_value_is_outside_the_setpoints_bounds() {
    let out = twin_out(&[
        "whatif",
        DEMO,
        "--set",
        "outfeed.speed=1e9",
        "--horizon",
        "10s",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("outfeed.speed=1000000000 is outside its [[setpoints]] bounds 0.1..0.85"),
        "{stderr}"
    );
    let out = twin_out(&[
        "whatif",
        DEMO,
        "--set",
        "outfeed.speed=0.5",
        "--horizon",
        "10s",
    ]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("outside its"));
}
