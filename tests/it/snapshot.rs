//! `twin snapshot`: the demo line drawn after 20 s of simulation, checked
//! for structure, content and byte-for-byte determinism.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::util::{root, twin};

const DEMO: &str = "plant-configs/packaging-line.toml";

fn snapshot(out: &Path, extra: &[&str]) -> Output {
    twin()
        .arg("snapshot")
        .arg(DEMO)
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .expect("run the twin binary")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("twin-snapshot-{}", std::process::id()));
    fs::create_dir_all(&dir).expect("create a temp folder");
    dir.join(name)
}

/// Every tag opened is closed, in order (self-closing tags aside): enough
/// to catch broken SVG without an XML parser.
fn assert_well_formed(doc: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = doc;
    while let Some(i) = rest.find('<') {
        rest = &rest[i + 1..];
        let end = rest.find('>').expect("every `<` has its `>`");
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().expect("a closing tag has an opening one");
            assert_eq!(open, name.trim(), "mismatched tags");
        } else if !tag.ends_with('/') && !tag.starts_with('?') && !tag.starts_with('!') {
            let name = tag.split_whitespace().next().expect("a tag name");
            stack.push(name.to_string());
        }
    }
    assert!(stack.is_empty(), "unclosed tags: {stack:?}");
    assert!(!doc.contains("NaN"), "a NaN in the drawing");
}

#[test]
fn the_demo_line_after_20s_shows_belts_stations_eyes_and_products() {
    let out = tmp("line1.svg");
    let run = snapshot(&out, &["--at", "20s"]);
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let doc = fs::read_to_string(&out).expect("read the snapshot");
    assert!(doc.starts_with("<svg "), "{}", &doc[..doc.len().min(200)]);
    assert_well_formed(&doc);
    // infeed: 1 segment, outfeed: 2.
    assert_eq!(doc.matches("<rect class=\"belt\"").count(), 3);
    for id in [
        "infeed",
        "outfeed",
        "filler",
        "capper",
        "labeller",
        "eye_entry",
        "eye_filler",
        "eye_transfer",
        "eye_exit",
    ] {
        assert!(doc.contains(&format!(">{id}</text>")), "{id} not labelled");
    }
    let products = doc.matches("<rect class=\"product\"").count();
    assert!(products >= 1, "no product after 20 s");
    assert_eq!(doc.matches("<line class=\"eye ").count(), 4);
}

#[test]
fn the_same_options_give_the_same_bytes() {
    let (a, b) = (tmp("a.svg"), tmp("b.svg"));
    for p in [&a, &b] {
        let run = snapshot(p, &["--at", "12s", "--speed", "outfeed=0.7"]);
        assert_eq!(run.status.code(), Some(0));
    }
    let (a, b) = (fs::read(&a).expect("a"), fs::read(&b).expect("b"));
    assert!(!a.is_empty());
    assert!(a == b, "two runs gave different files");
}

#[test]
fn bad_options_and_unwritable_files_fail_with_their_codes() {
    let run = snapshot(&tmp("x.svg"), &["--speed", "nope=1"]);
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("\"nope\""));

    let run = snapshot(&tmp("x.svg"), &["--line", "line9"]);
    assert_eq!(run.status.code(), Some(2));

    let missing = root().join("no-such-folder").join("line.svg");
    let run = snapshot(&missing, &[]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("no-such-folder"), "{stderr}");

    let run = twin()
        .args(["snapshot", "tests/configs/broken/duplicate_tag.toml", "-o"])
        .arg(tmp("y.svg"))
        .output()
        .expect("run the twin binary");
    assert_eq!(run.status.code(), Some(78));
}
