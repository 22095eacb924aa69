//! The broken-config corpus: `twin check` on real files, with every message
//! pinned.
//!
//! Each `tests/configs/broken/NAME.toml` breaks one thing (or, in
//! `several_errors.toml`, several) and says so in its first comment. Next to it,
//! `NAME.expected` holds the exact `twin check --short` output: location, key
//! path and wording of every diagnostic. A change to any message shows up here
//! as a diff an integrator's eyes can review.
//!
//! After an intended change to the messages, regenerate the expectations and
//! review the diff before committing:
//!
//! ```sh
//! TWIN_BLESS=1 cargo test --test it config_corpus
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Relative to the crate root, so the paths in messages (and so in the
/// expected files) are the same on every machine.
const BROKEN: &str = "tests/configs/broken";
const VALID: &str = "plant-configs/packaging-line.toml";
/// sysexits EX_CONFIG.
const EXIT_CONFIG: i32 = 78;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `twin check ARGS...` from the crate root, with logging left at its default
/// so nothing but diagnostics reaches stderr.
fn check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_twin"))
        .arg("check")
        .args(args)
        .current_dir(root())
        .env_remove("TWIN_LOG")
        .env_remove("RUST_LOG")
        .output()
        .expect("run the twin binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace("\r\n", "\n")
}

fn blessing() -> bool {
    std::env::var_os("TWIN_BLESS").is_some_and(|v| v == "1")
}

/// Names (without extension) of the corpus files, sorted.
fn corpus() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root().join(BROKEN))
        .expect("read the broken-config folder")
        .map(|e| e.expect("read a folder entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| stem(&p))
        .collect();
    names.sort();
    assert!(!names.is_empty(), "no configs in {BROKEN}");
    names
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .expect("file has a name")
        .to_string_lossy()
        .into_owned()
}

fn toml_path(name: &str) -> String {
    format!("{BROKEN}/{name}.toml")
}

fn expected_path(name: &str) -> PathBuf {
    root().join(BROKEN).join(format!("{name}.expected"))
}

#[test]
fn every_broken_config_gives_exactly_the_expected_diagnostics() {
    let bless = blessing();
    let mut failures = Vec::new();
    for name in corpus() {
        let file = toml_path(&name);
        let out = check(&["--short", &file]);
        let stderr = text(&out.stderr);
        let stdout = text(&out.stdout);

        if out.status.code() != Some(EXIT_CONFIG) {
            failures.push(format!(
                "{file}: exit code {:?}, expected {EXIT_CONFIG}\n{stderr}",
                out.status.code()
            ));
            continue;
        }
        if !stdout.is_empty() {
            failures.push(format!("{file}: unexpected stdout:\n{stdout}"));
        }
        // Each line names the file as given, so no absolute path can sneak in.
        if let Some(line) = stderr.lines().find(|l| !l.starts_with(&format!("{file}:"))) {
            failures.push(format!(
                "{file}: line does not start with the file path:\n{line}"
            ));
        }

        let exp = expected_path(&name);
        if bless {
            fs::write(&exp, &stderr).expect("write the expected output");
            continue;
        }
        match fs::read_to_string(&exp) {
            Ok(want) if want.replace("\r\n", "\n") == stderr => {}
            Ok(want) => failures.push(format!(
                "{file}: output differs from {name}.expected\n--- expected\n{want}--- actual\n{stderr}"
            )),
            Err(e) => failures.push(format!(
                "{file}: cannot read {name}.expected ({e}); create it with TWIN_BLESS=1"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} corpus file(s) failed; if the new messages are right, rerun with \
         TWIN_BLESS=1 and review the diff\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_broken_config_has_an_expected_file_and_says_what_it_breaks() {
    let names = corpus();
    let mut problems = Vec::new();
    for name in &names {
        // While blessing, the other test may be writing this file right now.
        if !blessing() && !expected_path(name).is_file() {
            problems.push(format!("{name}.toml has no {name}.expected"));
        }
        let src = fs::read_to_string(root().join(toml_path(name))).expect("read corpus file");
        if !src.starts_with("# Breaks: ") {
            problems.push(format!(
                "{name}.toml does not open with a `# Breaks: ...` comment"
            ));
        }
    }
    // And the other way round: no expectation left behind by a deleted file,
    // and nothing else in the folder that the corpus would silently skip.
    for entry in fs::read_dir(root().join(BROKEN)).expect("read the broken-config folder") {
        let p = entry.expect("read a folder entry").path();
        match p.extension().and_then(|x| x.to_str()) {
            Some("toml") => {}
            Some("expected") if names.contains(&stem(&p)) => {}
            _ => problems.push(format!("stray file {}", p.display())),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn several_errors_are_all_reported_in_file_order() {
    let file = toml_path("several_errors");
    let out = check(&["--short", &file]);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG));
    let stderr = text(&out.stderr);
    let locations: Vec<(usize, usize)> = stderr
        .lines()
        .map(|l| {
            let rest = l
                .strip_prefix(&format!("{file}:"))
                .unwrap_or_else(|| panic!("no location in {l:?}"));
            let mut it = rest.splitn(3, ':');
            let line = it.next().and_then(|n| n.parse().ok());
            let col = it.next().and_then(|n| n.parse().ok());
            (line.expect("line number"), col.expect("column number"))
        })
        .collect();
    // One per broken line of the file: tick, unit_idd, type, address, broker,
    // the machine's tag and the line's machine.
    assert_eq!(locations.len(), 7, "all errors reported:\n{stderr}");
    assert!(
        locations.windows(2).all(|w| w[0] < w[1]),
        "diagnostics not in file order: {locations:?}"
    );
    assert!(stderr.lines().all(|l| l.contains(": error: ")), "{stderr}");
}

#[test]
fn full_rendering_quotes_the_line_with_a_caret_and_did_you_mean() {
    let out = check(&[&toml_path("unknown_key_device")]);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG));
    assert_eq!(
        text(&out.stderr),
        "\
error: unknown key `unit_idd`
 --> tests/configs/broken/unknown_key_device.toml:9:1
  |
9 | unit_idd = 1
  | ^^^^^^^^
  = key: sources.modbus[0].unit_idd
  = expected: one of address, framing, max_gap, max_in_flight, max_read_bits, max_read_registers, name, poll_interval, registers, stale_after, timeout, unit_id
  = help: did you mean `unit_id`?

tests/configs/broken/unknown_key_device.toml: 1 error, 0 warnings
"
    );
}

#[test]
fn the_packaging_line_config_is_valid() {
    let out = check(&[VALID]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!("{VALID}: ok (")),
        "unexpected stdout:\n{stdout}"
    );
}

#[test]
fn one_valid_and_one_broken_file_fail_and_report_only_the_broken_one() {
    let broken = toml_path("unknown_key_device");
    let out = check(&["--short", VALID, &broken]);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG));
    let want = fs::read_to_string(expected_path("unknown_key_device"))
        .expect("read unknown_key_device.expected");
    assert_eq!(text(&out.stderr), want.replace("\r\n", "\n"));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with(&format!("{VALID}: ok (")), "{stdout}");
    assert!(!stdout.contains(&broken), "{stdout}");
}

#[test]
fn a_missing_file_is_a_config_error_that_names_the_file() {
    let missing = format!("{BROKEN}/no_such_file.toml");
    let out = check(&["--short", &missing]);
    assert_eq!(out.status.code(), Some(EXIT_CONFIG));
    assert_eq!(
        text(&out.stderr),
        format!(
            "{missing}:1:1: error: config file not found; check the path; \
             a relative path starts from the current directory\n"
        )
    );
    assert_eq!(text(&out.stdout), "");
}

/// A file over the 16 MiB cap is refused by its length, before it is read
/// (a 204 MB file used to take 1.4 GB): the error names the file and the
/// cap, and every command gives the config exit code. The file is sparse,
/// so making it costs nothing.
#[test]
fn r9_a_config_over_the_size_cap_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("huge.toml");
    let f = fs::File::create(&path).expect("create the file");
    f.set_len(16 * 1024 * 1024 + 1).expect("make it sparse");
    let path = path.to_string_lossy().into_owned();
    for cmd in [["check", path.as_str()], ["run", path.as_str()]] {
        let out = Command::new(env!("CARGO_BIN_EXE_twin"))
            .args(cmd)
            .current_dir(root())
            .output()
            .expect("run the twin binary");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(EXIT_CONFIG), "{cmd:?}: {err}");
        assert!(
            err.contains(&format!("{path}:1:1"))
                && err.contains("config file is 16777217 bytes, over the limit")
                && err.contains("(16 MiB)"),
            "{cmd:?}: {err}"
        );
    }
}
