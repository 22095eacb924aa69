//! Physics step time against product count (issue 4): the twin's line model
//! against raw rapier with the same bodies, in the same run.
//!
//! Run: `cargo bench --bench physics` (add `--features enhanced-determinism`
//! to measure that feature). Figures and how to read them are in
//! docs/benchmarks.md, "Physics".
//!
//! Scenario: N products (100, 1,000, 5,000, 20,000) of 5 cm cubes (upright,
//! rounded edges, as the twin's products are), 100 to a belt at a 0.1 m
//! pitch (they never touch), on N / 100 parallel straight 12 m belts
//! running at 0.5 m/s, stepped at 5 ms.
//!
//! - `twin`: one [`LineModel::step`] per iteration plus, every 20th (one
//!   100 ms tick), what `LineState::tick` does around the steps: set every
//!   belt's speed, `remove_finished`, `product_count`.
//! - `raw`: a `PhysicsWorld` built here with the same colliders, bodies and
//!   insertion order, and a minimal conveyor hook, stepped with
//!   `step_with_events(&hooks, &())`. After the warm-up both worlds hold
//!   bit-identical positions (checked), so they are the same simulation.
//! - `physics_fixtures`: the same with one station and one photo-eye per
//!   belt, placed past where products get during the measurement (so the
//!   station scans run in full and no product is caught; the raw world has
//!   the same eye sensor colliders).
//! - `tick_no_products`: a real `TwinCore` tick (speed samples pushed,
//!   `advance`, events drained and encoded) against the same line's bare
//!   model tick, with no products; the difference is the ECS sync per tick.
//!
//! Every 200 steps the worlds are reset to their warmed-up copies outside
//! the timed region, so products never reach the fixtures or the belt ends.
//!
//! Criterion is given the bench thread's CPU time, not wall time: on the
//! shared 2-core machine these figures are measured on, wall time counts
//! whatever else runs (compilers) and scatters by ±30 %. After the criterion
//! benchmarks a paired run prints the ratio twin/raw per N with both stepped
//! alternately, tick by tick, in CPU and in wall time, which also keeps a
//! busy machine's drift out of the ratio.

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use rapier3d::prelude::{
    ActiveCollisionTypes, ActiveHooks, ColliderBuilder, CollisionPipeline,
    ContactModificationContext, PhysicsHooks, PhysicsPipeline, PhysicsWorld, RigidBodyBuilder,
    RigidBodyHandle, Vector,
};
use twin::config::{LoadedConfig, TagId, load_str};
use twin::physics::{LineModel, convert};
use twin::twin::{Sample, TickClock, TwinCore, Value};
use twin::wallclock;

const DT: Duration = Duration::from_millis(5);
/// Steps per 100 ms tick.
const SUBSTEPS: u64 = 20;
const PER_BELT: usize = 100;
const PITCH: f64 = 0.1;
const BELT_LEN: f64 = 12.0;
const BELT_WIDTH: f64 = 0.3;
/// Lateral distance between belt centre lines.
const BELT_SPACING: f64 = 0.5;
const BELT_HEIGHT: f64 = 0.8;
const SPEED: f32 = 0.5;
/// Product cube side, m; mass, kg; friction.
const SIDE: f64 = 0.05;
const MASS: f64 = 0.1;
const FRICTION: f64 = 0.6;
/// Where the fixtures stand: the leading product starts at 9.95 m and moves
/// at most 0.6 m before a reset.
const EYE_AT: f64 = 11.0;
const STATION_AT: f64 = 11.5;
/// Steps before the measured state: products drop 2 mm onto their belts and
/// reach belt speed (0.5 m/s at 0.6 g takes 85 ms).
const WARM_STEPS: u64 = 24;
const RESET_EVERY: u64 = 200;

/// Mirrors of `physics`' private geometry constants (checked by the
/// bit-identity assertion in [`Scenario::new`]).
const BELT_THICKNESS: f64 = 0.05;
const DROP_GAP: f64 = 0.002;
const EYE_HALF_HEIGHT: f32 = 0.25;
const EYE_HALF_THICKNESS: f32 = 0.005;
const EYE_GAP: f32 = 0.001;
const PRODUCT_EDGE_RADIUS: f64 = 0.004;

const T0: i64 = 1_800_000_000_000_000_000;
const TICK_NS: i64 = 100_000_000;

const SIZES: [usize; 4] = [100, 1_000, 5_000, 20_000];

/// A plant with one line of `belts` parallel belts (speed tags on one Modbus
/// device); with `fixtures`, one station and one photo-eye per belt.
fn plant(belts: usize, fixtures: bool) -> LoadedConfig {
    let mut t = String::from(
        "version = 1\n[plant]\nname = \"physics bench\"\ntick = \"100ms\"\nstale_after = \"10s\"\n\
         [[sources.modbus]]\nname = \"plc\"\naddress = \"127.0.0.1:5020\"\nunit_id = 1\n\
         poll_interval = \"100ms\"\n",
    );
    for i in 0..belts {
        t += &format!(
            "[[sources.modbus.registers]]\ntag = \"b{i}.speed\"\ntable = \"holding\"\n\
             address = {i}\ntype = \"u16\"\nscale = 0.001\nunit = \"m/s\"\n"
        );
        if fixtures {
            t += &format!(
                "[[sources.modbus.registers]]\ntag = \"b{i}.eye\"\ntable = \"discrete\"\n\
                 address = {i}\n"
            );
        }
    }
    t += "[[lines]]\nid = \"bench\"\n";
    for i in 0..belts {
        t += &format!(
            "[[lines.conveyors]]\nid = \"b{i}\"\nspeed_tag = \"b{i}.speed\"\n\
             width = {BELT_WIDTH}\nheight = {BELT_HEIGHT}\norigin = [0.0, {y}]\n\
             [[lines.conveyors.segments]]\nlength = {BELT_LEN}\n",
            y = i as f64 * BELT_SPACING
        );
    }
    t += &format!(
        "[lines.product]\nlength = {SIDE}\nwidth = {SIDE}\nheight = {SIDE}\nmass = {MASS}\n\
         friction = {FRICTION}\n"
    );
    if fixtures {
        for i in 0..belts {
            t += &format!(
                "[[lines.stations]]\nid = \"s{i}\"\nconveyor = \"b{i}\"\n\
                 position = {STATION_AT}\ncycle_time = \"1s\"\n\
                 [[lines.photo_eyes]]\nid = \"e{i}\"\nconveyor = \"b{i}\"\n\
                 position = {EYE_AT}\ntag = \"b{i}.eye\"\n"
            );
        }
    }
    match load_str(Path::new("physics-bench.toml"), &t) {
        Ok(cfg) => cfg,
        Err(report) => panic!("bench plant is invalid: {report:?}"),
    }
}

/// Where product `k` of a belt starts, m along it.
fn product_at(k: usize) -> f64 {
    PITCH / 2.0 + k as f64 * PITCH
}

/// The minimal conveyor hook: belts (`user_data != 0`) push along +x.
struct RawBelts {
    v: Vector,
    dir: Vector,
    /// Per belt (user data - 1): the start of its centre line.
    starts: Vec<Vector>,
}

/// The twin's guide-rail pull (src/physics/mod.rs, `BeltHooks`), written
/// out here with the same operations in the same order, so the raw world is
/// the same simulation bit for bit.
const GUIDE_GAIN: f32 = 2.0;
const GUIDE_MAX: f32 = 0.25;

impl PhysicsHooks for RawBelts {
    fn modify_solver_contacts(&self, cx: &mut ContactModificationContext) {
        let (ud, body, sign) = if cx.colliders[cx.collider1].user_data != 0 {
            (cx.colliders[cx.collider1].user_data, cx.rigid_body2, 1.0)
        } else {
            (cx.colliders[cx.collider2].user_data, cx.rigid_body1, -1.0)
        };
        let mut v = self.v;
        if let (Some(start), Some(b)) = (
            self.starts.get(ud as usize - 1),
            body.and_then(|h| cx.bodies.get(h)),
        ) {
            let rel = b.translation() - *start;
            let lateral = rel - self.dir * rel.dot(self.dir) - Vector::Y * rel.y;
            let pull = -lateral * GUIDE_GAIN;
            let len = pull.length();
            let pull = if len > GUIDE_MAX {
                pull * (GUIDE_MAX / len)
            } else {
                pull
            };
            v = self.v + pull;
        }
        let v = if sign > 0.0 { v } else { -v };
        if let Some(rigid) = cx.rigid_mut() {
            for c in rigid.solver_contacts.iter_mut() {
                c.tangent_velocity = v;
            }
        }
    }
}

/// Raw rapier with the twin's colliders and bodies, inserted in the twin's
/// order (belts, eyes, products), so handles and results match.
fn raw_world(belts: usize, fixtures: bool) -> (PhysicsWorld, Vec<RigidBodyHandle>) {
    let mut w = PhysicsWorld::new();
    w.integration_parameters.dt = DT.as_secs_f32();
    let half_w = BELT_WIDTH / 2.0;
    for i in 0..belts {
        let y = i as f64 * BELT_SPACING;
        let belt = ColliderBuilder::cuboid(
            (BELT_LEN / 2.0) as f32,
            (BELT_THICKNESS / 2.0) as f32,
            half_w as f32,
        )
        .translation(convert::to_world(
            BELT_LEN / 2.0,
            y,
            BELT_HEIGHT - BELT_THICKNESS / 2.0,
        ))
        .rotation(convert::heading_rotation(0.0))
        .active_hooks(ActiveHooks::MODIFY_SOLVER_CONTACTS)
        .user_data(i as u128 + 1)
        .build();
        w.colliders.insert(belt);
    }
    if fixtures {
        for i in 0..belts {
            let y = i as f64 * BELT_SPACING;
            let eye = ColliderBuilder::cuboid(EYE_HALF_THICKNESS, EYE_HALF_HEIGHT, half_w as f32)
                .sensor(true)
                .active_collision_types(ActiveCollisionTypes::all())
                .translation(
                    convert::to_world(EYE_AT, y, BELT_HEIGHT)
                        + Vector::Y * (EYE_GAP + EYE_HALF_HEIGHT),
                )
                .rotation(convert::heading_rotation(0.0))
                .build();
            w.colliders.insert(eye);
        }
    }
    let mut products = Vec::with_capacity(belts * PER_BELT);
    let volume = SIDE * SIDE * SIDE;
    let r = (SIDE * 0.1).min(PRODUCT_EDGE_RADIUS);
    let half = (SIDE / 2.0 - r) as f32;
    for i in 0..belts {
        let y = i as f64 * BELT_SPACING;
        for k in 0..PER_BELT {
            let center = convert::to_world(product_at(k), y, BELT_HEIGHT)
                + Vector::Y * (SIDE / 2.0 + DROP_GAP) as f32;
            let body = RigidBodyBuilder::dynamic()
                .translation(center)
                .rotation(Vector::Y * 0.0)
                .enabled_rotations(false, true, false)
                .can_sleep(false);
            let collider = ColliderBuilder::round_cuboid(half, half, half, r as f32)
                .density((MASS / volume) as f32)
                .friction(FRICTION as f32);
            products.push(w.insert(body, collider).0);
        }
    }
    (w, products)
}

/// An independent copy of a raw world (as `LineModel`'s `Clone` does it).
fn clone_world(w: &PhysicsWorld) -> PhysicsWorld {
    PhysicsWorld {
        gravity: w.gravity,
        integration_parameters: w.integration_parameters,
        physics_pipeline: PhysicsPipeline::new(),
        collision_pipeline: CollisionPipeline::new(),
        islands: w.islands.clone(),
        broad_phase: w.broad_phase.clone(),
        narrow_phase: w.narrow_phase.clone(),
        bodies: w.bodies.clone(),
        colliders: w.colliders.clone(),
        impulse_joints: w.impulse_joints.clone(),
        multibody_joints: w.multibody_joints.clone(),
        soft_bodies: w.soft_bodies.clone(),
        ccd_solver: w.ccd_solver.clone(),
    }
}

/// One N: the warmed-up twin model and raw world to copy from.
struct Scenario {
    belts: usize,
    twin: LineModel,
    raw: PhysicsWorld,
    hooks: RawBelts,
}

impl Scenario {
    fn new(n: usize, fixtures: bool) -> Self {
        let belts = n.div_ceil(PER_BELT);
        let cfg = plant(belts, fixtures);
        let mut twin = LineModel::new(&cfg.config.lines[0], DT);
        for b in 0..belts {
            twin.set_belt_speed_at(b, SPEED).expect("bench belt exists");
            for k in 0..PER_BELT {
                twin.spawn_product_at(b, product_at(k))
                    .expect("bench line has a product");
            }
        }
        let (mut raw, products) = raw_world(belts, fixtures);
        let hooks = RawBelts {
            v: convert::heading_dir(0.0) * SPEED,
            dir: convert::heading_dir(0.0),
            starts: (0..belts)
                .map(|i| convert::to_world(0.0, i as f64 * BELT_SPACING, BELT_HEIGHT))
                .collect(),
        };
        for _ in 0..WARM_STEPS {
            twin.step().expect("no spawner");
            raw.step_with_events(&hooks, &());
        }
        // Same simulation: the twin's positions are the raw world's, bit
        // for bit, so the ratio compares like with like.
        let tp = twin.product_positions();
        assert_eq!(tp.len(), products.len());
        for (t, h) in tp.iter().zip(&products) {
            let r = convert::to_plan(raw.bodies[*h].translation());
            assert!(
                (t.x.to_bits(), t.y.to_bits(), t.z.to_bits())
                    == (r.x.to_bits(), r.y.to_bits(), r.z.to_bits()),
                "raw world diverged from the twin's: {t:?} vs {r:?}"
            );
        }
        Scenario {
            belts,
            twin,
            raw,
            hooks,
        }
    }
}

/// One twin step; `i` counts steps since the reset, and the tick's work
/// around its steps runs with its first and last step.
fn twin_step(m: &mut LineModel, belts: usize, i: u64) {
    if i.is_multiple_of(SUBSTEPS) {
        for b in 0..belts {
            let _ = m.set_belt_speed_at(b, SPEED);
        }
    }
    let _ = m.step();
    if i % SUBSTEPS == SUBSTEPS - 1 {
        black_box(m.remove_finished());
        black_box(m.product_count());
    }
}

fn step_vs_product_count(c: &mut Criterion) {
    for fixtures in [false, true] {
        let name = if fixtures {
            "physics_fixtures"
        } else {
            "physics"
        };
        let mut g = c.benchmark_group(name);
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_millis(1_500))
            .sampling_mode(SamplingMode::Flat);
        for n in SIZES {
            let s = Scenario::new(n, fixtures);
            g.bench_function(format!("twin/{n}"), |b| {
                b.iter_custom(|iters| {
                    let mut m = s.twin.clone();
                    let mut spent = Spent::default();
                    for i in 0..iters {
                        let i = i % RESET_EVERY;
                        if i == 0 && spent.wall > Duration::ZERO {
                            m = s.twin.clone();
                        }
                        timed(&mut spent, || twin_step(&mut m, s.belts, i));
                    }
                    spent.cpu
                });
            });
            g.bench_function(format!("raw/{n}"), |b| {
                b.iter_custom(|iters| {
                    let mut w = clone_world(&s.raw);
                    let mut spent = Spent::default();
                    for i in 0..iters {
                        if i % RESET_EVERY == 0 && i > 0 {
                            w = clone_world(&s.raw);
                        }
                        timed(&mut spent, || w.step_with_events(&s.hooks, &()));
                    }
                    spent.cpu
                });
            });
        }
        g.finish();
    }
}

/// The ECS sync per tick, which does not depend on the product count: a
/// real `TwinCore` tick against the same line's model tick, no products.
fn ecs_sync(c: &mut Criterion) {
    let mut g = c.benchmark_group("tick_no_products");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_millis(1_500));
    for belts in [1usize, 200] {
        let cfg = plant(belts, false);
        let speed_tags: Vec<TagId> = (0..belts)
            .map(|b| cfg.tags.id(&format!("b{b}.speed")).expect("speed tag"))
            .collect();
        g.bench_function(format!("core_tick/{belts}_belts"), |b| {
            b.iter_custom(|iters| {
                let mut core = TwinCore::new(&cfg, TickClock::new(T0, DT * SUBSTEPS as u32));
                let mut buf = Vec::with_capacity(1 << 16);
                let mut spent = Spent::default();
                for _ in 0..iters {
                    let at = core.clock().now_ns() + TICK_NS - 1_000;
                    let batch = speed_tags
                        .iter()
                        .map(|t| Sample::good(*t, Value::Num(f64::from(SPEED)), at, at))
                        .collect();
                    timed(&mut spent, || {
                        core.push_batch(batch);
                        core.advance();
                        let ev = core.drain_events();
                        buf.clear();
                        core.encode_events(&ev, &mut buf);
                        black_box(buf.len());
                    });
                }
                spent.cpu
            });
        });
        g.bench_function(format!("model_tick/{belts}_belts"), |b| {
            let mut m = LineModel::new(&cfg.config.lines[0], DT);
            b.iter_custom(|iters| {
                let mut spent = Spent::default();
                for _ in 0..iters {
                    timed(&mut spent, || {
                        for i in 0..SUBSTEPS {
                            twin_step(&mut m, belts, i);
                        }
                    });
                }
                spent.cpu
            });
        });
    }
    g.finish();
}

use twin::wallclock::thread_cpu_time;

/// Wall and CPU time of one timed stretch, summed.
#[derive(Default, Clone, Copy)]
struct Spent {
    wall: Duration,
    cpu: Duration,
}

fn timed(spent: &mut Spent, f: impl FnOnce()) {
    let (w, c) = (wallclock::monotonic(), thread_cpu_time());
    f();
    spent.cpu += thread_cpu_time().saturating_sub(c);
    spent.wall += wallclock::since(w);
}

/// Twin and raw stepped alternately, one tick (20 steps) each, so both see
/// the same machine load, for about 1.5 s of raw CPU time per N; prints
/// time per step (CPU time of the bench thread, and wall time) and the
/// ratio per N. `PHYSICS_BENCH_NO_PAIRED=1` skips it (e.g. with
/// `--profile-time`).
fn paired_ratio(_: &mut Criterion) {
    if std::env::var_os("PHYSICS_BENCH_NO_PAIRED").is_some() {
        return;
    }
    eprintln!(
        "\npaired run (alternating ticks), per step: CPU time twin / raw = ratio [wall-time ratio]"
    );
    for fixtures in [false, true] {
        for n in SIZES {
            let s = Scenario::new(n, fixtures);
            let (mut m, mut w) = (s.twin.clone(), clone_world(&s.raw));
            let (mut tt, mut tr) = (Spent::default(), Spent::default());
            let mut ticks = 0u64;
            while ticks < 4 || tr.cpu < Duration::from_millis(1_500) {
                let base = (ticks * SUBSTEPS) % RESET_EVERY;
                if base == 0 && ticks > 0 {
                    m = s.twin.clone();
                    w = clone_world(&s.raw);
                }
                timed(&mut tr, || {
                    for _ in 0..SUBSTEPS {
                        w.step_with_events(&s.hooks, &());
                    }
                });
                timed(&mut tt, || {
                    for i in 0..SUBSTEPS {
                        twin_step(&mut m, s.belts, base + i);
                    }
                });
                ticks += 1;
            }
            let steps = u32::try_from(ticks * SUBSTEPS).unwrap_or(u32::MAX);
            eprintln!(
                "{:>8} N={n:>6}: twin {:>9.1?}  raw {:>9.1?}  ratio {:.3}  [wall {:.3}]  ({steps} steps each)",
                if fixtures { "fixtures" } else { "belts" },
                tt.cpu / steps,
                tr.cpu / steps,
                tt.cpu.as_secs_f64() / tr.cpu.as_secs_f64(),
                tt.wall.as_secs_f64() / tr.wall.as_secs_f64(),
            );
        }
    }
}

criterion_group!(benches, step_vs_product_count, ecs_sync, paired_ratio);
criterion_main!(benches);
