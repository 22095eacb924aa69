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

use std::path::Path;

use super::EXIT_CONFIG;
use super::output::Stderr;
use crate::config::{self, ConfigReport, LoadedConfig};

/// Load and validate a plant file for a command that acts on it. Warnings
/// are printed to stderr; an invalid file prints its report there and gives
/// the exit code for it.
pub(crate) fn load(path: &Path, stderr: Stderr) -> Result<LoadedConfig, i32> {
    shown(config::load_file(path), stderr)
}

/// [`load`] for config text that does not come from a file (the demo's
/// built-in plant); `path` names it in messages.
pub(crate) fn load_text(path: &Path, text: &str, stderr: Stderr) -> Result<LoadedConfig, i32> {
    shown(config::load_str(path, text), stderr)
}

fn shown(
    loaded: Result<LoadedConfig, Box<ConfigReport>>,
    stderr: Stderr,
) -> Result<LoadedConfig, i32> {
    match loaded {
        Ok(cfg) => {
            stderr.write(&render_warnings(&cfg, false));
            Ok(cfg)
        }
        Err(report) => {
            stderr.write(&render_report(&report, false));
            Err(EXIT_CONFIG)
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
