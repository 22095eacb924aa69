//! The stage's time-major bank against the per-signal one: the same bits
//! for every feature after every tick, on random streams with bad points,
//! non-finite values, level shifts (which force exact recomputes) and
//! signed zeros.

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use super::*;
use crate::ml::features::{FeatureRow, Scratch, SignalBank};

const STATS: [Stat; 8] = [
    Stat::Value,
    Stat::Mean,
    Stat::Std,
    Stat::Rms,
    Stat::Min,
    Stat::Max,
    Stat::Slope,
    Stat::Lag,
];

fn lcg(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

/// A point of signal `s` at tick `k`: mostly noise on a level that jumps
/// now and then (by up to 1e6, so the sums must recompute), with bad and
/// non-finite points and exact zeros of both signs.
fn point(seed: &mut u64, s: usize, k: usize, offset: f64) -> (f64, bool) {
    let r = lcg(seed) % 1000;
    let level = offset + ((k / 37 + s) % 5) as f64 * if s.is_multiple_of(2) { 1e6 } else { 3.0 };
    let noise = (lcg(seed) % 2001) as f64 / 1000.0 - 1.0;
    match r {
        0..=9 => (f64::NAN, true),
        10..=14 => (f64::INFINITY, r.is_multiple_of(2)),
        15..=44 => (level + noise, false),
        45..=94 => (0.0, true),
        95..=144 => (-0.0, true),
        145..=200 => (level, true),
        _ => (level + noise * 1e-3, true),
    }
}

/// Both banks for `rows` (features over `signals` signals), the per-signal
/// one phased as the time-major one.
fn banks(
    signals: usize,
    rows: &[Vec<FeatureSpec>],
    tick: f64,
) -> (SignalBank, Vec<FeatureRow>, TickBank, Vec<TickRow>) {
    let (tb, trows) = TickBank::build(tick, signals, rows).expect("valid");
    let mut bank = SignalBank::new(tick).expect("tick is valid");
    for _ in 0..signals {
        let id = bank.add_signal();
        bank.set_phase(id, tb.phase(id));
    }
    let frows = rows
        .iter()
        .map(|specs| FeatureRow::new(&mut bank, specs.clone()).expect("valid"))
        .collect();
    (bank, frows, tb, trows)
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn spec_strategy(signals: usize) -> impl Strategy<Value = FeatureSpec> {
    (0..signals, 0..STATS.len(), 1usize..40).prop_map(move |(s, k, n)| FeatureSpec {
        signal: signal(s),
        stat: STATS[k],
        n,
    })
}

fn signal(s: usize) -> SignalId {
    SignalId::new(s as u32)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        rng_seed: RngSeed::Fixed(0x7469_636b_6261_6e6b),
        ..ProptestConfig::default()
    })]

    /// Every feature of every row, and every filled row, is the same bits
    /// in both banks after every tick.
    #[test]
    fn the_time_major_bank_gives_the_per_signal_banks_bits(
        signals in 1usize..20,
        rows in prop::collection::vec(prop::collection::vec(spec_strategy(19), 1..12), 1..5),
        seed in any::<u64>(),
        ticks in 1usize..300,
        offset in prop_oneof![Just(0.0), Just(1e7)],
        tick in prop_oneof![Just(0.1), Just(1.0)],
    ) {
        let rows: Vec<Vec<FeatureSpec>> = rows
            .into_iter()
            .map(|r| r.into_iter().map(|mut f| { f.signal = signal(f.signal.index() % signals); f }).collect())
            .collect();
        let (mut bank, frows, mut tb, trows) = banks(signals, &rows, tick);
        let mut scratch = Scratch::default();
        let mut seed = seed;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut stale = None;
        for k in 0..ticks {
            for s in 0..signals {
                let (v, ok) = point(&mut seed, s, k, offset);
                bank.push(signal(s), v, ok);
                tb.set(signal(s), v, ok);
            }
            tb.commit();
            for (specs, (frow, trow)) in rows.iter().zip(frows.iter().zip(&trows)) {
                for spec in specs {
                    let want = bank.stat(spec.signal, spec.stat, spec.n, &mut scratch).expect("exists");
                    let got = tb.stat(*spec);
                    prop_assert!(same(got.value, want.value),
                        "tick {k}, {} over {} of signal {}: {} against {}",
                        spec.stat, spec.n, spec.signal.index(), got.value, want.value);
                    prop_assert_eq!(got.unusable, want.unusable);
                }
                a.resize(specs.len(), 0.0);
                b.resize(specs.len(), 0.0);
                let qa = frow.fill(&bank, &mut scratch, &mut a).expect("fits");
                let qb = tb.fill(trow, None, &mut b).expect("fits");
                prop_assert_eq!(qa, qb);
                prop_assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
                // The bulk table gives the same bits, prepared on this push
                // for this row; on every other push the last push's proof is
                // offered, and a slot computed a push ago is not read.
                let tabled = if k % 2 == 0 {
                    let table = tb.table_use([trow]);
                    let tabled = tb.prepare(&table, usize::MAX);
                    prop_assert!(tabled.is_some());
                    tabled
                } else {
                    stale
                };
                let qc = tb.fill(trow, tabled, &mut b).expect("fits");
                prop_assert_eq!(qa, qc);
                prop_assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "tick {k}: the table's row {b:?} against {a:?}");
                if k % 2 == 0 {
                    stale = tabled;
                }
            }
        }
    }
}

/// Min and max over the blocks at their seams: ties go to the newer
/// point, as a deque has them, so a window of zeros of both signs reads
/// the newest zero's sign.
#[test]
fn extremes_across_block_seams_keep_the_newest_of_a_tie() {
    let n = 4;
    let specs = vec![
        FeatureSpec {
            signal: signal(0),
            stat: Stat::Max,
            n,
        },
        FeatureSpec {
            signal: signal(0),
            stat: Stat::Min,
            n,
        },
    ];
    let (mut tb, _) = TickBank::build(0.1, 1, std::slice::from_ref(&specs)).expect("valid");
    let points = [
        3.0, 1.0, 0.0, -0.0, 0.0, -0.0, -0.0, 0.0, 5.0, 2.0, 2.0, 1.0,
    ];
    for (k, &v) in points.iter().enumerate() {
        tb.set(signal(0), v, true);
        tb.commit();
        let window = &points[(k + 1).saturating_sub(n)..=k];
        // The newest point among the extreme's ties.
        let max = window
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, |a, x| if a > x { a } else { x });
        let min = window
            .iter()
            .copied()
            .fold(f64::INFINITY, |a, x| if a < x { a } else { x });
        assert_eq!(
            tb.stat(specs[0]).value.to_bits(),
            max.to_bits(),
            "max at {k}"
        );
        assert_eq!(
            tb.stat(specs[1]).value.to_bits(),
            min.to_bits(),
            "min at {k}"
        );
    }
}

/// Signals that keep different things live in different groups: a lag
/// does not get a long ring because another signal's window needs one.
#[test]
fn signals_are_grouped_by_what_they_keep() {
    let rows = vec![vec![
        FeatureSpec {
            signal: signal(0),
            stat: Stat::Mean,
            n: 300,
        },
        FeatureSpec {
            signal: signal(1),
            stat: Stat::Lag,
            n: 5,
        },
        FeatureSpec {
            signal: signal(2),
            stat: Stat::Mean,
            n: 300,
        },
    ]];
    let (tb, _) = TickBank::build(0.1, 3, &rows).expect("valid");
    assert_eq!(tb.groups.len(), 2);
    let caps: Vec<(usize, usize)> = tb.groups.iter().map(|g| (g.cap, g.width)).collect();
    assert_eq!(caps, [(300, 2), (6, 1)]);
}

/// Set-up mistakes are the per-signal bank's errors.
#[test]
fn a_window_of_no_points_or_an_unknown_signal_is_refused() {
    let empty = vec![vec![FeatureSpec {
        signal: signal(0),
        stat: Stat::Std,
        n: 0,
    }]];
    assert!(matches!(
        TickBank::build(0.1, 1, &empty),
        Err(FeatureError::EmptyWindow { feature: 0, .. })
    ));
    let unknown = vec![vec![FeatureSpec {
        signal: signal(3),
        stat: Stat::Value,
        n: 0,
    }]];
    assert!(matches!(
        TickBank::build(0.1, 2, &unknown),
        Err(FeatureError::UnknownSignal { signal: 3, .. })
    ));
    assert!(matches!(
        TickBank::build(0.0, 1, &[]),
        Err(FeatureError::BadTick(_))
    ));
}

/// The bulk table is computed only when enough features are due to pay
/// for it, and once per push for every model that shares a slot.
#[test]
fn the_bulk_table_is_computed_when_it_pays_and_once_per_push() {
    let specs: Vec<Vec<FeatureSpec>> = (0..8)
        .map(|s| {
            vec![
                FeatureSpec {
                    signal: signal(s),
                    stat: Stat::Mean,
                    n: 4,
                },
                FeatureSpec {
                    signal: signal(s),
                    stat: Stat::Value,
                    n: 0,
                },
            ]
        })
        .collect();
    let (mut tb, rows) = TickBank::build(0.1, 8, &specs).expect("valid");
    for k in 0..6 {
        for s in 0..8 {
            tb.set(signal(s), (k * 8 + s) as f64, true);
        }
        tb.commit();
    }
    let all = tb.table_use(&rows);
    // Two slots (mean and value) of 8 columns each.
    assert_eq!(all.entries, 16);
    // One row of 2 features due: not worth 16 entries.
    assert_eq!(tb.prepare(&all, 2), None);
    let tabled = tb.prepare(&all, 8);
    assert!(tabled.is_some());
    // Computed on this push: free for any number of due features.
    assert_eq!(tb.prepare(&all, 0), tabled);
    let mut out = [0.0f32; 2];
    assert_eq!(tb.fill(&rows[3], tabled, &mut out), Ok(RowQuality::Good));
    // Signal 3's last four points: 19, 27, 35, 43.
    assert_eq!(out, [31.0, 43.0]);
    tb.set(signal(3), 1000.0, true);
    tb.commit();
    // A push later the proof is stale: the row is read without the table.
    assert_eq!(tb.fill(&rows[3], tabled, &mut out), Ok(RowQuality::Good));
    assert_eq!(out[1], 1000.0);
    assert_eq!(tb.prepare(&all, 2), None);
}

/// The AVX2 build of the push and the table gives the baseline build's
/// bits (on a host with AVX2; elsewhere both are the baseline).
#[test]
fn the_avx2_build_gives_the_baseline_builds_bits() {
    let signals = 37;
    let rows: Vec<Vec<FeatureSpec>> = (0..signals)
        .map(|s| {
            STATS
                .iter()
                .enumerate()
                .map(|(k, &stat)| FeatureSpec {
                    signal: signal(s),
                    stat,
                    n: [5, 16, 5, 9, 16, 5, 16, 3][k],
                })
                .collect()
        })
        .collect();
    let (mut wide, wrows) = TickBank::build(0.1, signals, &rows).expect("valid");
    let (mut base, brows) = TickBank::build(0.1, signals, &rows).expect("valid");
    base.simd = Simd::Baseline;
    let all = wide.table_use(&wrows);
    let mut seed = 7u64;
    let (mut a, mut b) = (vec![0.0f32; STATS.len()], vec![0.0f32; STATS.len()]);
    for k in 0..400 {
        for s in 0..signals {
            let (v, ok) = point(&mut seed, s, k, 1e7);
            wide.set(signal(s), v, ok);
            base.set(signal(s), v, ok);
        }
        wide.commit();
        base.commit();
        let tw = wide.prepare(&all, usize::MAX);
        let tb = base.prepare(&all, usize::MAX);
        assert_eq!(
            wide.table.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            base.table.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            "tick {k}: the tables"
        );
        for (specs, (wr, br)) in rows.iter().zip(wrows.iter().zip(&brows)) {
            for spec in specs {
                let (x, y) = (wide.stat(*spec), base.stat(*spec));
                assert!(same(x.value, y.value), "tick {k}: {spec:?}");
                assert_eq!(x.unusable, y.unusable);
            }
            assert_eq!(wide.fill(wr, tw, &mut a), base.fill(br, tb, &mut b));
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }
}
