//! Machine learning in the loop (issue 11).
//!
//! Data flow: the config's `[[models]]` are loaded at start-up ([`load`]:
//! the ONNX Runtime library ([`runtime`]), one session per model
//! ([`session`]), each checked against its entry ([`io`])). The core's ML
//! stage ([`stage`]) then samples every signal a model reads onto its
//! feature windows each tick ([`features`]), runs each due model once per
//! tick over all its machines, and turns the outputs into `prediction`
//! events and ISA-18.2 alarms ([`alarm`], [`events`]).
//!
//! Like the rest of the core, the stage does no I/O and reads no clock, so
//! a replay gives the same predictions and alarms (docs/ml.md,
//! "Determinism"). Loading reads the model files and opens the runtime
//! library, once, before the first tick.

pub mod alarm;
pub mod deferred;
pub mod events;
pub mod features;
pub mod io;
pub mod load;
pub mod meter;
pub mod optimise;
pub mod optimise_events;
pub mod runtime;
pub mod session;
pub mod stage;
mod tickbank;
pub mod vetting;
mod window;

use crate::config::LoadedConfig;
use crate::twin::TwinCore;

/// Why a run could not set up its models.
#[derive(Debug, thiserror::Error)]
pub enum MlSetupError {
    #[error(transparent)]
    Load(#[from] load::LoadModelsError),
    #[error(transparent)]
    Stage(#[from] stage::StageError),
}

/// Load `cfg`'s models that have a `task` and add the ML stage to `core`.
/// A config without such models loads nothing and never opens ONNX Runtime.
pub fn setup(core: &mut TwinCore, cfg: &LoadedConfig) -> Result<(), MlSetupError> {
    if cfg.ml.models.is_empty() {
        return Ok(());
    }
    let loaded = load::load_models(cfg)?;
    stage::install(core, cfg, loaded)?;
    Ok(())
}
