//! `twin import` and `twin export` (issue 10, "Foreign data"): CSV and JSON
//! lines in every layout and time format become recordings that replay;
//! bad rows are located; a starter config checks and replays; an export
//! gives back what was imported.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::{events, tag_events, twin};

fn run(args: &[&str]) -> Output {
    let mut c = twin();
    c.args(args);
    c.output().expect("run twin")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: Output, what: &str) -> Output {
    assert!(
        o.status.success(),
        "{what} failed ({:?}):\n{}",
        o.status.code(),
        stderr(&o)
    );
    o
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write data");
    p
}

/// Import `data` (with `extra` flags) without a config; returns the
/// recording and the starter config.
fn import(dir: &Path, data: &Path, extra: &[&str]) -> (PathBuf, PathBuf) {
    let rec = dir.join("rec.mcap");
    let cfg = dir.join("starter.toml");
    let mut args = vec!["import", s(data), "-o", s(&rec), "--config-out", s(&cfg)];
    args.extend_from_slice(extra);
    ok(run(&args), "twin import");
    (rec, cfg)
}

/// Replay `rec` (under its own config) and return the events.
fn replay(dir: &Path, rec: &Path) -> Vec<serde_json::Value> {
    let out = dir.join("events.jsonl");
    ok(run(&["replay", s(rec), "--events", s(&out)]), "twin replay");
    let text = std::fs::read_to_string(&out).expect("events");
    events(&text.lines().map(str::to_string).collect::<Vec<_>>())
}

/// The good values and source times a replay reported for `tag`.
fn values(ev: &[serde_json::Value], tag: &str) -> Vec<(serde_json::Value, String)> {
    tag_events(ev, tag)
        .into_iter()
        .filter(|e| e["quality"] == "good")
        .map(|e| {
            (
                e["value"].clone(),
                e["src_t"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn export(rec: &Path, extra: &[&str]) -> String {
    let mut args = vec!["export", s(rec), "--format", "csv"];
    args.extend_from_slice(extra);
    let o = ok(run(&args), "twin export");
    String::from_utf8(o.stdout).expect("csv is utf-8")
}

const WIDE: &str = "time,speed,running,batch\n\
    2026-12-04T10:00:00Z,1.5,true,B-1\n\
    2026-12-04T10:00:01Z,2.5,false,B-2\n\
    2026-12-04T10:00:02Z,3.5,true,\n";

#[test]
fn r10_import_wide_csv_replays_every_value_at_its_row_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = write(dir.path(), "wide.csv", WIDE);
    let (rec, cfg) = import(dir.path(), &data, &[]);
    let c = ok(run(&["check", s(&cfg)]), "twin check of the starter config");
    assert!(
        String::from_utf8_lossy(&c.stdout).contains("ok (3 tags"),
        "{c:?}"
    );
    let starter = std::fs::read_to_string(&cfg).expect("starter");
    assert!(
        starter.contains("[[sources.recorded]]") && starter.contains("type = \"bool\""),
        "{starter}"
    );
    let ev = replay(dir.path(), &rec);
    assert_eq!(
        values(&ev, "speed"),
        vec![
            (1.5.into(), "2026-12-04T10:00:00.000Z".into()),
            (2.5.into(), "2026-12-04T10:00:01.000Z".into()),
            (3.5.into(), "2026-12-04T10:00:02.000Z".into()),
        ]
    );
    let running: Vec<_> = values(&ev, "running").into_iter().map(|v| v.0).collect();
    assert_eq!(
        running,
        vec![serde_json::json!(true), false.into(), true.into()]
    );
    let batch: Vec<_> = values(&ev, "batch").into_iter().map(|v| v.0).collect();
    assert_eq!(batch, vec![serde_json::json!("B-1"), "B-2".into()]);
    // Applied on the tick at the row's time (tick 100 ms, rows on whole
    // seconds): `t` is the row's time too.
    let first = tag_events(&ev, "speed")[0];
    assert_eq!(first["t"], "2026-12-04T10:00:00.000Z", "{first}");
    // The starter config file replays the import as the embedded one does.
    let out = dir.path().join("with-config.jsonl");
    ok(
        run(&["replay", s(&cfg), s(&rec), "--events", s(&out)]),
        "twin replay starter.toml rec.mcap",
    );
    assert_eq!(
        std::fs::read(&out).expect("events"),
        std::fs::read(dir.path().join("events.jsonl")).expect("events")
    );
}

#[test]
fn r10_import_long_csv_sorts_rows_by_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Sorted by tag, as historians often export: the import sorts by time.
    let data = write(
        dir.path(),
        "long.csv",
        "timestamp,tag,value\n\
         1796378402,a.temp,22\n\
         1796378400,a.temp,20\n\
         1796378401,b.level,7\n",
    );
    let (rec, _) = import(dir.path(), &data, &[]);
    let ev = replay(dir.path(), &rec);
    assert_eq!(
        values(&ev, "a.temp"),
        vec![
            (20.0.into(), "2026-12-04T10:00:00.000Z".into()),
            (22.0.into(), "2026-12-04T10:00:02.000Z".into()),
        ]
    );
    assert_eq!(values(&ev, "b.level").len(), 1);
    let csv = export(&rec, &[]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "time,tag,value,quality,reason");
    assert_eq!(lines[1], "2026-12-04T10:00:00Z,a.temp,20,good,");
    assert_eq!(lines[2], "2026-12-04T10:00:01Z,b.level,7,good,");
}

#[test]
fn r10_import_jsonl_wide_and_long_with_epoch_milliseconds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wide = write(
        dir.path(),
        "wide.jsonl",
        "{\"ts\": 1796378400000, \"speed\": 1.25, \"on\": true}\n\n\
         {\"ts\": 1796378400500, \"speed\": 2.25, \"on\": false}\n",
    );
    let (rec, _) = import(dir.path(), &wide, &[]);
    let ev = replay(dir.path(), &rec);
    assert_eq!(
        values(&ev, "speed"),
        vec![
            (1.25.into(), "2026-12-04T10:00:00.000Z".into()),
            (2.25.into(), "2026-12-04T10:00:00.500Z".into()),
        ]
    );
    assert_eq!(values(&ev, "on").len(), 2);
    let long = write(
        dir.path(),
        "long.jsonl",
        "{\"time\": \"2026-12-04T11:00:00+01:00\", \"tag\": \"x\", \"value\": 4}\n\
         {\"time\": \"2026-12-04T10:00:01\", \"tag\": \"x\", \"value\": \"5\"}\n",
    );
    let (rec, _) = import(dir.path(), &long, &[]);
    let ev = replay(dir.path(), &rec);
    assert_eq!(
        values(&ev, "x"),
        vec![
            (4.0.into(), "2026-12-04T10:00:00.000Z".into()),
            (5.0.into(), "2026-12-04T10:00:01.000Z".into()),
        ]
    );
}

#[test]
fn r10_import_time_formats_and_unit_override() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Epoch seconds with a fraction, ISO with a space and no zone (UTC),
    // and milliseconds forced with --time-unit on small numbers.
    for (name, text, extra, want) in [
        (
            "secs.csv",
            "time,v\n1796378400.5,1\n",
            &[][..],
            "2026-12-04T10:00:00.500Z",
        ),
        (
            "iso.csv",
            "time,v\n2026-12-04 10:00:00,1\n",
            &[][..],
            "2026-12-04T10:00:00.000Z",
        ),
        (
            "ms.csv",
            "time,v\n1500,1\n",
            &["--time-unit", "ms"][..],
            "1970-01-01T00:00:01.500Z",
        ),
        (
            "col.csv",
            "when,v\n2026-12-04T10:00:00Z,1\n",
            &["--time-column", "when"][..],
            "2026-12-04T10:00:00.000Z",
        ),
    ] {
        let d = dir.path().join(name.replace(".csv", ""));
        std::fs::create_dir_all(&d).expect("dir");
        let data = write(&d, name, text);
        let (rec, _) = import(&d, &data, extra);
        let ev = replay(&d, &rec);
        assert_eq!(
            values(&ev, "v"),
            vec![(1.0.into(), want.to_string())],
            "{name}"
        );
    }
}

#[test]
fn r10_import_with_period_spaces_rows_from_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = write(dir.path(), "p.csv", "level\n10\n11\n12\n");
    let (rec, cfg) = import(
        dir.path(),
        &data,
        &["--period", "3m", "--start", "2026-12-04T06:00:00Z"],
    );
    let ev = replay(dir.path(), &rec);
    assert_eq!(
        values(&ev, "level"),
        vec![
            (10.0.into(), "2026-12-04T06:00:00.000Z".into()),
            (11.0.into(), "2026-12-04T06:03:00.000Z".into()),
            (12.0.into(), "2026-12-04T06:06:00.000Z".into()),
        ]
    );
    // Rows 3 minutes apart: the tag must not go stale between them.
    assert!(
        tag_events(&ev, "level")
            .iter()
            .all(|e| e["quality"] == "good"),
        "{:?}",
        tag_events(&ev, "level")
    );
    let starter = std::fs::read_to_string(&cfg).expect("starter");
    assert!(starter.contains("stale_after = \"6m\""), "{starter}");
}

const BAD: &str = "time,speed,running\n\
    2026-12-04T10:00:00Z,1,true\n\
    2026-12-04T10:00:01Z,fast,true\n\
    yesterday,3,false\n\
    2026-12-04T10:00:03Z,4,maybe\n\
    2026-12-04T10:00:04Z,5,false\n";

#[test]
fn r10_a_bad_row_is_an_error_naming_file_row_and_column_and_leaves_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = write(dir.path(), "bad.csv", BAD);
    let rec = dir.path().join("rec.mcap");
    let o = run(&["import", s(&data), "-o", s(&rec)]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("bad.csv:3:2: column \"speed\": expected a number, found \"fast\""),
        "{e}"
    );
    assert!(e.contains("--skip-bad"), "{e}");
    assert!(!rec.exists(), "a failed import left {}", rec.display());
    assert!(!dir.path().join("rec.mcap.partial").exists());
}

#[test]
fn r10_skip_bad_counts_and_reports_the_bad_rows_and_imports_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = write(dir.path(), "bad.csv", BAD);
    let rec = dir.path().join("rec.mcap");
    let o = ok(
        run(&["import", s(&data), "-o", s(&rec), "--skip-bad"]),
        "import --skip-bad",
    );
    let e = stderr(&o);
    assert!(e.contains("bad_rows=3"), "{e}");
    assert!(e.contains("bad.csv:3:2"), "{e}");
    assert!(e.contains("bad.csv:4:1: column \"time\""), "{e}");
    assert!(
        e.contains("bad.csv:5:3: column \"running\": expected a boolean"),
        "{e}"
    );
    let ev = replay(dir.path(), &rec);
    let speeds: Vec<_> = values(&ev, "speed").into_iter().map(|v| v.0).collect();
    assert_eq!(speeds, vec![serde_json::json!(1.0), 5.0.into()]);
}

#[test]
fn r10_import_onto_a_config_maps_columns_and_refuses_unknown_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        dir.path(),
        "plant.toml",
        "[plant]\nname = \"lab\"\ntick = \"100ms\"\n\n\
         [[sources.recorded]]\nname = \"lims\"\nstale_after = \"1h\"\n\
         [[sources.recorded.tags]]\ntag = \"oven.temp\"\nunit = \"degC\"\n",
    );
    let data = write(
        dir.path(),
        "d.csv",
        "time,Oven Temp,note\n2026-12-04T10:00:00Z,180,x\n",
    );
    let rec = dir.path().join("rec.mcap");
    let o = run(&["import", s(&data), "-o", s(&rec), "--config", s(&cfg)]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("\"Oven Temp\"") && e.contains("--map"), "{e}");
    ok(
        run(&[
            "import",
            s(&data),
            "-o",
            s(&rec),
            "--config",
            s(&cfg),
            "--map",
            "Oven Temp=oven.temp",
            "--map",
            "note=",
        ]),
        "import --map",
    );
    let ev = replay(dir.path(), &rec);
    assert_eq!(
        values(&ev, "oven.temp"),
        vec![(180.0.into(), "2026-12-04T10:00:00.000Z".into())]
    );
}

#[test]
fn r10_a_recorded_source_is_checked_with_located_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = write(
        dir.path(),
        "plant.toml",
        "[plant]\nname = \"lab\"\n\n[[sources.recorded]]\nname = \"lims\"\n\
         [[sources.recorded.tags]]\ntag = \"a\"\ntype = \"boolean\"\n\
         [[sources.recorded.tags]]\ntag = \"a\"\nunits = \"x\"\n",
    );
    let o = run(&["check", s(&cfg)]);
    assert_eq!(o.status.code(), Some(78));
    let e = stderr(&o);
    assert!(
        e.contains("sources.recorded[0].tags[0].type") && e.contains("did you mean `bool`?"),
        "{e}"
    );
    assert!(e.contains("duplicate tag \"a\""), "{e}");
    assert!(e.contains("units"), "{e}");
}

#[test]
fn r10_a_live_run_says_recorded_tags_come_only_from_recordings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = write(dir.path(), "d.csv", WIDE);
    let (_, cfg) = import(dir.path(), &data, &[]);
    let out = dir.path().join("live.jsonl");
    let o = ok(
        run(&[
            "run",
            s(&cfg),
            "--for",
            "1s",
            "--no-table",
            "--events",
            s(&out),
        ]),
        "twin run",
    );
    let e = stderr(&o);
    assert!(e.contains("only recordings provide them"), "{e}");
    let text = std::fs::read_to_string(&out).expect("events");
    let ev = events(&text.lines().map(str::to_string).collect::<Vec<_>>());
    let speed = tag_events(&ev, "speed");
    assert!(
        !speed.is_empty() && speed.iter().all(|e| e["reason"] == "no_data"),
        "{speed:?}"
    );
}

#[test]
fn r10_export_round_trips_the_imported_values_long_and_wide() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = write(
        dir.path(),
        "w.csv",
        "time,a,b\n\
         2026-12-04T10:00:00Z,0.1,-3\n\
         2026-12-04T10:00:00.25Z,,1e300\n\
         2026-12-04T10:00:01Z,0.30000000000000004,\n",
    );
    let (rec, _) = import(dir.path(), &data, &[]);
    let wide = export(&rec, &["--wide", "--tags", "a,b"]);
    assert_eq!(
        wide,
        "time,a,b\n\
         2026-12-04T10:00:00Z,0.1,-3\n\
         2026-12-04T10:00:00.25Z,0.1,1e300\n\
         2026-12-04T10:00:01Z,0.30000000000000004,1e300\n"
            .replace("1e300", &1e300f64.to_string())
    );
    let long = export(&rec, &["--tags", "b"]);
    assert_eq!(long.lines().count(), 3, "{long}");
    // The wide export imports again to the same recording values.
    let again = write(dir.path(), "again.csv", &wide);
    let d2 = dir.path().join("2");
    std::fs::create_dir_all(&d2).expect("dir");
    let (rec2, _) = import(&d2, &again, &[]);
    assert_eq!(export(&rec2, &["--tags", "a"]).lines().count(), 4);
}

#[test]
fn r10_export_of_a_live_demo_recording() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rec = dir.path().join("demo.mcap");
    ok(
        run(&["demo", "--for", "4s", "--no-table", "--record", s(&rec)]),
        "twin demo --record",
    );
    let out = dir.path().join("demo.csv");
    ok(
        run(&["export", s(&rec), "--format", "csv", "-o", s(&out)]),
        "twin export",
    );
    let text = std::fs::read_to_string(&out).expect("csv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("time,tag,value,quality,reason"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.len() > 20, "{} rows", rows.len());
    assert!(
        rows.iter()
            .any(|r| r[1] == "infeed.speed" && r[3] == "good"),
        "{text}"
    );
    let wide = export(&rec, &["--wide", "--tags", "infeed.speed,infeed.running"]);
    assert!(
        wide.starts_with("time,infeed.speed,infeed.running\n"),
        "{wide}"
    );
    assert!(wide.lines().count() > 5, "{wide}");
}

/// A CSV header naming one column twice used to import both into one tag,
/// the later cell of each row silently replacing the earlier; it is now
/// refused, naming both columns, and nothing is written.
#[test]
fn r_hostile_import_refuses_a_header_that_names_a_column_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = write(
        dir.path(),
        "dup.csv",
        "time,speed,temp,speed\n2026-01-01T00:00:00Z,1,20,2\n",
    );
    let out_rec = dir.path().join("dup.mcap");
    let o = run(&["import", s(&data), "-o", s(&out_rec)]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("dup.csv") && err.contains("columns 2 and 4 are both named \"speed\""),
        "{err}"
    );
    assert!(!out_rec.exists(), "nothing is written");
}

/// An export of a recording that cannot be read fails with nothing on
/// stdout: a CSV header alone would read as a valid, empty export.
#[test]
fn r10_export_of_a_missing_recording_writes_nothing_to_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.mcap");
    for extra in [&[][..], &["--wide"], &["--wide", "--tags", "a,b"]] {
        let mut args = vec!["export", s(&missing), "--format", "csv"];
        args.extend_from_slice(extra);
        let o = run(&args);
        assert!(!o.status.success(), "{extra:?}: {o:?}");
        assert!(
            o.stdout.is_empty(),
            "{extra:?}: stdout {:?}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("nope.mcap"),
            "{extra:?}: the error names the file: {o:?}"
        );
    }
}
