//! Shared builders for the physics checks: lines built by hand (no config
//! file), so that each check states only what it is about.

use std::time::Duration;

use super::{Finished, LineModel};
use crate::config::{Conveyor, Line, Loc, Product, Segment};

/// 240 Hz, a common physics rate, rounded to whole nanoseconds.
pub const DT: Duration = Duration::from_nanos(4_166_667);
/// Steps per second at [`DT`].
pub const STEPS_PER_S: u32 = 240;

/// A value with no place in a file.
pub fn loc<T>(v: T) -> Loc<T> {
    Loc::new(v, 0..0)
}

/// A conveyor `id` (speed tag `ID.speed`), `width` wide with its surface
/// 0.8 m up, starting at `origin`, made of straight `(length, heading)`
/// segments.
pub fn belt(id: &str, width: f64, origin: [f64; 2], segments: &[(f64, f64)]) -> Conveyor {
    Conveyor {
        id: loc(id.into()),
        speed_tag: loc(format!("{id}.speed")),
        width: loc(width),
        height: 0.8,
        origin,
        segments: segments
            .iter()
            .map(|&(length, heading)| Segment {
                length: loc(length),
                heading,
                curve: None,
            })
            .collect(),
        accumulation_zone: None,
    }
}

/// A box product `(length, width, height)` of `mass` kg, friction 0.6, with
/// no arrivals of its own.
pub fn product(size: (f64, f64, f64), mass: f64) -> Product {
    Product {
        length: size.0,
        width: size.1,
        height: size.2,
        mass,
        friction: 0.6,
        spawn_interval: None,
        infeed_counter_tag: None,
    }
}

/// A 0.2 m cube of 1 kg, the checks' usual product.
pub fn cube() -> Product {
    product((0.2, 0.2, 0.2), 1.0)
}

/// Line `l1` with `conveyors` and `product`, and nothing else.
pub fn line(conveyors: Vec<Conveyor>, product: Option<Product>) -> Line {
    Line {
        id: loc("l1".into()),
        name: None,
        machines: Vec::new(),
        conveyors,
        undecoded_conveyors: Vec::new(),
        product,
        products: Vec::new(),
        product_tag: None,
        products_listed: false,
        stations: Vec::new(),
        photo_eyes: Vec::new(),
        pushers: Vec::new(),
        diverters: Vec::new(),
        zones: Vec::new(),
        residual_tolerance: None,
        jam_after: None,
        late_window: None,
        stuck_off_after: None,
    }
}

/// What a run removed, summed over every step.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub out: usize,
    pub lost: usize,
    pub pushed: usize,
    pub diverted: usize,
}

impl Tally {
    pub fn add(&mut self, f: Finished) {
        self.out += f.out;
        self.lost += f.lost;
        self.pushed += f.pushed;
        self.diverted += f.diverted;
    }
}

/// Spawns `n` products at the first belt's start 2 s apart and runs `m`
/// until every one is gone or `secs` have passed, calling `coils(m, step)`
/// before each step (to set the coils) and removing finished products
/// after each. Every product must have spawned and left.
pub fn run_with_coils(
    mut m: LineModel,
    n: usize,
    secs: u32,
    mut coils: impl FnMut(&mut LineModel, u32),
) -> (LineModel, Tally) {
    let mut tally = Tally::default();
    let mut spawned = 0;
    for step in 0..(secs * STEPS_PER_S) {
        if spawned < n && step % (2 * STEPS_PER_S) == 0 {
            m.spawn_product().expect("product");
            spawned += 1;
        }
        coils(&mut m, step);
        m.step().expect("step");
        tally.add(m.remove_finished());
        if spawned == n && m.product_count() == 0 {
            break;
        }
    }
    assert_eq!(spawned, n, "every product spawned");
    assert_eq!(m.product_count(), 0, "products left on the line");
    (m, tally)
}
