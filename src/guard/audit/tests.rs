//! The audit log's own tests: the chain across reopens, every check naming
//! the line it fails on, torn-line recovery, readers beside a writer.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;
use crate::twin::sample::Quality;

const T0: i64 = 1_764_950_400_000_000_000; // 2025-12-05T16:00:00Z

fn temp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("audit.jsonl");
    (dir, path)
}

fn model() -> Actor {
    Actor::Model {
        id: "belt_opt".into(),
        sha256: "ab".repeat(32),
    }
}

fn written(i: i64) -> Record {
    let mut r = Record::new(
        T0 + i * 1_000_000_000,
        model(),
        "line1.belt_speed",
        Decision::Written,
        "within bounds",
    );
    r.old = Some(0.5);
    r.requested = Some(0.5 + i as f64 / 100.0);
    r.written = r.requested;
    r.inputs = vec![Input {
        tag: "line1.count".into(),
        age_ms: 120,
        quality: Quality::Good,
    }];
    r
}

/// A log with its `opened` entry and `n` written entries.
fn log_with(path: &Path, n: i64) {
    let mut log = AuditLog::open(path, T0).expect("open");
    for i in 1..=n {
        log.append(&written(i)).expect("append");
    }
}

fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .expect("read log")
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).expect("write log");
}

fn broken(r: Result<VerifyReport, AuditError>) -> (u64, Problem, String) {
    match r {
        Err(e) => {
            let msg = e.to_string();
            let (line, p) = e.broken().expect("a broken-chain error");
            (line, p.clone(), msg)
        }
        Ok(r) => panic!("expected a broken chain, verified: {}", r.summary()),
    }
}

#[test]
fn reopening_continues_the_seq_and_the_chain() {
    let (_d, path) = temp();
    log_with(&path, 3);
    let mut log = AuditLog::open(&path, T0 + 10).expect("reopen");
    assert_eq!(log.seq(), 5, "opened, 3 written, opened again");
    let a = log.append(&written(4)).expect("append");
    assert_eq!(a.seq, 6);
    let head = log.head().to_string();
    drop(log);

    let report = verify(&path).expect("chain intact");
    assert_eq!(report.entries, 6);
    assert_eq!(report.head, head);
    let last = report.last.expect("last entry");
    assert_eq!((last.seq, last.hash.as_str()), (6, a.hash.as_str()));
    let mut r = AuditReader::open(&path).expect("read");
    let mut decisions = Vec::new();
    while let Some(e) = r.next_entry().expect("entry") {
        decisions.push((e.decision, e.reason.clone()));
    }
    assert_eq!(decisions[0], (Decision::Opened, "log created".to_string()));
    assert_eq!(
        decisions[4],
        (Decision::Opened, "reopened after seq 4".to_string())
    );
    assert_eq!(decisions[5].0, Decision::Written);
}

#[test]
fn the_hash_is_the_line_without_its_hash_member_and_prev_the_line_before() {
    let (_d, path) = temp();
    log_with(&path, 2);
    let lines = lines(&path);
    let mut prev = GENESIS.to_string();
    for (i, line) in lines.iter().enumerate() {
        // The documented rule, done with plain string operations.
        let at = line.rfind(",\"hash\":\"").expect("hash member");
        let body = format!("{}}}", &line[..at]);
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(v["hash"], sha256_hex(body.as_bytes()), "line {}", i + 1);
        assert_eq!(v["prev"], prev.as_str(), "line {}", i + 1);
        assert_eq!(v["seq"], i as u64 + 1);
        assert!(line.ends_with("\"}"), "hash is the last member: {line}");
        prev = sha256_hex(line.as_bytes());
    }
    let v: serde_json::Value = serde_json::from_str(&lines[1]).expect("JSON");
    assert_eq!(v["t"], "2025-12-05T16:00:01.000000000Z");
    assert_eq!(v["actor"]["kind"], "model");
    assert_eq!(v["inputs"][0]["quality"], "good");
    assert_eq!(v["v"], 1);
}

#[test]
fn one_changed_byte_in_the_middle_is_named_by_line() {
    let (_d, path) = temp();
    log_with(&path, 5);
    let mut l = lines(&path);
    l[2] = l[2].replacen("within bounds", "within bounde", 1);
    write_lines(&path, &l);
    let (line, problem, msg) = broken(verify(&path));
    assert_eq!(line, 3);
    assert!(matches!(problem, Problem::HashMismatch { .. }), "{problem}");
    assert!(msg.contains("audit.jsonl:3: seq 3: hash mismatch"), "{msg}");
    assert!(msg.contains("start a new audit log file"), "{msg}");
}

#[test]
fn a_deleted_line_is_a_seq_gap_at_the_line_after() {
    let (_d, path) = temp();
    log_with(&path, 5);
    let mut l = lines(&path);
    l.remove(3);
    write_lines(&path, &l);
    let (line, problem, _) = broken(verify(&path));
    assert_eq!(line, 4);
    assert_eq!(
        problem,
        Problem::SeqGap {
            expected: 4,
            found: 5
        }
    );
}

#[test]
fn a_changed_line_with_its_hash_recomputed_breaks_the_next_link() {
    let (_d, path) = temp();
    log_with(&path, 5);
    let mut l = lines(&path);
    let at = l[2].rfind(",\"hash\":\"").expect("hash member");
    let body = l[2][..at].replacen("within bounds", "forged reason", 1);
    let hash = sha256_hex(format!("{body}}}").as_bytes());
    l[2] = format!("{body},\"hash\":\"{hash}\"}}");
    write_lines(&path, &l);
    let (line, problem, msg) = broken(verify(&path));
    assert_eq!(line, 4, "{msg}");
    assert!(matches!(problem, Problem::PrevMismatch { .. }), "{problem}");
}

#[test]
fn a_line_that_is_not_json_is_unparsable_and_open_refuses_a_broken_end() {
    let (_d, path) = temp();
    log_with(&path, 3);
    let mut l = lines(&path);
    l[3] = l[3].replacen('{', "[", 1);
    write_lines(&path, &l);
    let (line, problem, _) = broken(verify(&path));
    assert_eq!(line, 4);
    assert!(matches!(problem, Problem::Unparsable(_)), "{problem}");

    let before = fs::read(&path).expect("read");
    let err = AuditLog::open(&path, T0).expect_err("a broken last line is refused");
    assert_eq!(err.broken().map(|(l, _)| l), Some(4), "{err}");
    assert_eq!(fs::read(&path).expect("read"), before, "nothing rewritten");
}

#[test]
fn open_checks_the_link_between_the_last_two_lines() {
    let (_d, path) = temp();
    log_with(&path, 4);
    let mut l = lines(&path);
    l.remove(3);
    write_lines(&path, &l);
    let err = AuditLog::open(&path, T0).expect_err("a gap at the end is refused");
    let (line, problem) = err.broken().expect("located");
    assert_eq!(line, 4);
    assert!(matches!(problem, Problem::SeqGap { .. }), "{problem}");
}

#[test]
fn a_torn_last_line_is_cut_off_and_recorded() {
    let (_d, path) = temp();
    log_with(&path, 2);
    let whole = fs::read(&path).expect("read");
    // The start of the next entry's line, as a crash mid-write leaves it.
    let second = lines(&path)[1].clone();
    let torn = &second.as_bytes()[..40];
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(torn))
        .expect("write torn line");

    let report = verify(&path).expect("a torn tail is not a broken chain");
    assert_eq!((report.entries, report.torn_bytes), (3, 40));
    assert!(
        report.summary().contains("torn (40 bytes"),
        "{}",
        report.summary()
    );

    let log = AuditLog::open(&path, T0 + 5).expect("reopen repairs");
    assert_eq!(log.seq(), 4);
    drop(log);
    let after = fs::read(&path).expect("read");
    assert_eq!(&after[..whole.len()], &whole[..], "whole entries untouched");
    let report = verify(&path).expect("chain intact after repair");
    assert_eq!((report.entries, report.torn_bytes), (4, 0));
    let last = report.last.expect("opened entry");
    assert_eq!(last.decision, Decision::Opened);
    assert_eq!(last.actor, Actor::System);
    assert!(
        last.reason.contains("torn last line of 40 bytes"),
        "{}",
        last.reason
    );
}

#[test]
fn a_zero_filled_tail_is_a_torn_line_too() {
    let (_d, path) = temp();
    log_with(&path, 1);
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(&[0u8; 512]))
        .expect("write zeros");
    let log = AuditLog::open(&path, T0).expect("reopen repairs");
    assert_eq!(log.seq(), 3);
    drop(log);
    assert_eq!(verify(&path).expect("intact").entries, 3);
}

#[test]
fn a_crash_during_the_first_append_leaves_a_log_that_opens() {
    let (_d, path) = temp();
    let torn = b"{\"v\":1,\"seq\":1,\"t\":\"2025";
    fs::write(&path, torn).expect("write");
    let log = AuditLog::open(&path, T0).expect("open repairs");
    assert_eq!(log.seq(), 1);
    drop(log);
    let r = verify(&path).expect("intact");
    let reason = r.last.expect("entry").reason;
    assert!(
        reason.contains(&format!("torn last line of {} bytes", torn.len())),
        "{reason}"
    );
}

#[test]
fn a_file_that_is_not_an_audit_log_is_refused_and_left_alone() {
    let (_d, path) = temp();
    for text in [
        &b"hello, world"[..],
        b"hello\nworld\n",
        b"\x89MCAP0\r\n\x01\x02",
    ] {
        fs::write(&path, text).expect("write");
        let err = AuditLog::open(&path, T0).expect_err("refused");
        assert!(err.broken().is_some(), "{err}");
        assert_eq!(fs::read(&path).expect("read"), text);
        assert!(verify(&path).is_err(), "verify refuses it too");
    }
}

#[test]
fn one_writer_at_a_time_and_readers_beside_it() {
    let (_d, path) = temp();
    let mut log = AuditLog::open(&path, T0).expect("open");
    let second = AuditLog::open(&path, T0).expect_err("a second writer is refused");
    assert!(matches!(second, AuditError::Locked { .. }), "{second}");

    let reader_path = path.clone();
    let reader = std::thread::spawn(move || {
        let mut seen = 0;
        let mut reads = 0;
        while seen < 201 {
            let r = verify(&reader_path).expect("a reader never sees a broken chain");
            assert!(r.entries >= seen, "entries never go back");
            seen = r.entries;
            reads += 1;
        }
        reads
    });
    for i in 1..=200 {
        log.append(&written(i)).expect("append");
    }
    let reads = reader.join().expect("reader thread");
    assert!(reads >= 1);
    drop(log);
    assert_eq!(verify(&path).expect("intact").entries, 201);
}

#[test]
fn non_finite_values_are_kept_and_bad_records_refused_without_a_gap() {
    let (_d, path) = temp();
    let mut log = AuditLog::open(&path, T0).expect("open");
    let mut nan = written(1);
    nan.decision = Decision::Blocked;
    nan.rule = Some("finite".into());
    nan.requested = Some(f64::NAN);
    nan.written = None;
    nan.forecast = Some(serde_json::json!({"lost": 0, "horizon_s": 30}));
    log.append(&nan).expect("append");

    let refused = [
        Record::new(T0, Actor::System, "", Decision::Blocked, "no tag"),
        Record::new(T0, Actor::System, "t", Decision::Opened, "ours"),
        Record::new(-1, Actor::System, "t", Decision::Reset, "before 1970"),
        Record {
            forecast: Some(serde_json::json!([1, 2])),
            ..Record::new(T0, Actor::System, "t", Decision::Reset, "array")
        },
    ];
    for r in &refused {
        let e = log.append(r).expect_err("refused");
        assert!(matches!(e, AuditError::Record { seq: 3, .. }), "{e}");
    }
    let ok = Record::new(
        T0,
        Actor::Operator { name: "ana".into() },
        "line1.belt_speed",
        Decision::Reset,
        "lock cleared",
    );
    assert_eq!(log.append(&ok).expect("append").seq, 3);
    drop(log);

    let text = fs::read_to_string(&path).expect("read");
    assert!(text.contains(r#""requested":"NaN""#), "{text}");
    let mut r = AuditReader::open(&path).expect("read");
    r.next_entry().expect("opened");
    let e = r.next_entry().expect("read").expect("entry");
    assert!(e.requested.expect("requested").0.is_nan());
    assert_eq!(e.rule.as_deref(), Some("finite"));
    assert_eq!(e.forecast.as_ref().expect("forecast")["lost"], 0);
    assert_eq!(csv_row(&e)[10], "NaN");
}

#[test]
fn filters_select_by_tag_actor_decision_and_time() {
    let (_d, path) = temp();
    let mut log = AuditLog::open(&path, T0).expect("open");
    log.append(&written(1)).expect("append");
    let mut op = written(2);
    op.actor = Actor::Operator {
        name: "belt_opt".into(),
    };
    op.tag = "line2.filler_cycle".into();
    op.decision = Decision::Approved;
    log.append(&op).expect("append");
    let mut b = written(3);
    b.decision = Decision::Blocked;
    log.append(&b).expect("append");
    drop(log);

    let select = |f: Filter| -> Vec<u64> {
        let mut r = AuditReader::open(&path).expect("read");
        let mut out = Vec::new();
        while let Some(e) = r.next_entry().expect("entry") {
            if f.matches(&e) {
                out.push(e.seq);
            }
        }
        out
    };
    let all = select(Filter::default());
    assert_eq!(all, [1, 2, 3, 4]);
    let tag = |t: &str| Filter {
        tags: vec![t.into()],
        ..Filter::default()
    };
    assert_eq!(select(tag("line1.belt_speed")), [2, 4]);
    let actor = |a: &str| Filter {
        actors: vec![a.into()],
        ..Filter::default()
    };
    assert_eq!(select(actor("belt_opt")), [2, 3, 4], "id or name");
    assert_eq!(select(actor("model:belt_opt")), [2, 4]);
    assert_eq!(select(actor("operator:belt_opt")), [3]);
    assert_eq!(select(actor("system")), [1]);
    let decision = Filter {
        decisions: vec![Decision::Blocked, Decision::Approved],
        ..Filter::default()
    };
    assert_eq!(select(decision), [3, 4]);
    let since = Filter {
        since_ns: Some(T0 + 2_000_000_000),
        until_ns: Some(T0 + 3_000_000_000),
        ..Filter::default()
    };
    assert_eq!(select(since), [3], "since inclusive, until exclusive");
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_an_error_from_append() {
    // /dev/full refuses every write with ENOSPC, as a full disk does.
    let err = AuditLog::open(Path::new("/dev/full"), T0).expect_err("no space");
    match err {
        AuditError::Append { seq: 1, source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "{source}")
        }
        e => panic!("expected an append error, got {e}"),
    }
}

#[test]
fn open_reads_only_the_ends_of_a_large_log_and_names_lines_there() {
    let (_d, path) = temp();
    let big = |i: i64| {
        let mut r = written(i);
        // Lines of ~40 KB: the last two lines reach past the first window
        // read from the end, and the first line is read on its own.
        r.forecast = Some(serde_json::json!({ "trace": "x".repeat(40_000) }));
        r
    };
    {
        let mut log = AuditLog::open(&path, T0).expect("open");
        for i in 1..=6 {
            log.append(&big(i)).expect("append");
        }
        let mut huge = written(7);
        huge.forecast = Some(serde_json::json!({ "trace": "x".repeat(MAX_LINE) }));
        let e = log.append(&huge).expect_err("above MAX_LINE");
        assert!(
            matches!(
                e,
                AuditError::Record {
                    source: RecordError::TooLong(_),
                    ..
                }
            ),
            "{e}"
        );
    }
    let mut log = AuditLog::open(&path, T0).expect("reopen");
    assert_eq!(log.seq(), 8);
    log.append(&big(7)).expect("append");
    drop(log);
    // More than the largest window open reads from the end (256 KiB).
    assert!(fs::metadata(&path).expect("size").len() > 256 << 10);
    assert_eq!(verify(&path).expect("intact").entries, 9);

    // A changed last line, then a changed first line: open names each.
    let intact = lines(&path);
    let mut l = intact.clone();
    l[8] = l[8].replacen("within bounds", "within bounde", 1);
    write_lines(&path, &l);
    let err = AuditLog::open(&path, T0).expect_err("refused");
    assert_eq!(err.broken().map(|(n, _)| n), Some(9), "{err}");
    let mut l = intact;
    l[0] = l[0].replacen("log created", "log cheated", 1);
    write_lines(&path, &l);
    let err = AuditLog::open(&path, T0).expect_err("refused");
    let (n, p) = err.broken().expect("located");
    assert_eq!(n, 1);
    assert!(matches!(p, Problem::HashMismatch { .. }), "{p}");
}

#[test]
fn a_group_commit_writes_the_same_chain_as_one_append_at_a_time() {
    let (_d, one) = temp();
    log_with(&one, 4);
    let (_d2, group) = temp();
    let mut log = AuditLog::open(&group, T0).expect("open");
    let batch: Vec<Record> = (1..=4).map(written).collect();
    let done = log.append_all(&batch).expect("group commit");
    assert_eq!(
        done.iter().map(|a| a.seq).collect::<Vec<_>>(),
        vec![2, 3, 4, 5]
    );
    assert_eq!(log.seq(), 5);
    assert!(log.append_all(&[]).expect("nothing to append").is_empty());
    assert_eq!(log.seq(), 5, "an empty batch appends nothing");
    drop(log);
    // Byte for byte the file one append at a time gives: the group commit
    // changes when the device flush happens, not what is on disk.
    assert_eq!(
        fs::read(&one).expect("read"),
        fs::read(&group).expect("read")
    );
    let report = verify(&group).expect("chain intact");
    assert_eq!(report.entries, 5);
    assert_eq!(
        report.last.expect("last").hash,
        done.last().expect("appended").hash
    );
}

#[test]
fn a_bad_record_refuses_its_whole_group_and_the_chain_goes_on() {
    let (_d, path) = temp();
    let mut log = AuditLog::open(&path, T0).expect("open");
    let before = fs::read(&path).expect("read");
    for bad in [
        Record::new(T0, Actor::System, "", Decision::Blocked, "no tag"),
        Record::new(-1, Actor::System, "t", Decision::Reset, "before 1970"),
    ] {
        let batch = [written(1), bad, written(2)];
        let e = log.append_all(&batch).expect_err("refused");
        assert!(matches!(e, AuditError::Record { seq: 3, .. }), "{e}");
        assert_eq!(log.seq(), 1, "nothing of the group was appended");
        assert_eq!(fs::read(&path).expect("read"), before, "nothing written");
    }
    log.append_all(&[written(1), written(2)]).expect("append");
    drop(log);
    assert_eq!(verify(&path).expect("intact").entries, 3);
}

#[test]
fn a_crash_in_the_middle_of_a_group_commit_keeps_its_whole_lines() {
    let (_d, path) = temp();
    log_with(&path, 1);
    // What a crash during a group's one `write` can leave: whole lines of
    // the group, then the start of the next.
    let (_d2, full) = temp();
    log_with(&full, 4);
    let all = lines(&full);
    let mut torn = format!("{}\n{}\n", all[2], all[3]).into_bytes();
    torn.extend_from_slice(&all[4].as_bytes()[..30]);
    fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(&torn))
        .expect("write a torn group");
    let log = AuditLog::open(&path, T0 + 9).expect("reopen repairs");
    assert_eq!(
        log.seq(),
        5,
        "opened, 3 written (two from the group), opened"
    );
    drop(log);
    let report = verify(&path).expect("chain intact");
    assert_eq!(report.entries, 5);
    assert!(
        report
            .last
            .expect("opened")
            .reason
            .contains("torn last line of 30 bytes")
    );
}
