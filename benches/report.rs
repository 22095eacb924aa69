//! `twin report` on an hour of a demo-sized stream (issue 10, QA workflow):
//! one `line` event a second and 28 tags changing every 2 s, about 54,000
//! lines, generated before timing. Each iteration parses every line, folds
//! it into the bounded series, draws the plots and writes the page, as
//! `twin report` does (less the file reading). Lines per second here tell
//! how long a day's file takes: memory does not depend on the length.
//!
//! Run: `cargo bench --bench report -- --warm-up-time 1 --measurement-time 5`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use twin::report::{ReportOptions, render};

const SECONDS: i64 = 3_600;
const TAGS: i64 = 28;

fn stream() -> Vec<String> {
    let t = |ms: i64| {
        format!(
            "2027-01-15T{:02}:{:02}:{:02}.{:03}Z",
            ms / 3_600_000,
            (ms / 60_000) % 60,
            (ms / 1000) % 60,
            ms % 1000
        )
    };
    let mut out = Vec::new();
    for tick in 0..SECONDS * 10 {
        let ms = tick * 100;
        for i in 0..TAGS {
            if (tick + i) % 20 == 0 {
                let v = ((ms as f64) / 300_000.0 + i as f64).sin() * 10.0 + i as f64;
                out.push(format!(
                    r#"{{"v":1,"type":"tag","t":"{}","tag":"m{}.t{i}","machine":"m{}","value":{v:.3},"quality":"good","unit":"u","src_t":"{}"}}"#,
                    t(ms),
                    i / 4,
                    i / 4,
                    t(ms)
                ));
            }
        }
        if tick % 10 == 0 {
            out.push(format!(
                r#"{{"v":1,"type":"line","t":"{}","line":"line1","wip":{},"out":{},"lost":0,"throughput_per_min":57.0,"quality":"good","zones":{{"infeed":8,"outfeed":10}}}}"#,
                t(ms),
                17 + tick % 3,
                tick / 10
            ));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let lines = stream();
    let mut g = c.benchmark_group("report");
    g.sample_size(10);
    g.throughput(Throughput::Elements(lines.len() as u64));
    g.bench_function("hour_of_demo_stream", |b| {
        b.iter(|| {
            let opts = ReportOptions {
                source: "bench.jsonl".into(),
                ..ReportOptions::default()
            };
            let page = render(
                opts,
                lines.iter().map(|l| Ok::<_, std::io::Error>(l.as_bytes())),
                std::iter::empty(),
            );
            black_box(page.map(|p| p.len()).unwrap_or(0))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
