//! One line of the virtual plant: building its truth from the config (the
//! twin's own physics model, with spawns scheduled in sim time) and one
//! physics step of it, with the belt pull the motor-current model reads.

use super::*;

pub(super) fn build_line(cfg: &LoadedConfig, cfg_line: usize) -> LineTruth {
    let line = &cfg.config.lines[cfg_line];
    // Spawns are scheduled here in sim time (as the twin does in tick
    // time), so the model's own step-counted spawner is off.
    let mut geometry = line.clone();
    let spawn = geometry
        .product
        .as_mut()
        .and_then(|p| p.spawn_interval.take());
    let model = LineModel::new(&geometry, PHYSICS_DT);
    let belts = line
        .conveyors
        .iter()
        .map(|cv| {
            let speed = belt_speed_model(cfg, &cv.speed_tag.value);
            let nominal = nominal_of(&speed).unwrap_or(0.6);
            // As the physics lays the belt out (the one layout walk), in
            // the model's local frame, where product offsets are exact.
            let [ox, oy] = model.frame().origin();
            let segs = Layout::of(cv)
                .pieces
                .iter()
                .map(|p| Seg {
                    x0: p.start[0] - ox,
                    y0: p.start[1] - oy,
                    dx: p.dir[0],
                    dy: p.dir[1],
                    len: p.length,
                    half_w: cv.width.value / 2.0,
                    height: cv.height,
                })
                .collect();
            Belt {
                speed,
                nominal,
                drive: 0.0,
                slip: 0.0,
                segs,
                force_sum: 0.0,
                force_steps: 0,
                force: 0.0,
                target: None,
                reference: nominal,
                physical: (f64::NEG_INFINITY, f64::INFINITY),
                ramp_per_s: f64::INFINITY,
                energy_j: 0.0,
            }
        })
        .collect();
    // The first product type, as the model runs it: the virtual plant
    // never changes over (docs/sim.md, "Known limits"), so every product
    // on its belts is this type and its mass and friction are theirs.
    let p = line.product.as_ref();
    let cycles = model
        .stations()
        .iter()
        .map(|s| {
            s.cycle().map(|c| CycleTruth {
                commissioned: c.as_secs_f64(),
                target: None,
                reference: c.as_secs_f64(),
                physical: (f64::NEG_INFINITY, f64::INFINITY),
                ramp_per_s: f64::INFINITY,
                drift: None,
                wear: 0.0,
                managed: false,
            })
        })
        .collect();
    let spawn_ns = spawn.map(|s| to_ns(s).max(1));
    LineTruth {
        cfg_line,
        id: line.id.value.clone(),
        belt_ids: line.conveyors.iter().map(|c| c.id.value.clone()).collect(),
        speed_jams: Vec::new(),
        cycles,
        base_spawn_ns: spawn_ns,
        model,
        belts,
        spawn_ns,
        next_spawn_ns: 0,
        counts: LineCounts::default(),
        mass: p.map_or(0.0, |p| p.mass),
        friction: p.map_or(0.6, |p| p.friction),
        reach: p.map_or(0.2, |p| p.length.max(p.width).max(p.height)),
        eye_stuck: vec![None; line.photo_eyes.len()],
        obstacles: Vec::new(),
        busy_steps: vec![0; line.stations.len()],
        busy: vec![0.0; line.stations.len()],
        station_machine: line
            .stations
            .iter()
            .map(|s| {
                cfg.config
                    .machines
                    .iter()
                    .position(|m| m.id.value == s.id.value)
            })
            .collect(),
    }
}

impl LineTruth {
    /// One physics step starting at `t_ns`: spawn if due, step, measure
    /// each belt's pull, remove finished products.
    pub(super) fn step(&mut self, t_ns: u64) {
        if let Some(every) = self.spawn_ns
            && t_ns >= self.next_spawn_ns
        {
            self.next_spawn_ns = self.next_spawn_ns.saturating_add(every);
            if self.model.infeed_clear() {
                if self.model.spawn_product().is_ok() {
                    self.counts.spawned += 1;
                }
            } else {
                self.counts.infeed_blocked += 1;
            }
        }
        let before = self.model.product_offsets();
        // The model's spawner is off, so a step cannot fail.
        let _ = self.model.step();
        let after = self.model.product_offsets();
        self.measure_pull(&before, &after);
        for (n, s) in self.busy_steps.iter_mut().zip(self.model.stations()) {
            *n += u32::from(s.holding());
        }
        let done = self.model.remove_finished();
        self.counts.out += done.out as u64;
        self.counts.lost += done.lost as u64;
    }

    /// Adds this step's belt pull to each belt: a product carried with the
    /// belt needs [`CARRY_RESISTANCE`] of its weight, one the belt slides
    /// under (held, queued, jammed) its friction times its weight.
    fn measure_pull(&mut self, before: &[PlanPoint], after: &[PlanPoint]) {
        let dt = DT_NS as f64 / 1e9;
        let mut force = vec![0.0; self.belts.len()];
        for (a, b) in before.iter().zip(after) {
            let (x, y, z) = (f64::from(b.x), f64::from(b.y), f64::from(b.z));
            let vx = (x - f64::from(a.x)) / dt;
            let vy = (y - f64::from(a.y)) / dt;
            'belts: for (i, belt) in self.belts.iter().enumerate() {
                for s in &belt.segs {
                    let (rx, ry) = (x - s.x0, y - s.y0);
                    let along = rx * s.dx + ry * s.dy;
                    let lateral = (rx * s.dy - ry * s.dx).abs();
                    let resting = z >= s.height && z <= s.height + self.reach;
                    if !(0.0..=s.len).contains(&along) || lateral > s.half_w || !resting {
                        continue;
                    }
                    let surface = belt.drive * (1.0 - belt.slip);
                    let v = vx * s.dx + vy * s.dy;
                    let slipping = surface.abs() > 0.01 && v / surface < SLIP_RATIO;
                    let mu = if slipping {
                        self.friction
                    } else {
                        CARRY_RESISTANCE
                    };
                    force[i] += mu * self.mass * G;
                    break 'belts;
                }
            }
        }
        for (b, f) in self.belts.iter_mut().zip(force) {
            b.force_sum += f;
            b.force_steps += 1;
        }
    }
}
