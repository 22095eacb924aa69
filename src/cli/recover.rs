//! `twin recover REC.mcap [-o OUT.mcap]`: a clean copy of a recording that a
//! crash cut off (see `recording::recover`).

use std::path::PathBuf;

use clap::Args;
use tracing::{error, info};

use super::EXIT_FAILURE;
use crate::recording::recover::{default_output, recover};

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The recording file to recover.
    pub input: PathBuf,
    /// Where the copy goes (default: REC.recovered.mcap beside it).
    #[arg(short, long, value_name = "OUT.mcap")]
    pub output: Option<PathBuf>,
}

pub fn run(args: &RecoverArgs) -> i32 {
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&args.input));
    match recover(&args.input, &out) {
        Ok(r) => {
            match &r.cut_off {
                Some(c) => {
                    info!(input = %args.input.display(), read_bytes = c.read_bytes, detail = %c.detail,
                    "The recording was cut off; everything up to its last flush is kept.")
                }
                None => info!(input = %args.input.display(), "The recording was whole; copied it."),
            }
            info!(output = %out.display(), samples = r.samples, events = r.events, last_tick = r.last_tick,
                "Recovered.");
            0
        }
        Err(e) => {
            error!("{e}");
            EXIT_FAILURE
        }
    }
}
