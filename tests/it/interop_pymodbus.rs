//! Interop with an independent Modbus implementation: pymodbus
//! (tests/peers/pymodbus_server.py) serves registers whose words Python's
//! `struct` computed from known values, and the real binary must report
//! exactly those values: every data type in every byte/word order, bits,
//! text, sentinels, scaling, and two unit ids behind one address.
//!
//! The peer runs from the project venv that `scripts/setup.sh` (run by
//! `make test`) installs; a missing venv fails the test rather than skipping
//! it, so CI cannot go green without the interop check.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::util::*;

const CFG: &str = "tests/configs/pymodbus-interop.toml";
const SERVER: &str = "tests/peers/pymodbus_server.py";

/// What the server means a tag to read as.
#[derive(Debug, Clone, PartialEq)]
enum Expect {
    Num(f64),
    Bool(bool),
    Text(&'static str),
    /// Quality bad with this reason.
    Bad(&'static str),
}
use Expect::*;

/// The values pymodbus_server.py encodes, written out again here.
fn expected() -> BTreeMap<String, Expect> {
    // Python packs the f64 literal as an f32 (round to nearest); `as f32`
    // rounds the same way, and the twin widens the f32 exactly.
    let f32v = |x: f64| Num(f64::from(x as f32));
    let f32s = [-1234.5678, 98765.4321, -0.00012345678, 6.0221408e23];
    let f64s = [
        -1234.5678,
        6.02214076e23,
        -2.718281828459045e-300,
        1.0 / 3.0,
    ];
    let strings = ["LOT-42", "LOT-42A", "ABCDEFGH", "X"];
    let mut m = BTreeMap::new();
    let mut put = |tag: &str, e: Expect| {
        assert!(m.insert(tag.to_string(), e).is_none(), "{tag} twice");
    };
    for (k, order) in ["abcd", "dcba", "badc", "cdab"].into_iter().enumerate() {
        let kf = k as f64;
        let t = |name: &str| format!("{order}.{name}");
        put(&t("u16"), Num(51234.0 + kf));
        put(&t("i16"), Num(-12345.0 - kf));
        put(&t("u32"), Num(f64::from(0xDEAD_BEEF_u32) - kf));
        put(&t("i32"), Num(-f64::from(0x1234_5678) - kf));
        put(&t("f32"), f32v(f32s[k]));
        // Below 2^53, so exact as f64.
        put(&t("u64"), Num(0x0012_3456_789A_BCDE_u64 as f64 + kf));
        put(&t("i64"), Num(-(0x0012_3456_789A_BCDE_u64 as f64) - kf));
        put(&t("f64"), Num(f64s[k]));
        put(&t("string"), Text(strings[k]));
        put(&t("bool"), Bool(true));
        // The register holds 0x9008: bits 15, 12, 3 set, their byte-swap
        // partners 7, 4, 11 clear.
        for (bit, v) in [
            (15, true),
            (7, false),
            (12, true),
            (4, false),
            (3, true),
            (11, false),
        ] {
            put(&t(&format!("bit{bit:02}")), Bool(v));
        }
    }
    put("sentinel.u16", Bad("invalid_value"));
    put("sentinel.near", Num(65534.0));
    put("status.zero", Bool(false));

    put("in.f32_cdab", f32v(120.189));
    put("in.u32_dcba", Num(4_000_000_000.0));
    put("in.i16_sentinel", Bad("invalid_value"));
    put("in.scaled_u16", Num(53.8));
    put("in.scaled_i32", Num(-123.456));
    put("in.scaled_i16", Num(-0.07));
    put("in.scaled_f32", Num(5.5));
    put("in.scaled_u16_dcba", Num(626.0));
    put("in.recipe", Text("RECIPE-9"));
    put("in.operator", Text("MÜLLER°"));
    put("in.bit00", Bool(true));
    put("in.bit08", Bool(false));
    put("in.energy", Num(123_456_789.012));
    // The raw value is -0.0; the twin reports 0.0 (adding the offset 0
    // clears the sign), and the two compare equal.
    put("in.neg_zero", Num(0.0));

    let coils = "1011000101101000101";
    for (i, c) in coils.chars().enumerate() {
        put(&format!("coil.{i:02}"), Bool(c == '1'));
        put(&format!("di.{i:02}"), Bool(c == '0'));
    }
    put("di.1000", Bool(true));

    put("gw.u16", Num(4242.0));
    put("gw.f32", Num(21.5));
    put("gw.i16", Num(-1.0));
    put("gw.coil0", Bool(false));
    put("gw.coil1", Bool(true));
    put("gw.di0", Bool(true));
    m
}

fn venv_python() -> PathBuf {
    let py = root().join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: the interop tests run their peers from the project venv. \
         Run `make test`, or `bash scripts/setup.sh` once, to create it.",
        py.display()
    );
    py
}

/// Start the pymodbus server on a free port; returns it and the port.
pub(crate) fn start_server() -> (Proc, u16) {
    let mut cmd = std::process::Command::new(venv_python());
    cmd.current_dir(root()).arg(SERVER).arg("0");
    let mut server = Proc::spawn(cmd);
    let started = server.wait_for(Duration::from_secs(30), |l| !l.is_empty());
    assert!(
        started && server.is_running(),
        "the pymodbus server did not start:\n{}",
        server.stderr()
    );
    let first = server.lines()[0].clone();
    let port = first
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the server printed {first:?}, not a port"));
    (server, port)
}

/// The literal text of the `value` field of an event line. Numbers are
/// compared by parsing this text with Rust's correctly rounded parser, so
/// the comparison is exact whatever a JSON library does with floats.
fn value_text(line: &str) -> &str {
    let rest = &line[line.find("\"value\":").expect("a value field") + 8..];
    let end = rest.find([',', '}']).expect("the value ends");
    &rest[..end]
}

#[test]
fn every_type_and_order_decodes_as_pymodbus_encoded_it() {
    let (mut server, port) = start_server();
    let addr = format!("127.0.0.1:{port}");
    let mut run = twin();
    run.args(["run", CFG, "--events", "-", "--for", "3s"])
        .arg("--modbus")
        .arg(format!("plc={addr}"))
        .arg("--modbus")
        .arg(format!("gw2={addr}"));
    let mut run = Proc::spawn(run);
    assert_eq!(
        run.wait(Duration::from_secs(30)),
        Some(0),
        "twin run failed:\n{}",
        run.stderr()
    );
    assert!(
        server.is_running(),
        "the pymodbus server died:\n{}",
        server.stderr()
    );
    assert_final_values(&run, true);
}

/// Every tag's last event must be exactly what pymodbus served. With
/// `strict`, no event on the way may carry a failure reason either.
fn assert_final_values(run: &Proc, strict: bool) {
    // The last event of each tag is its final state; keep its line too.
    let lines = run.lines();
    let mut last: BTreeMap<String, (serde_json::Value, &str)> = BTreeMap::new();
    for line in &lines {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if e["type"] != "tag" {
            continue;
        }
        // Nothing may fail on the way: no timeouts, refusals or short reads.
        let reason = e["reason"].as_str().unwrap_or("");
        assert!(
            !strict || ["", "no_data", "invalid_value"].contains(&reason),
            "unexpected {reason} in {line}\n{}",
            run.stderr()
        );
        let tag = e["tag"].as_str().expect("tag").to_string();
        last.insert(tag, (e, line.as_str()));
    }

    let want = expected();
    let seen: Vec<&String> = last.keys().collect();
    let wanted: Vec<&String> = want.keys().collect();
    assert_eq!(
        seen, wanted,
        "the config's tags and this test's expectations differ"
    );

    let mut wrong = Vec::new();
    for (tag, want) in &want {
        let (e, line) = &last[tag];
        let ok = match want {
            Bad(reason) => e["quality"] == "bad" && e["reason"] == *reason,
            _ if e["quality"] != "good" => false,
            Num(x) => value_text(line).parse::<f64>().ok() == Some(*x),
            Bool(b) => e["value"] == *b,
            Text(s) => e["value"] == *s,
        };
        if !ok {
            wrong.push(format!("{tag}: expected {want:?}, got {line}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} tags differ from what pymodbus served:\n{}",
        wrong.len(),
        want.len(),
        wrong.join("\n")
    );
}

/// pymodbus answers only the first of several pipelined requests. A link
/// configured for pipelining must notice (timeouts with several requests in
/// flight), fall back to one request at a time, and end with every value
/// right.
#[test]
fn a_server_that_drops_pipelined_requests_gets_one_at_a_time() {
    let (mut server, port) = start_server();
    let addr = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(root().join(CFG)).expect("config");
    assert!(text.contains("max_in_flight = 1\n") && text.contains("timeout = \"1s\""));
    let cfg = dir.path().join("pipelined.toml");
    std::fs::write(
        &cfg,
        text.replace("max_in_flight = 1\n", "max_in_flight = 4\n")
            .replace("timeout = \"1s\"", "timeout = \"300ms\""),
    )
    .expect("write config");
    let mut run = twin();
    run.args(["run", "--events", "-", "--for", "6s"])
        .arg(&cfg)
        .arg("--modbus")
        .arg(format!("plc={addr}"))
        .arg("--modbus")
        .arg(format!("gw2={addr}"));
    let mut run = Proc::spawn(run);
    assert_eq!(
        run.wait(Duration::from_secs(40)),
        Some(0),
        "twin run failed:\n{}",
        run.stderr()
    );
    assert!(
        server.is_running(),
        "the pymodbus server died:\n{}",
        server.stderr()
    );
    assert!(
        run.stderr().contains("may not support pipelining"),
        "expected the pipelining fallback warning:\n{}",
        run.stderr()
    );
    assert_final_values(&run, false);
}
