//! `twin check FILE...`: validate plant configs, report every problem.

use std::path::PathBuf;

use clap::Args;

use super::load::{render_report, render_warnings};
use super::output::{Stderr, Stdout};
use super::{EXIT_CONFIG, EXIT_UNAVAILABLE};
use crate::config::{self, ConfigReport};
use crate::ml::load::{LoadModelsError, load_models};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Plant config files to validate.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// One line per diagnostic (`file:line:col: severity: key: message`).
    #[arg(long)]
    pub short: bool,
    /// Check `[[models]]` entries against the schema only, without loading
    /// the model files or the ONNX Runtime library.
    #[arg(long)]
    pub no_models: bool,
}

/// Every file is checked even once stdout's reader has gone: the exit code
/// is the verdict on all of them, and the reports go to stderr. A config
/// with models loads each (docs/ml.md): a model that does not fit its entry
/// makes the file invalid (78); a missing runtime library leaves it
/// unchecked (69, EX_UNAVAILABLE), unless another file is invalid.
pub fn run(args: &CheckArgs) -> i32 {
    let mut invalid = 0;
    let mut unavailable = 0;
    let mut out = Stdout::new();
    for f in &args.files {
        let loaded = config::load_file(f);
        let models = match &loaded {
            Ok(cfg) if !args.no_models => load_models(cfg).map(|m| m.len()),
            Ok(cfg) => Ok(cfg.ml.models.len()),
            Err(_) => Ok(0),
        };
        match (loaded, models) {
            (Ok(cfg), Err(LoadModelsError::Config(diagnostics))) => {
                invalid += 1;
                let mut diagnostics: Vec<_> =
                    cfg.warnings.iter().cloned().chain(diagnostics).collect();
                diagnostics.sort_by_key(|d| (d.span.start, d.severity));
                let report = ConfigReport {
                    file: cfg.file.clone(),
                    diagnostics,
                };
                Stderr::Wait.write(&render_report(&report, args.short));
            }
            (Ok(_), Err(LoadModelsError::Runtime(e))) => {
                unavailable += 1;
                Stderr::Wait.write(&format!(
                    "{}: error: cannot check the config's models: {e}\n",
                    f.display()
                ));
            }
            (Ok(cfg), Ok(n_models)) => {
                let n = |k: usize, one: &str, many: &str| {
                    format!("{k} {}", if k == 1 { one } else { many })
                };
                let verdict = format!(
                    "{}: ok ({}, {}, {}, {}, {})\n",
                    f.display(),
                    n(cfg.tags.len(), "tag", "tags"),
                    n(cfg.config.machines.len(), "machine", "machines"),
                    n(cfg.config.modbus.len(), "Modbus device", "Modbus devices"),
                    n(cfg.config.mqtt.len(), "MQTT source", "MQTT sources")
                        + &match cfg.config.sparkplug.len() {
                            0 => String::new(),
                            k => format!(", {}", n(k, "Sparkplug source", "Sparkplug sources")),
                        }
                        + &match cfg.config.recorded.len() {
                            0 => String::new(),
                            k => format!(", {}", n(k, "recorded source", "recorded sources")),
                        }
                        + &match (n_models, args.no_models) {
                            (0, _) => String::new(),
                            (k, false) => format!(", {} loaded", n(k, "model", "models")),
                            (k, true) => format!(", {} not loaded", n(k, "model", "models")),
                        },
                    n(cfg.warnings.len(), "warning", "warnings"),
                );
                out.write(&(render_warnings(&cfg, args.short) + &verdict));
            }
            (Err(report), _) => {
                invalid += 1;
                Stderr::Wait.write(&render_report(&report, args.short));
            }
        }
    }
    out.exit_code(match (invalid, unavailable) {
        (0, 0) => 0,
        (0, _) => EXIT_UNAVAILABLE,
        _ => EXIT_CONFIG,
    })
}
