//! The audit log (issue 12, docs/audit.md): how many decisions a second it
//! can make durable, and how fast `twin audit verify` reads a log back.
//!
//! - `append_fsync`: one `written` entry with two inputs per iteration, each
//!   a single `write` plus `sync_data`, on a file in a temporary folder (put
//!   TMPDIR on the disk the log will live on: on tmpfs the sync is free, on
//!   a spinning disk it is one rotation). Entries/s is the ceiling on the
//!   guard's decisions.
//! - `verify`: a 5,000-entry log (2.5 MB), written before timing, checked whole
//!   (every hash, seq and link) per iteration. Entries/s tells how long a
//!   start-up verify of a year's log takes.
//!
//! Run: `cargo bench --bench audit -- --warm-up-time 1 --measurement-time 5`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use twin::guard::audit::{Actor, AuditLog, Decision, Input, Record, verify};
use twin::twin::sample::Quality;

const T0: i64 = 1_764_950_400_000_000_000;
const VERIFY_ENTRIES: i64 = 5_000;

fn record(i: i64) -> Record {
    let mut r = Record::new(
        T0 + i * 100_000_000,
        Actor::Model {
            id: "belt_opt".into(),
            sha256: "ab".repeat(32),
        },
        "line1.belt_speed",
        Decision::Written,
        "within bounds, inputs fresh, interlocks hold",
    );
    r.old = Some(0.5);
    r.requested = Some(0.5 + (i % 10) as f64 / 100.0);
    r.written = r.requested;
    r.inputs = vec![
        Input {
            tag: "line1.count".into(),
            age_ms: 120,
            quality: Quality::Good,
        },
        Input {
            tag: "line1.wip".into(),
            age_ms: 80,
            quality: Quality::Good,
        },
    ];
    r
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut g = c.benchmark_group("audit");
    g.throughput(Throughput::Elements(1));
    {
        let mut log = AuditLog::open(&dir.path().join("append.jsonl"), T0).expect("open");
        let mut i = 0;
        g.bench_function("append_fsync", |b| {
            b.iter(|| {
                i += 1;
                black_box(log.append(&record(i)).expect("append"))
            })
        });
    }

    let path = dir.path().join("verify.jsonl");
    {
        let mut log = AuditLog::open(&path, T0).expect("open");
        for i in 1..VERIFY_ENTRIES {
            log.append(&record(i)).expect("append");
        }
    }
    g.sample_size(10);
    g.throughput(Throughput::Elements(VERIFY_ENTRIES as u64));
    g.bench_function("verify", |b| {
        b.iter(|| {
            let r = verify(&path).expect("intact");
            assert_eq!(r.entries, VERIFY_ENTRIES as u64);
            black_box(r)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
