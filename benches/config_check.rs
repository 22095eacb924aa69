//! `twin check` on a large register map (issue 9): 60,000 registers in one
//! Modbus device, against the same count over ten devices. Checking used to
//! be quadratic in the registers of one device (8–11 s against 0.55 s); the
//! two cases should now take about the same time.
//!
//! Each iteration loads the generated text (parse, decode, validate) and
//! renders the warnings, as `twin check` does. Every tag is bound to a
//! machine so the output is one line, as in a real plant file.
//!
//! Run: `cargo bench --bench config_check -- --warm-up-time 1 --measurement-time 3`.

use std::fmt::Write;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use twin::config::load_str;

const REGISTERS: usize = 60_000;

/// A plant with `registers` holding registers spread evenly over `devices`
/// devices, each register its own tag, all bound to one machine.
fn plant(devices: usize, registers: usize) -> String {
    let per = registers / devices;
    let mut s = String::from("[plant]\nname = \"bench\"\n");
    let mut tags = String::new();
    for d in 0..devices {
        let _ = write!(
            s,
            "\n[[sources.modbus]]\nname = \"d{d}\"\naddress = \"127.0.0.1:502\"\nunit_id = {d}\n"
        );
        for r in 0..per {
            let _ = write!(
                s,
                "[[sources.modbus.registers]]\ntag = \"d{d}.r{r}\"\ntable = \"holding\"\naddress = {r}\n"
            );
            let _ = writeln!(tags, "\"d{d}.r{r}\" = \"d{d}.r{r}\"");
        }
    }
    s + "\n[[machines]]\nid = \"m\"\nkind = \"generic\"\n[machines.tags]\n" + &tags
}

fn check(c: &mut Criterion) {
    let mut g = c.benchmark_group("config_check");
    g.sample_size(10);
    g.throughput(Throughput::Elements(REGISTERS as u64));
    for devices in [1, 10] {
        let text = plant(devices, REGISTERS);
        let cfg = load_str(Path::new("bench.toml"), &text).expect("the generated config is valid");
        assert_eq!(cfg.tags.len(), REGISTERS);
        assert!(cfg.warnings.is_empty(), "{}", cfg.render_warnings());
        g.bench_function(format!("{REGISTERS}_registers_in_{devices}_devices"), |b| {
            b.iter(|| {
                let cfg = load_str(Path::new("bench.toml"), black_box(&text))
                    .expect("the generated config is valid");
                black_box(cfg.render_warnings())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
