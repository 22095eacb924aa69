//! `twin check FILE...`: validate plant configs, report every problem.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::EXIT_CONFIG;
use super::load::{write_report, write_warnings};
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

pub fn run(args: &CheckArgs) -> i32 {
    let mut invalid = 0;
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    for f in &args.files {
        match config::load_file(f) {
            Ok(cfg) => {
                let mut out = stdout.lock();
                write_warnings(&mut out, &cfg, args.short);
                let n = |k: usize, one: &str, many: &str| {
                    format!("{k} {}", if k == 1 { one } else { many })
                };
                let _ = writeln!(
                    out,
                    "{}: ok ({}, {}, {}, {}, {})",
                    f.display(),
                    n(cfg.tags.len(), "tag", "tags"),
                    n(cfg.config.machines.len(), "machine", "machines"),
                    n(cfg.config.modbus.len(), "Modbus device", "Modbus devices"),
                    n(cfg.config.mqtt.len(), "MQTT source", "MQTT sources")
                        + &match cfg.config.sparkplug.len() {
                            0 => String::new(),
                            k => format!(", {}", n(k, "Sparkplug source", "Sparkplug sources")),
                        },
                    n(cfg.warnings.len(), "warning", "warnings"),
                );
            }
            Err(report) => {
                invalid += 1;
                write_report(&mut stderr.lock(), &report, args.short);
            }
        }
    }
    if invalid > 0 { EXIT_CONFIG } else { 0 }
}
