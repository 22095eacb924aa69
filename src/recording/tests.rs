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
            Item::Tick(_) => {}
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
