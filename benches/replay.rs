//! Replay speed (issue 10, `twin replay`): a recording of the demo line
//! through a fresh core, as fast as the CPU goes, with and without the line
//! physics. Criterion's "elem/s" is simulated seconds per wall-clock second,
//! i.e. × real time; after the criterion runs a summary prints × real time
//! per CPU second of the bench thread (the shared machine's other load kept
//! out), and the recording's size per hour.
//!
//! The recording is made first, headless (`sim::lockstep`, the same as
//! `twin demo --headless --record`): 10 minutes of the demo line, healthy
//! and with the transfer jam, every sample through the real register and
//! payload encoding. "Without line physics" replays it under the same
//! config with its `[[lines]]` removed: every tag, quality and staleness
//! check, no line model.
//!
//! Run: `cargo bench --bench replay`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use twin::config::{LoadedConfig, load_str};
use twin::recording::RecordingReader;
use twin::runtime::{ReplayOptions, run_replay};
use twin::sim::lockstep::{self, LockstepOptions};
use twin::sim::scenario;
use twin::sinks::Sink;
use twin::sinks::recorder::{Recorder, RecorderOptions};

const DEMO: &str = include_str!("../plant-configs/packaging-line.toml");
const SPAN: Duration = Duration::from_secs(600);

/// The config text without its `[[lines]]` tables.
fn without_lines(text: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for l in text.lines() {
        let t = l.trim_start();
        if t.starts_with('[') {
            skipping = t.starts_with("[[lines") || t.starts_with("[lines");
        }
        if !skipping {
            out += l;
            out.push('\n');
        }
    }
    out
}

fn record(cfg: &LoadedConfig, scenario_file: Option<&str>, path: &Path) {
    let s = scenario_file.map(|f| {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
        scenario::load_file(&p, cfg).unwrap_or_else(|r| panic!("{r}"))
    });
    let rec = Recorder::new(cfg, RecorderOptions::new(path)).waiting_when_full();
    let sinks: Vec<Box<dyn Sink>> = vec![Box::new(rec)];
    lockstep::run(cfg, s.as_ref(), &LockstepOptions::new(SPAN), sinks).expect("lockstep run");
}

fn replay_once(cfg: &LoadedConfig, path: &Path) -> u64 {
    let mut reader = RecordingReader::open(&[path.to_path_buf()]).expect("open");
    let s = run_replay(cfg, &mut reader, ReplayOptions::new()).expect("replay");
    s.ticks
}

fn replay(c: &mut Criterion) {
    let cfg = load_str(Path::new("packaging-line.toml"), DEMO).expect("demo config is valid");
    let bare_text = without_lines(DEMO);
    let bare = load_str(Path::new("packaging-line-no-lines.toml"), &bare_text)
        .expect("the demo config without lines is valid");
    assert!(bare.config.lines.is_empty());
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(&str, Option<&str>, PathBuf)> = vec![
        ("healthy", None, dir.path().join("healthy.mcap")),
        (
            "transfer_jam",
            Some("plant-configs/scenarios/transfer_jam.toml"),
            dir.path().join("jam.mcap"),
        ),
    ];
    for (_, s, p) in &cases {
        record(&cfg, *s, p);
    }
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Elements(SPAN.as_secs()));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    g.warm_up_time(Duration::from_secs(1));
    for (name, _, p) in &cases {
        g.bench_function(format!("demo_10min_{name}_with_line_physics"), |b| {
            b.iter(|| black_box(replay_once(&cfg, p)))
        });
        g.bench_function(format!("demo_10min_{name}_without_line_physics"), |b| {
            b.iter(|| black_box(replay_once(&bare, p)))
        });
    }
    g.finish();
    // × real time per CPU second of the whole process (the recording is
    // read on a thread of its own, the core steps on this one), per CPU
    // second of this thread alone, and per wall second (the two threads
    // overlap on two cores; only meaningful on an otherwise idle machine).
    for (name, _, p) in &cases {
        for (physics, c) in [("with", &cfg), ("without", &bare)] {
            let n = if physics == "with" { 3 } else { 10 };
            let (cpu0, thread0, wall0) = (
                twin::wallclock::process_cpu_time(),
                twin::wallclock::thread_cpu_time(),
                twin::wallclock::monotonic(),
            );
            for _ in 0..n {
                black_box(replay_once(c, p));
            }
            let per = |d: Duration| d.as_secs_f64() / n as f64;
            let cpu = per(twin::wallclock::process_cpu_time() - cpu0);
            let thread = per(twin::wallclock::thread_cpu_time() - thread0);
            let wall = per(twin::wallclock::since(wall0));
            let x = |s: f64| SPAN.as_secs_f64() / s;
            eprintln!(
                "replay {name} {physics} line physics ({} s): {:.0}x real time per process CPU second ({cpu:.3} s), {:.0}x per CPU second of the core's thread ({thread:.3} s), {:.0}x wall ({wall:.3} s)",
                SPAN.as_secs(),
                x(cpu),
                x(thread),
                x(wall),
            );
        }
        let bytes = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "recording {name}: {:.1} MB per hour of the demo line",
            bytes as f64 * 3600.0 / SPAN.as_secs_f64() / 1e6
        );
    }
}

criterion_group!(benches, replay);
criterion_main!(benches);
