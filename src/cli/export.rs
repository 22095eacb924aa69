//! `twin export REC.mcap [more…] --format csv [--tags a,b] [--wide]
//! [-o OUT.csv]`: a recording's samples as CSV (see `recording::export`).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use tracing::{error, info};

use super::EXIT_FAILURE;
use crate::recording::export::{ExportOptions, export_csv, is_input};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Csv,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The recording: one .mcap file, the files of a rotated recording in
    /// order, or its .index.json.
    #[arg(required = true, value_name = "REC.mcap")]
    pub inputs: Vec<PathBuf>,
    /// Only CSV: Parquet is left out for its build cost (docs/import.md).
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// Only these tags (comma-separated); with --wide, these columns in
    /// this order.
    #[arg(long, value_name = "a,b", value_delimiter = ',')]
    pub tags: Option<Vec<String>>,
    /// One column per tag, each row carrying every tag's last value.
    #[arg(long)]
    pub wide: bool,
    /// Where to write (default stdout).
    #[arg(short, long, value_name = "OUT.csv")]
    pub output: Option<PathBuf>,
}

pub fn run(args: &ExportArgs) -> i32 {
    let opts = ExportOptions {
        tags: args.tags.clone(),
        wide: args.wide,
    };
    let result = match &args.output {
        None => {
            let stdout = std::io::stdout();
            export_csv(&args.inputs, &opts, stdout.lock(), "stdout")
        }
        Some(out) => {
            if is_input(out, &args.inputs) {
                error!(path = %out.display(), "The output is one of the recording's files; not overwriting it.");
                return EXIT_FAILURE;
            }
            // Written beside the target and renamed when whole, so a
            // failed export leaves no half file behind.
            let mut name = out.file_name().unwrap_or_default().to_os_string();
            name.push(".partial");
            let partial = out.with_file_name(name);
            let file = match std::fs::File::create(&partial) {
                Ok(f) => f,
                Err(e) => {
                    error!(path = %out.display(), error = %e, "Cannot create the export file.");
                    return EXIT_FAILURE;
                }
            };
            let mut buf = std::io::BufWriter::new(file);
            let target = out.display().to_string();
            let r = export_csv(&args.inputs, &opts, &mut buf, &target).and_then(|s| {
                buf.flush()
                    .and_then(|()| std::fs::rename(&partial, out))
                    .map(|()| s)
                    .map_err(|e| crate::recording::export::ExportError::Write {
                        target: target.clone(),
                        source: e,
                    })
            });
            if r.is_err() {
                let _ = std::fs::remove_file(&partial);
            }
            r
        }
    };
    match result {
        Ok(s) => {
            info!(samples = s.samples, rows = s.rows, "Exported.");
            0
        }
        Err(e) => {
            error!("{e}");
            EXIT_FAILURE
        }
    }
}
