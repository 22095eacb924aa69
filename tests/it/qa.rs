//! `twin diff` and `twin expect` (issue 10, QA workflow), through the real
//! binary: exit codes, output formats, located errors, and the JUnit XML
//! validated against the Jenkins schema with lxml from the project venv.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::{root, twin};

const T0: &str = "2027-01-15T08:00:";

/// Tick time `s` seconds (under a minute) after 08:00:00.
fn t(s: f64) -> String {
    format!("{T0}{s:06.3}Z")
}

fn tag(s: f64, name: &str, value: &str) -> String {
    format!(
        r#"{{"v":1,"type":"tag","t":"{}","tag":"{name}","machine":"infeed","value":{value},"quality":"good","unit":"m/s","src_t":"{}"}}"#,
        t(s),
        t(s)
    )
}

fn residual(s: f64, eye: &str) -> String {
    format!(
        r#"{{"v":1,"type":"residual","t":"{}","line":"line1","eye":"{eye}","tag":"outfeed.{eye}","residual":"missing","expected_t":"{}","measured_t":null}}"#,
        t(s),
        t(s - 3.0)
    )
}

fn jam(s: f64) -> String {
    format!(
        r#"{{"v":1,"type":"jam","t":"{}","line":"line1","state":"start","after_eye":"eye_transfer","from_conveyor":"outfeed","from_m":0.3,"before_eye":"eye_exit","to_conveyor":"outfeed","to_m":4.8,"since":"{}"}}"#,
        t(s),
        t(s - 6.0)
    )
}

fn line(s: f64, wip: u32) -> String {
    format!(
        r#"{{"v":1,"type":"line","t":"{}","line":"line1","wip":{wip},"out":3,"lost":0,"throughput_per_min":40.0,"quality":"good","zones":{{"infeed":8}}}}"#,
        t(s)
    )
}

/// A healthy stream: a tag changing every second, a `line` event a second,
/// and a residual at 20 s.
fn healthy() -> Vec<String> {
    let mut v = Vec::new();
    for i in 0..40 {
        let s = f64::from(i);
        v.push(tag(
            s,
            "infeed.speed",
            &format!("{:.3}", 0.6 + f64::from(i % 3) * 0.001),
        ));
        v.push(line(s, 17));
        if i == 20 {
            v.push(residual(s, "eye_exit"));
        }
    }
    v
}

fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let p = dir.join(name);
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&p, text).expect("write fixture");
    p
}

fn run(args: &[&str]) -> Output {
    twin().args(args).output().expect("run twin")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn diff(a: &Path, b: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "diff",
        a.to_str().expect("utf-8"),
        b.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn diff_of_identical_streams_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.jsonl", &healthy());
    let b = write(dir.path(), "b.jsonl", &healthy());
    let o = diff(&a, &b, &[]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("identical: 81 events in A, 81 in B"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn diff_reports_an_added_jam_at_its_tick_with_counts_per_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.jsonl", &healthy());
    let mut with_jam = healthy();
    // After the 30 s tag and line events.
    let at = with_jam
        .iter()
        .position(|l| l.contains(&t(31.0)))
        .expect("tick 31");
    with_jam.insert(at, jam(30.0));
    let b = write(dir.path(), "b.jsonl", &with_jam);
    let o = diff(&a, &b, &[]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(
        out.contains(&format!(
            "@ {}\n  + jam line1/eye_transfer (B:{}) ",
            t(30.0),
            at + 1
        )),
        "{out}"
    );
    assert!(
        out.contains("jam                 1        0        0"),
        "{out}"
    );
    assert!(
        out.contains("1 difference (1 added, 0 removed, 0 changed)"),
        "{out}"
    );
    // Only jams asked for: the same difference; only residuals: none.
    assert_eq!(diff(&a, &b, &["--types", "jam"]).status.code(), Some(1));
    assert_eq!(
        diff(&a, &b, &["--types", "residual,line"]).status.code(),
        Some(0)
    );
}

#[test]
fn diff_reports_a_removed_residual() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.jsonl", &healthy());
    let without: Vec<String> = healthy()
        .into_iter()
        .filter(|l| !l.contains("\"residual\""))
        .collect();
    let b = write(dir.path(), "b.jsonl", &without);
    let o = diff(&a, &b, &["--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["diff"], "removed");
    assert_eq!(lines[0]["type"], "residual");
    assert_eq!(lines[0]["key"], "line1/eye_exit");
    assert_eq!(lines[0]["t"], t(20.0));
    assert_eq!(lines[0]["line_a"], 43);
    assert_eq!(lines[0]["a"]["residual"], "missing");
    assert_eq!(lines[1]["diff"], "summary");
    assert_eq!(lines[1]["identical"], false);
    assert_eq!(lines[1]["types"]["residual"]["removed"], 1);
}

#[test]
fn diff_reports_a_changed_value_beyond_the_tolerance_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.jsonl", &healthy());
    let changed: Vec<String> = healthy()
        .into_iter()
        .map(|l| {
            if l.contains(&t(10.0)) {
                l.replace("\"wip\":17", "\"wip\":18")
            } else {
                l
            }
        })
        .collect();
    let b = write(dir.path(), "b.jsonl", &changed);
    let o = diff(&a, &b, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("  ~ line line1 (A:22, B:22) wip: 17 -> 18"),
        "{}",
        stdout(&o)
    );
    assert_eq!(diff(&a, &b, &["--tolerance", "1"]).status.code(), Some(0));
    assert_eq!(diff(&a, &b, &["--tolerance", "0.5"]).status.code(), Some(1));
}

#[test]
fn diff_refuses_out_of_order_input_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.jsonl", &healthy());
    let mut shuffled = healthy();
    shuffled.swap(4, 10);
    let b = write(dir.path(), "b.jsonl", &shuffled);
    let o = diff(&a, &b, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{}:6: out of time order", b.display())),
        "{err}"
    );
}

#[test]
fn diff_refuses_garbage_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.jsonl", &healthy());
    type Spoil = Box<dyn Fn(&mut Vec<String>)>;
    let cases: [(&str, Spoil, &str); 3] = [
        (
            "not-json",
            Box::new(|v| v[5] = "this is not JSON".into()),
            ":6: not valid JSON",
        ),
        (
            "no-t",
            Box::new(|v| v[7] = r#"{"v":1,"type":"tag","tag":"x"}"#.into()),
            ":8: missing `t`",
        ),
        (
            "truncated",
            Box::new(|v| v.truncate(3)),
            ":3: the last line is cut off",
        ),
    ];
    for (name, spoil, expected) in cases {
        let mut lines = healthy();
        spoil(&mut lines);
        let b = write(dir.path(), name, &lines);
        if name == "truncated" {
            let text = std::fs::read_to_string(&b).expect("read");
            std::fs::write(&b, &text[..text.len() - 20]).expect("cut");
        }
        let o = diff(&a, &b, &[]);
        assert_eq!(o.status.code(), Some(2), "{name}");
        let err = stderr(&o);
        assert!(
            err.contains(&format!("{}{expected}", b.display())),
            "{name}: {err}"
        );
    }
    let missing = dir.path().join("nope.jsonl");
    let o = diff(&a, &missing, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("nope.jsonl: cannot read"),
        "{}",
        stderr(&o)
    );
    let o = diff(&a, &a, &["--types", "residuals"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("did you mean `residual`?"),
        "{}",
        stderr(&o)
    );
}

fn venv_python() -> PathBuf {
    let py = root().join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: the JUnit schema check runs lxml from the project venv; run `bash scripts/setup.sh`",
        py.display()
    );
    py
}

/// Validate `xml` against the vendored Jenkins schema; the validator's output.
fn validate_junit(xml: &Path) -> (bool, String) {
    let o = Command::new(venv_python())
        .arg(root().join("tests/peers/junit_validate.py"))
        .arg(root().join("tests/peers/junit-10.xsd"))
        .arg(xml)
        .output()
        .expect("run the validator");
    (o.status.success(), format!("{}{}", stdout(&o), stderr(&o)))
}

fn expect(file: &Path, events: &Path, junit: Option<&Path>) -> Output {
    let mut c = twin();
    c.arg("expect").arg(file).arg(events);
    if let Some(j) = junit {
        c.arg("--junit").arg(j);
    }
    c.output().expect("run twin expect")
}

#[test]
fn expect_passes_and_its_junit_validates_against_the_jenkins_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = healthy();
    lines.push(jam(39.5));
    let events = write(dir.path(), "e.jsonl", &lines);
    let file = dir.path().join("x.toml");
    std::fs::write(
        &file,
        r#"
[[event]]
type = "jam"
between = ["eye_transfer", "eye_exit"]
from = "30s"
[[tag]]
tag = "infeed.speed"
min = 0.59
max = 0.61
[[line]]
line = "line1"
wip_max = 20
"#,
    )
    .expect("write");
    let xml = dir.path().join("out.xml");
    let o = expect(&file, &events, Some(&xml));
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("x: 3 assertions, 3 passed, 0 failed (82 events)"),
        "{}",
        stdout(&o)
    );
    let text = std::fs::read_to_string(&xml).expect("junit written");
    assert!(text.contains("tests=\"3\" failures=\"0\""), "{text}");
    let (valid, why) = validate_junit(&xml);
    assert!(valid, "{why}\n{text}");
}

#[test]
fn expect_failure_names_the_assertion_and_first_offending_event_in_valid_junit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = healthy();
    // A tag whose name needs escaping in XML, in the offending line.
    lines[30] = tag(15.0, "infeed.speed", "0.9").replace("\"m/s\"", "\"<&\\\"'\\u0001>\"");
    let events = write(dir.path(), "e.jsonl", &lines);
    let file = dir.path().join("x.toml");
    std::fs::write(
        &file,
        "[suite]\nname = \"line <1> & \\\"friends\\\"\"\n\
         [[event]]\nname = \"no residual <ever> & \\u0001\"\ntype = \"residual\"\nhappens = false\n\
         [[tag]]\ntag = \"infeed.speed\"\nmax = 0.7\n",
    )
    .expect("write");
    let xml = dir.path().join("out.xml");
    let o = expect(&file, &events, Some(&xml));
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(
        out.contains("FAIL  no residual <ever> & \u{1}: expected no residual events, found 1"),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "      first offending event, line 43: {}",
            residual(20.0, "eye_exit")
        )),
        "{out}"
    );
    assert!(
        out.contains("infeed.speed value 0.9 is above max 0.7"),
        "{out}"
    );
    assert!(
        out.contains("      first offending event, line 31: "),
        "{out}"
    );
    let text = std::fs::read_to_string(&xml).expect("junit written");
    assert!(text.contains("failures=\"2\""), "{text}");
    assert!(
        text.contains("name=\"line &lt;1&gt; &amp; &quot;friends&quot;\""),
        "{text}"
    );
    assert!(text.contains("first offending event, line 43:"), "{text}");
    let (valid, why) = validate_junit(&xml);
    assert!(valid, "{why}\n{text}");
}

#[test]
fn the_junit_schema_check_rejects_a_report_the_ci_could_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.xml");
    std::fs::write(
        &bad,
        "<?xml version=\"1.0\"?>\n<testsuite name=\"s\"><testcase name=\"a\"/></testsuite>\n",
    )
    .expect("write");
    let (valid, why) = validate_junit(&bad);
    assert!(
        !valid,
        "a testsuite without tests/failures/errors must not validate: {why}"
    );
}

#[test]
fn expect_refuses_an_invalid_file_with_located_errors_and_exit_78() {
    let dir = tempfile::tempdir().expect("tempdir");
    let events = write(dir.path(), "e.jsonl", &healthy());
    let file = dir.path().join("x.toml");
    std::fs::write(
        &file,
        "[[event]]\ntype = \"jam\"\nfrom = \"10s\"\ntoo = \"40s\"\n[[tagg]]\n",
    )
    .expect("write");
    let o = expect(&file, &events, None);
    assert_eq!(o.status.code(), Some(78));
    let err = stderr(&o);
    assert!(err.contains(&format!("{}:4:1", file.display())), "{err}");
    assert!(
        err.contains("key: event[0].too") && err.contains("did you mean `to`?"),
        "{err}"
    );
    assert!(
        err.contains("key: tagg") && err.contains("did you mean `tag`?"),
        "{err}"
    );
    assert!(err.contains("2 errors"), "{err}");
}

#[test]
fn expect_refuses_a_broken_event_stream_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut lines = healthy();
    lines[2] = "{\"v\":1".into();
    let events = write(dir.path(), "e.jsonl", &lines);
    let file = dir.path().join("x.toml");
    std::fs::write(&file, "[[event]]\ntype = \"jam\"\nhappens = false\n").expect("write");
    let o = expect(&file, &events, None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("{}:3: not valid JSON", events.display())),
        "{}",
        stderr(&o)
    );
}

#[test]
fn shipped_expectations_are_valid() {
    for entry in std::fs::read_dir(root().join("plant-configs/expectations")).expect("the folder") {
        let path = entry.expect("entry").path();
        if let Err(r) = twin::qa::Expectations::load(&path) {
            panic!("{r}");
        }
    }
    let e =
        twin::qa::Expectations::load(&root().join("plant-configs/expectations/transfer_jam.toml"))
            .unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(e.suite, "transfer_jam");
    assert_eq!(e.len(), 7);
}

#[test]
fn diff_and_expect_exit_2_not_a_verdict_when_stdout_is_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write(dir.path(), "a.jsonl", &healthy());
    let file = dir.path().join("x.toml");
    std::fs::write(&file, "[[event]]\ntype = \"jam\"\nhappens = false\n").expect("write");
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("open /dev/full")
    };
    let a_str = a.to_str().expect("utf-8");
    for args in [
        vec!["diff", a_str, a_str],
        vec!["expect", file.to_str().expect("utf-8"), a_str],
    ] {
        let o = twin()
            .args(&args)
            .stdout(full())
            .output()
            .expect("run twin");
        assert_eq!(o.status.code(), Some(2), "twin {args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("cannot write the output"),
            "{}",
            stderr(&o)
        );
    }
}

/// The shipped example holds on the scenario it describes: `transfer_jam`
/// on the demo line, run through the core (tests/it/faults.rs, no network,
/// no clock), each event encoded as the stream writes it and fed to the
/// checker line by line, as `twin replay --expect` will.
#[test]
fn the_shipped_transfer_jam_expectations_hold_on_the_scenario_fed_line_by_line() {
    let cfg = twin::config::load_file(&root().join("plant-configs/packaging-line.toml"))
        .unwrap_or_else(|r| panic!("{r}"));
    let scenario = twin::sim::scenario::load_file(
        &root().join("plant-configs/scenarios/transfer_jam.toml"),
        &cfg,
    )
    .unwrap_or_else(|r| panic!("{r}"));
    let events = crate::faults::run_through_core(&cfg, Some(&scenario), 1, 100);
    let meta = twin::runtime::Driver::new(&cfg, 0).core().meta().clone();
    let mut lines = Vec::new();
    for e in &events {
        let mut buf = Vec::new();
        e.write_json_line(&meta, &mut buf);
        lines.push(buf);
    }
    let expectations =
        twin::qa::Expectations::load(&root().join("plant-configs/expectations/transfer_jam.toml"))
            .unwrap_or_else(|r| panic!("{r}"));
    let check = |lines: &mut dyn Iterator<Item = &Vec<u8>>| {
        let mut c = expectations.checker();
        for l in lines {
            c.feed(l).expect("the core writes valid lines");
        }
        c.finish()
    };
    let report = check(&mut lines.iter());
    assert!(report.passed(), "{}", report.render());
    assert_eq!(report.events, events.len() as u64);
    // Without its jam event, the same run fails that assertion only.
    let report = check(
        &mut lines
            .iter()
            .filter(|l| !l.starts_with(br#"{"v":1,"type":"jam""#)),
    );
    let failed: Vec<&str> = report
        .outcomes
        .iter()
        .filter(|o| !o.passed())
        .map(|o| o.name.as_str())
        .collect();
    assert_eq!(
        failed,
        ["the jam is found between eye_transfer and eye_exit"]
    );
}

/// A recording given to `twin expect` or `twin diff` in place of its event
/// stream is named as one, with what to run instead; it used to be
/// "line 1: not valid JSON".
#[test]
fn r_hostile_a_recording_given_as_an_event_stream_is_named_as_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("shift.mcap");
    std::fs::write(&rec, b"\x89MCAP0\r\n\x01\x02 not json").expect("write");
    let expect = dir.path().join("e.toml");
    std::fs::write(&expect, "[[event]]\ntype = \"jam\"\nhappens = false\n").expect("write");
    let events = write(dir.path(), "a.jsonl", &healthy());
    let (rec_s, expect_s, events_s) = (
        rec.to_string_lossy().into_owned(),
        expect.to_string_lossy().into_owned(),
        events.to_string_lossy().into_owned(),
    );
    for args in [
        vec!["expect", expect_s.as_str(), rec_s.as_str()],
        vec!["diff", events_s.as_str(), rec_s.as_str()],
    ] {
        let o = run(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("shift.mcap")
                && err.contains("MCAP recording")
                && err.contains("twin replay"),
            "{args:?}: {err}"
        );
    }
}
