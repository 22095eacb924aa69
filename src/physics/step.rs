//! Stepping: the one way time moves in a model, a fixed `dt` at a time,
//! with each device updated around rapier's step in a fixed order.

use std::time::Duration;

use super::drive::BeltDrive;
use super::{LineModel, PhysicsError};

impl LineModel {
    /// Advances the model by one fixed `dt`, spawning a product first when
    /// the spawn interval says so.
    pub fn step(&mut self) -> Result<(), PhysicsError> {
        if let Some(every) = self.spawn_every
            && self.steps.is_multiple_of(every)
        {
            self.spawn_product()?;
        }
        if self.belt_drive == BeltDrive::Analytical {
            self.refit_catch_windows();
            self.drive_products();
        }
        self.drive_pushers();
        self.update_zones();
        self.world.step_with_events(&self.hooks, &());
        self.steps += 1;
        self.time_ns += self.dt.as_nanos();
        self.update_stations();
        self.update_photo_eyes();
        self.update_pushers();
        self.update_diverters();
        Ok(())
    }

    /// Simulated time so far: the sum of the steps' `dt`.
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(u64::try_from(self.time_ns).unwrap_or(u64::MAX))
    }

    /// Changes the step length for the next steps (the lookahead trades
    /// resolution for speed this way). The model's own spawner, if on,
    /// keeps counting steps, not time.
    pub fn set_dt(&mut self, dt: Duration) {
        self.dt = dt;
        self.world.integration_parameters.dt = dt.as_secs_f32();
    }
}
