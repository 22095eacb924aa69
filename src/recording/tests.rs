//! The recording format against damaged and hostile files: every cut and
//! every flipped byte gives an error or fewer items, never a panic.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::reader::Item;
use super::{RecordingError, RecordingReader};
use crate::config::load_str;
use crate::runtime::Driver;
use crate::sinks::recorder::{Recorder, RecorderOptions};
use crate::twin::{Sample, Value};

const CFG: &str = r#"
[plant]
name = "rec"
tick = "100ms"

[[sources.mqtt]]
name = "m"
broker = "mqtt://127.0.0.1:1883"
  [[sources.mqtt.topics]]
  topic = "a"
  tag = "a.x"
  [[sources.mqtt.topics]]
  topic = "b"
  tag = "b.flag"
"#;

/// A small recording: 3 s of two tags, flushed every 200 ms.
fn record(dir: &Path) -> PathBuf {
    let cfg = load_str(Path::new("rec.toml"), CFG).expect("valid");
    let path = dir.join("r.mcap");
    let mut o = RecorderOptions::new(&path);
    o.flush_every = Duration::from_millis(200);
    let epoch = 1_800_000_000_000_000_000;
    let mut d = Driver::new(&cfg, epoch);
    d.add_sink(Box::new(Recorder::new(&cfg, o)))
        .expect("starts");
    let (x, flag) = (
        cfg.tags.id("a.x").expect("tag"),
        cfg.tags.id("b.flag").expect("tag"),
    );
    for i in 0..30i64 {
        let t = epoch + i * 100_000_000 + 1;
        d.push(Sample::good(x, Value::Num(i as f64 * 0.1), t, t));
        if i % 3 == 0 {
            d.push(Sample::good(flag, Value::Bool(i % 2 == 0), t, t));
        }
        d.step();
    }
    assert!(d.finish().is_empty());
    path
}

fn read_all(path: &Path) -> Result<(usize, usize), RecordingError> {
    let mut r = RecordingReader::open(&[path.to_path_buf()])?;
    let mut items = 0;
    for i in r.by_ref() {
        i?;
        items += 1;
    }
    Ok((items, r.cut_off().len()))
}

#[test]
fn a_whole_recording_reads_back_every_sample_and_event() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = record(dir.path());
    let mut r = RecordingReader::open(&[p]).expect("opens");
    assert_eq!(r.info().plant, "rec");
    assert_eq!(r.config_text(), CFG);
    let (mut samples, mut events) = (0, 0);
    for i in r.by_ref() {
        match i.expect("reads") {
            Item::Sample { .. } => samples += 1,
            Item::Event { .. } => events += 1,
            Item::Tick(_) | Item::Guard { .. } => {}
        }
    }
    assert_eq!(samples, 30 + 10);
    assert!(events >= 30, "tag events of 30 changes at least: {events}");
    assert!(r.cut_off().is_empty());
}

#[test]
fn a_cut_or_damaged_recording_never_panics_the_reader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = record(dir.path());
    let bytes = std::fs::read(&p).expect("read");
    let (whole, _) = read_all(&p).expect("whole file reads");
    let damaged = dir.path().join("d.mcap");
    // Every cut point (in steps): fewer items, or an error, never a panic;
    // and a cut past the first flush still reads something.
    let mut readable_cuts = 0;
    for cut in (0..bytes.len()).step_by(53) {
        std::fs::write(&damaged, &bytes[..cut]).expect("write");
        if let Ok((n, _)) = read_all(&damaged) {
            assert!(n <= whole);
            readable_cuts += usize::from(n > 0);
        }
    }
    assert!(readable_cuts > 5, "a cut file reads up to its last flush");
    // Flipped bytes, with a fixed-seed generator.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..300 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut b = bytes.clone();
        let at = (seed >> 33) as usize % b.len();
        b[at] ^= 1 << ((seed >> 20) % 8);
        std::fs::write(&damaged, &b).expect("write");
        let _ = read_all(&damaged);
    }
    // Not an MCAP file at all, and an MCAP file that is not a recording.
    std::fs::write(&damaged, b"hello").expect("write");
    assert!(read_all(&damaged).is_err());
    std::fs::write(&damaged, b"").expect("write");
    let e = read_all(&damaged).expect_err("empty").to_string();
    assert!(e.contains("d.mcap"), "{e}");
}

/// Every item of a recording, as text, and whether it read cleanly.
fn items_of(path: &Path) -> (Vec<String>, bool) {
    let Ok(mut r) = RecordingReader::open(&[path.to_path_buf()]) else {
        return (Vec::new(), false);
    };
    let mut out = Vec::new();
    let mut clean = true;
    for i in r.by_ref() {
        match i {
            Ok(i) => out.push(format!("{i:?}")),
            Err(_) => {
                clean = false;
                break;
            }
        }
    }
    (out, clean && r.cut_off().is_empty())
}

#[test]
fn a_damaged_recording_never_reads_as_other_data() {
    // Samples and events live in chunks, each with a CRC of its contents:
    // a flipped bit anywhere either leaves every item as it was (it hit a
    // time or an index the reader does not use) or ends the reading with
    // an error or a cut-off. It never hands out a changed sample silently.
    let dir = tempfile::tempdir().expect("tempdir");
    let p = record(dir.path());
    let bytes = std::fs::read(&p).expect("read");
    let (whole, clean) = items_of(&p);
    assert!(clean && whole.len() > 40);
    let damaged = dir.path().join("d.mcap");
    let mut caught = 0;
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..400 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut b = bytes.clone();
        let at = (seed >> 11) as usize % b.len();
        b[at] ^= 1 << (seed % 8);
        std::fs::write(&damaged, &b).expect("write");
        let (items, clean) = items_of(&damaged);
        if clean {
            assert_eq!(
                items, whole,
                "a flip at byte {at} changed the data silently"
            );
        } else {
            caught += 1;
            assert!(
                whole.starts_with(&items),
                "a flip at byte {at}: items before the damage differ"
            );
        }
    }
    assert!(
        caught > 100,
        "most flips land in chunks and are caught: {caught}"
    );
}

#[test]
fn a_version_1_recording_still_reads_and_recovers_into_version_2() {
    // tests/fixtures/recording-v1-demo-2s.mcap: 2 s of the headless demo
    // written by the twin of issue 10's first stop (JSON tag samples).
    let v1 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/recording-v1-demo-2s.mcap");
    let r = RecordingReader::open(std::slice::from_ref(&v1)).expect("a v1 file opens");
    assert_eq!(r.info().format_version, 1);
    let (old, clean) = items_of(&v1);
    assert!(clean);
    let samples = old.iter().filter(|i| i.starts_with("Sample")).count();
    assert!(samples > 500, "{samples} samples");
    let dir = tempfile::tempdir().expect("tempdir");
    let v2 = dir.path().join("v2.mcap");
    super::recover::recover(&v1, &v2).expect("recovers");
    let r2 = RecordingReader::open(std::slice::from_ref(&v2)).expect("opens");
    assert_eq!(r2.info().format_version, super::format::FORMAT_VERSION);
    let (new, clean) = items_of(&v2);
    assert!(clean);
    // The same items in protobuf as in JSON; recover adds a last tick mark.
    assert_eq!(
        new[..old.len()],
        old[..],
        "the same items in protobuf as in JSON"
    );
    assert!(new[old.len()..].iter().all(|i| i.starts_with("Tick")));
    assert!(
        std::fs::metadata(&v2).expect("v2").len() < std::fs::metadata(&v1).expect("v1").len(),
        "protobuf samples make a smaller file"
    );
}

#[test]
fn r_hostile_an_index_that_lists_no_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let index = dir.path().join("shift.index.json");
    std::fs::write(
        &index,
        r#"{"format":"twin-recording-index","version":1,"parts":[]}"#,
    )
    .expect("write");
    let e = RecordingReader::open(std::slice::from_ref(&index))
        .err()
        .expect("an empty index is refused")
        .to_string();
    assert!(
        e.contains("shift.index.json") && e.contains("lists no recording file"),
        "{e}"
    );
}
