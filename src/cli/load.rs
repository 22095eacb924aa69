//! The one way a command loads a plant config.
//!
//! Every command that acts on a config (`run`, `sim`, `demo`, `whatif`,
//! `snapshot`) loads it here, so all of them show the same diagnostics in the
//! same form: warnings before the command starts, the full report when the
//! file is invalid, and exit code 78 (EX_CONFIG) for an invalid file.
//! `twin check` prints through the same renderers, with its `--short` form.
//!
//! Diagnostics go to stderr (stdout may be the event stream, `--events -`,
//! or `--json`), in the way the command writes there ([`Stderr`]): a failing
//! stderr never kills a command, and a stalled one never holds up a twin.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::EXIT_CONFIG;
use super::output::Stderr;
use crate::config::{self, ConfigReport, LoadedConfig};

/// Load and validate a plant file for a command that acts on it. Warnings
/// are printed to stderr; an invalid file prints its report there and gives
/// the exit code for it.
pub(crate) fn load(path: &Path, stderr: Stderr) -> Result<LoadedConfig, i32> {
    shown(config::load_file(path), |_| Bundled::new(), stderr)
}

/// Model files that stand in for the files a config's `path`s name, by
/// model id (see `MlConfig::bundled`).
pub(crate) type Bundled = BTreeMap<String, Arc<[u8]>>;

/// [`load`] for config text that does not come from a file (a
/// recording's, or the demo's built into the binary), with the model files
/// that come with it: `bundled` picks them for the valid config, before its
/// models are loaded. `path` names the text in messages.
pub(crate) fn load_text_with(
    path: &Path,
    text: &str,
    bundled: impl FnOnce(&LoadedConfig) -> Bundled,
    stderr: Stderr,
) -> Result<LoadedConfig, i32> {
    shown(config::load_str(path, text), bundled, stderr)
}

fn shown(
    loaded: Result<LoadedConfig, Box<ConfigReport>>,
    bundled: impl FnOnce(&LoadedConfig) -> Bundled,
    stderr: Stderr,
) -> Result<LoadedConfig, i32> {
    match loaded {
        Ok(mut cfg) => {
            cfg.ml.bundled = bundled(&cfg);
            stderr.write(&render_warnings(&cfg, false));
            check_models(&cfg, stderr)?;
            Ok(cfg)
        }
        Err(report) => {
            stderr.write(&render_report(&report, false));
            Err(EXIT_CONFIG)
        }
    }
}

/// A config's models are part of its validity: each is loaded here, before
/// the command touches a plant, so a model file that is missing or does not
/// fit its entry is a located config error (78), and a missing ONNX Runtime
/// says how to get one (69). The sessions are dropped; the run's core
/// builds its own (`Driver::with_models`), a few milliseconds.
fn check_models(cfg: &LoadedConfig, stderr: Stderr) -> Result<(), i32> {
    use crate::ml::load::{LoadModelsError, load_models};
    match load_models(cfg) {
        Ok(_) => Ok(()),
        Err(LoadModelsError::Config(diagnostics)) => {
            let mut diagnostics: Vec<_> = cfg.warnings.iter().cloned().chain(diagnostics).collect();
            diagnostics.sort_by_key(|d| (d.span.start, d.severity));
            let report = ConfigReport {
                file: cfg.file.clone(),
                diagnostics,
            };
            stderr.write(&render_report(&report, false));
            Err(EXIT_CONFIG)
        }
        Err(LoadModelsError::Runtime(e)) => {
            stderr.write(&format!(
                "{}: error: the config's models need ONNX Runtime: {e}\n",
                cfg.file.path().display()
            ));
            Err(super::EXIT_UNAVAILABLE)
        }
    }
}

/// A valid config's warnings: in full (quoted line, caret, help), or one
/// line each (`file:line:col: warning: key: message`).
pub(crate) fn render_warnings(cfg: &LoadedConfig, short: bool) -> String {
    if short {
        cfg.warnings
            .iter()
            .map(|w| cfg.file.render_short(w) + "\n")
            .collect()
    } else {
        cfg.render_warnings()
    }
}

/// An invalid config's diagnostics, in full with a summary line, or one line
/// each.
pub(crate) fn render_report(report: &ConfigReport, short: bool) -> String {
    if short {
        report
            .diagnostics
            .iter()
            .map(|d| report.file.render_short(d) + "\n")
            .collect()
    } else {
        report.to_string()
    }
}
