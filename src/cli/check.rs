//! `twin check FILE...`: validate plant configs, report every problem.

use std::path::PathBuf;

use clap::Args;

use super::EXIT_CONFIG;
use super::load::{render_report, render_warnings};
use super::output::{Stderr, Stdout};
use crate::config;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Plant config files to validate.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// One line per diagnostic (`file:line:col: severity: key: message`).
    #[arg(long)]
    pub short: bool,
}

/// Every file is checked even once stdout's reader has gone: the exit code
/// is the verdict on all of them, and the reports go to stderr.
pub fn run(args: &CheckArgs) -> i32 {
    let mut invalid = 0;
    let mut out = Stdout::new();
    for f in &args.files {
        match config::load_file(f) {
            Ok(cfg) => {
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
                        },
                    n(cfg.warnings.len(), "warning", "warnings"),
                );
                out.write(&(render_warnings(&cfg, args.short) + &verdict));
            }
            Err(report) => {
                invalid += 1;
                Stderr::Wait.write(&render_report(&report, args.short));
            }
        }
    }
    out.exit_code(if invalid > 0 { EXIT_CONFIG } else { 0 })
}
