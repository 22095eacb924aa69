//! The one way a command loads a plant config.
//!
//! Every command that acts on a config (`run`, `sim`, `demo`, `whatif`,
//! `snapshot`) loads it here, so all of them show the same diagnostics in the
//! same form: warnings before the command starts, the full report when the
//! file is invalid, and exit code 78 (EX_CONFIG) for an invalid file.
//! `twin check` prints through the same renderers, with its `--short` form.
//!
//! Diagnostics go to stderr: stdout may be the event stream (`--events -`)
//! or `--json`. A failing stderr must not take the command down, so write
//! errors are ignored rather than panicking as `eprint!` would.

use std::io::Write;
use std::path::Path;

use super::EXIT_CONFIG;
use crate::config::{self, ConfigReport, LoadedConfig};

/// Load and validate a plant file for a command that acts on it. Warnings
/// are printed to stderr; an invalid file prints its report there and gives
/// the exit code for it.
pub(crate) fn load(path: &Path) -> Result<LoadedConfig, i32> {
    shown(config::load_file(path))
}

/// [`load`] for config text that does not come from a file (the demo's
/// built-in plant); `path` names it in messages.
pub(crate) fn load_text(path: &Path, text: &str) -> Result<LoadedConfig, i32> {
    shown(config::load_str(path, text))
}

fn shown(loaded: Result<LoadedConfig, Box<ConfigReport>>) -> Result<LoadedConfig, i32> {
    let mut err = std::io::stderr().lock();
    match loaded {
        Ok(cfg) => {
            write_warnings(&mut err, &cfg, false);
            Ok(cfg)
        }
        Err(report) => {
            write_report(&mut err, &report, false);
            Err(EXIT_CONFIG)
        }
    }
}

/// A valid config's warnings: in full (quoted line, caret, help), or one
/// line each (`file:line:col: warning: key: message`).
pub(crate) fn write_warnings(out: &mut impl Write, cfg: &LoadedConfig, short: bool) {
    if short {
        for w in &cfg.warnings {
            let _ = writeln!(out, "{}", cfg.file.render_short(w));
        }
    } else {
        let _ = write!(out, "{}", cfg.render_warnings());
    }
}

/// An invalid config's diagnostics, in full with a summary line, or one line
/// each.
pub(crate) fn write_report(out: &mut impl Write, report: &ConfigReport, short: bool) {
    if short {
        for d in &report.diagnostics {
            let _ = writeln!(out, "{}", report.file.render_short(d));
        }
    } else {
        let _ = write!(out, "{report}");
    }
}
