//! `twin audit` over a real audit log (issue 12, docs/audit.md): `verify`
//! on an intact and on broken chains (exit 65, the line named), the query
//! filters, CSV, a stdout reader that goes away, and the Python re-check
//! script from docs/audit.md agreeing with the twin on every case.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use twin::guard::audit::{Actor, AuditLog, Decision, Input, Record};
use twin::twin::sample::Quality;

use crate::util::*;

const T0: i64 = 1_764_950_400_000_000_000; // 2025-12-05T16:00:00Z
const S: i64 = 1_000_000_000;

/// A log of 8 entries: opened, then written / blocked / approved / clamped
/// by a model and an operator on two tags, 1 s apart.
fn sample_log(dir: &Path) -> PathBuf {
    let path = dir.join("audit.jsonl");
    let mut log = AuditLog::open(&path, T0).expect("open");
    let model = Actor::Model {
        id: "belt_opt".into(),
        sha256: "ab".repeat(32),
    };
    let ana = Actor::Operator { name: "ana".into() };
    let steps = [
        (model.clone(), "line1.belt_speed", Decision::Proposed),
        (model.clone(), "line1.belt_speed", Decision::Written),
        (model.clone(), "line1.belt_speed", Decision::Blocked),
        (ana.clone(), "line2.filler_cycle", Decision::Approved),
        (ana.clone(), "line2.filler_cycle", Decision::Written),
        (model.clone(), "line2.filler_cycle", Decision::Clamped),
        (Actor::System, "line1.belt_speed", Decision::Locked),
    ];
    for (i, (actor, tag, decision)) in steps.into_iter().enumerate() {
        let mut r = Record::new(
            T0 + (i as i64 + 1) * S,
            actor,
            tag,
            decision,
            format!("step {}, with a \"quote\", and a comma", i + 1),
        );
        r.old = Some(0.5);
        r.requested = Some(0.5 + i as f64 / 100.0);
        if decision == Decision::Blocked {
            r.rule = Some("max_step".into());
        }
        r.inputs = vec![Input {
            tag: "line1.count".into(),
            age_ms: 100 + i as u64,
            quality: Quality::Good,
        }];
        if decision == Decision::Written {
            r.written = r.requested;
            r.forecast = Some(serde_json::json!({"lost": 0, "horizon_s": 30}));
        }
        log.append(&r).expect("append");
    }
    path
}

fn audit(args: &[&str]) -> Output {
    twin()
        .arg("audit")
        .args(args)
        .output()
        .expect("run twin audit")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn file_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read log")
        .lines()
        .map(str::to_string)
        .collect()
}

fn rewrite(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").expect("write log");
}

/// The re-check script, exactly as docs/audit.md shows it.
fn python_check(dir: &Path, log: &Path) -> Output {
    let doc = std::fs::read_to_string(root().join("docs/audit.md")).expect("docs/audit.md");
    let script = doc
        .split_once("<!-- audit-verify.py -->\n```python\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .map(|(s, _)| s)
        .expect("the script's python block in docs/audit.md");
    assert!(
        script.lines().count() <= 25,
        "the documented script stays short"
    );
    let file = dir.join("audit-verify.py");
    std::fs::write(&file, script).expect("write script");
    let py = root().join(".venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run `make setup` (scripts/setup.sh) to create the project venv",
        py.display()
    );
    std::process::Command::new(py)
        .arg(&file)
        .arg(log)
        .output()
        .expect("run the venv's python")
}

#[test]
fn r12_verify_reports_an_intact_chain_and_python_agrees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sample_log(dir.path());
    let out = audit(&["verify", log.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    assert!(
        summary.starts_with(
            "8 entries, chain intact, last seq 8 at 2025-12-05T16:00:07.000000000Z, head "
        ),
        "{summary}"
    );
    assert_eq!(summary.lines().count(), 1, "{summary}");
    let head = summary.trim_end().rsplit(' ').next().expect("head");

    let py = python_check(dir.path(), &log);
    assert!(py.status.success(), "{}", text(&py.stderr));
    assert_eq!(
        text(&py.stdout).trim(),
        format!("8 entries, chain intact, head {head}, 0 torn bytes"),
        "the documented script computes the same chain"
    );
}

#[test]
fn r12_verify_names_the_broken_line_with_exit_65_and_python_agrees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sample_log(dir.path());
    let path = log.to_str().expect("utf-8 path");
    let intact = file_lines(&log);

    // One changed byte on line 3, a removed line 5, a line rehashed after a
    // change: each named, by the twin and by the script.
    let mut changed = intact.clone();
    changed[2] = changed[2].replacen("step 2", "step 9", 1);
    let mut removed = intact.clone();
    removed.remove(4);
    let mut rehashed = intact.clone();
    let at = rehashed[5].rfind(",\"hash\":\"").expect("hash member");
    let body = rehashed[5][..at].replacen("step 5", "step 0", 1);
    let hash = twin::guard::audit::sha256_hex(format!("{body}}}").as_bytes());
    rehashed[5] = format!("{body},\"hash\":\"{hash}\"}}");
    let mut garbled = intact.clone();
    garbled[3] = garbled[3].replacen(':', ";", 1);

    let cases = [
        (changed, 3, "seq 3: hash mismatch", "line 3: hash mismatch"),
        (removed, 5, "seq 6: seq gap", "line 5: seq gap"),
        (rehashed, 7, "seq 7: prev mismatch", "line 7: prev mismatch"),
        (garbled, 4, "unparsable", "line 4: unparsable"),
    ];
    for (lines, line, ours, python) in cases {
        rewrite(&log, &lines);
        let out = audit(&["verify", path]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(65), "{stderr}");
        assert!(
            stderr.contains(&format!("audit.jsonl:{line}: {ours}")),
            "expected line {line}, {ours}: {stderr}"
        );
        assert!(stderr.contains("twin audit verify"), "says what to do");
        assert!(out.stdout.is_empty());

        let py = python_check(dir.path(), &log);
        assert_eq!(py.status.code(), Some(1));
        assert_eq!(
            text(&py.stderr).trim(),
            python.to_string() + py_detail(python)
        );
    }
}

/// The rest of the script's message after its line and check.
fn py_detail(check: &str) -> &'static str {
    if check.ends_with("seq gap") {
        ": expected 5, found 6"
    } else {
        ""
    }
}

#[test]
fn r12_queries_filter_by_tag_actor_decision_and_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sample_log(dir.path());
    let path = log.to_str().expect("utf-8 path");
    let all = file_lines(&log);
    let query = |args: &[&str]| -> Vec<String> {
        let mut a = vec![path];
        a.extend_from_slice(args);
        let out = audit(&a);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout).lines().map(str::to_string).collect()
    };
    let seqs = |lines: Vec<String>| -> Vec<u64> {
        lines
            .iter()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
                v["seq"].as_u64().expect("seq")
            })
            .collect()
    };
    assert_eq!(query(&[]), all, "the lines exactly as the file holds them");
    assert_eq!(seqs(query(&["--tag", "line2.filler_cycle"])), [5, 6, 7]);
    assert_eq!(seqs(query(&["--actor", "ana"])), [5, 6]);
    assert_eq!(
        seqs(query(&["--actor", "model:belt_opt,system"])),
        [1, 2, 3, 4, 7, 8]
    );
    assert_eq!(seqs(query(&["--decision", "written,blocked"])), [3, 4, 6]);
    assert_eq!(
        seqs(query(&[
            "--since",
            "2025-12-05T16:00:02Z",
            "--until",
            "2025-12-05T16:00:05Z"
        ])),
        [3, 4, 5]
    );
    assert_eq!(
        seqs(query(&[
            "--tag",
            "line1.belt_speed",
            "--decision",
            "written"
        ])),
        [3]
    );
    assert!(query(&["--tag", "nope"]).is_empty());

    let out = audit(&[path, "--decision", "writen"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("did you mean `written`?"),
        "{}",
        text(&out.stderr)
    );
    let out = audit(&[path, "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("RFC 3339"));
}

#[test]
fn r12_csv_has_a_header_and_one_row_per_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sample_log(dir.path());
    let out = audit(&[
        log.to_str().expect("utf-8 path"),
        "--csv",
        "--tag",
        "line1.belt_speed",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut r = csv::Reader::from_reader(&out.stdout[..]);
    let header: Vec<String> = r
        .headers()
        .expect("header")
        .iter()
        .map(str::to_string)
        .collect();
    assert_eq!(
        header,
        [
            "seq",
            "t",
            "actor_kind",
            "actor",
            "model_sha256",
            "tag",
            "decision",
            "rule",
            "reason",
            "old",
            "requested",
            "written",
            "inputs",
            "forecast",
            "prev",
            "hash"
        ]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(|x| x.expect("row")).collect();
    assert_eq!(rows.len(), 4, "seq 2, 3, 4, 8");
    let blocked = &rows[2];
    assert_eq!(&blocked[0], "4");
    assert_eq!(&blocked[1], "2025-12-05T16:00:03.000000000Z");
    assert_eq!((&blocked[2], &blocked[3]), ("model", "belt_opt"));
    assert_eq!(&blocked[6], "blocked");
    assert_eq!(&blocked[7], "max_step");
    assert_eq!(&blocked[8], "step 3, with a \"quote\", and a comma");
    assert_eq!(
        (&blocked[9], &blocked[10], &blocked[11]),
        ("0.5", "0.52", "")
    );
    let inputs: serde_json::Value = serde_json::from_str(&blocked[12]).expect("inputs JSON");
    assert_eq!(inputs[0]["age_ms"], 102);
    let written = &rows[1];
    let forecast: serde_json::Value = serde_json::from_str(&written[13]).expect("forecast");
    assert_eq!(forecast["horizon_s"], 30);
    assert_eq!((&rows[3][2], &rows[3][6]), ("system", "locked"));
}

#[test]
fn r12_a_query_stops_at_a_broken_line_and_a_closed_stdout_is_no_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sample_log(dir.path());
    let path = log.to_str().expect("utf-8 path");

    // The reader of `twin audit FILE | head -0` is gone before the first
    // write: exit 0, no panic.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = twin()
        .args(["audit", path])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run twin audit");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let mut lines = file_lines(&log);
    lines[5] = lines[5].replacen("step", "stop", 1);
    rewrite(&log, &lines);
    let out = audit(&[path]);
    assert_eq!(out.status.code(), Some(65));
    assert_eq!(
        text(&out.stdout),
        lines[..5].join("\n") + "\n",
        "entries before the break"
    );
    assert!(text(&out.stderr).contains("audit.jsonl:6: seq 6: hash mismatch"));

    let out = audit(&[
        "verify",
        dir.path().join("missing.jsonl").to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("missing.jsonl"));
}

#[test]
fn r12_a_torn_tail_verifies_with_a_note_and_open_repairs_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = sample_log(dir.path());
    let path = log.to_str().expect("utf-8 path");
    let mut bytes = std::fs::read(&log).expect("read");
    bytes.extend_from_slice(b"{\"v\":1,\"seq\":9,\"t\":\"20");
    std::fs::write(&log, &bytes).expect("write torn tail");

    let out = audit(&["verify", path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("the last line is torn (22 bytes"));
    let py = python_check(dir.path(), &log);
    assert!(
        text(&py.stdout).ends_with(", 22 torn bytes\n"),
        "{}",
        text(&py.stdout)
    );

    drop(AuditLog::open(&log, T0 + 60 * S).expect("reopen repairs"));
    let out = audit(&[path, "--decision", "opened"]);
    let opened = text(&out.stdout);
    assert_eq!(opened.lines().count(), 2, "{opened}");
    assert!(opened.contains("torn last line of 22 bytes"), "{opened}");
    let out = audit(&["verify", path]);
    assert!(text(&out.stdout).starts_with("9 entries, chain intact"));
}

/// Set in the copy of this test binary that the crash test starts and kills:
/// the path of the log it appends to.
const CRASH_CHILD: &str = "TWIN_AUDIT_CRASH_CHILD";

/// Kills the child if the test fails before it does.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// kill -9 during a stream of appends, three times over one log: every entry
/// whose append returned (the child says so on stdout only then) is in the
/// log, the chain verifies, and each restart is an `opened` entry. The
/// child is this test binary running this same test, with CRASH_CHILD set:
/// real appends in a real process, no helper binary. (The guard's own test,
/// against the device's write log, comes with the guard: docs/audit.md,
/// "Testing crashes".)
#[test]
fn r12_kill_9_during_appends_loses_no_acknowledged_entry() {
    if let Some(path) = std::env::var_os(CRASH_CHILD) {
        return append_until_killed(Path::new(&path));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    let mut acked = Vec::new();
    for round in 0..3 {
        let mut child = Reap(
            std::process::Command::new(std::env::current_exe().expect("test binary"))
                .args([
                    "--exact",
                    "audit::r12_kill_9_during_appends_loses_no_acknowledged_entry",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(CRASH_CHILD, &log)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the child"),
        );
        let out = child.0.stdout.take().expect("stdout piped");
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(out));
        let mut this_round = 0;
        for line in lines.by_ref() {
            let line = line.expect("child stdout");
            if let Some(seq) = ack(&line) {
                acked.push(seq);
                this_round += 1;
                if this_round == 40 {
                    break;
                }
            }
        }
        assert_eq!(this_round, 40, "round {round}: the child stopped early");
        // SIGKILL on Unix: no destructor, no flush, mid-append or not.
        child.0.kill().expect("kill -9");
        let _ = child.0.wait();
        // Acknowledgements already in the pipe count too.
        for line in lines {
            if let Some(seq) = line.ok().as_deref().and_then(ack) {
                acked.push(seq);
            }
        }
    }
    drop(AuditLog::open(&log, T0).expect("the log opens after the kills"));
    let mut r = twin::guard::audit::AuditReader::open(&log).expect("read");
    let mut seqs = Vec::new();
    let mut opened = 0;
    while let Some(e) = r.next_entry().expect("the chain verifies") {
        if e.decision == Decision::Opened {
            opened += 1;
        } else {
            seqs.push(e.seq);
        }
    }
    assert_eq!(opened, 4, "one per child, one for the final open");
    for seq in &acked {
        assert!(seqs.contains(seq), "acknowledged entry {seq} is lost");
    }
    // At most the one append in flight at each kill is in the log without
    // its acknowledgement (written, not yet synced or acknowledged).
    assert!(
        seqs.len() - acked.len() <= 3,
        "{} vs {}",
        seqs.len(),
        acked.len()
    );
    let out = audit(&["verify", log.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// The seq in a child's `acked SEQ`. The first one shares its line with
/// libtest's `test NAME ... `, printed before the test runs.
fn ack(line: &str) -> Option<u64> {
    let (_, seq) = line.rsplit_once("acked ")?;
    Some(seq.trim().parse().expect("an acknowledged seq"))
}

/// The child's side: append `written` entries until killed, saying
/// `acked SEQ` on stdout after each append returns.
fn append_until_killed(path: &Path) {
    use std::io::Write;
    let mut log = AuditLog::open(path, T0).expect("child opens the log");
    let mut out = std::io::stdout().lock();
    // Bounded, in case the parent is gone without killing us.
    for i in 0..100_000 {
        let mut r = Record::new(
            T0 + i * S,
            Actor::System,
            "line1.belt_speed",
            Decision::Written,
            "crash test",
        );
        r.written = Some(i as f64);
        let a = log.append(&r).expect("append");
        if writeln!(out, "acked {}", a.seq)
            .and_then(|()| out.flush())
            .is_err()
        {
            return;
        }
    }
}

/// An empty file is not an intact log: twin starts every log with its
/// `opened` entry, so a file with no entry was emptied (or is not a log).
/// `verify` used to print "0 entries, chain intact" for it.
#[test]
fn r12_an_empty_audit_log_does_not_verify() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.jsonl");
    std::fs::write(&log, "").expect("write empty log");
    let out = audit(&["verify", log.to_str().expect("utf-8 path")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("audit.jsonl:1: empty"), "{stderr}");
    assert!(out.stdout.is_empty());
    let py = python_check(dir.path(), &log);
    assert_eq!(py.status.code(), Some(1));
    assert_eq!(text(&py.stderr).trim(), "line 1: empty");
}
