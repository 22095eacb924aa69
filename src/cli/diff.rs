//! `twin diff A.jsonl B.jsonl`: what changed between two event streams
//! (docs/qa.md). Exit 0 when they are the same, 1 when they differ, 2 when
//! an input cannot be read as an event stream.

use std::collections::BTreeSet;

use clap::Args;

use super::output::{Stdout, error};
use crate::config::diagnostics::did_you_mean;
use crate::qa::diff::DiffError;
use crate::qa::expect::EVENT_TYPES;
use crate::qa::{self, DiffOptions, Difference};

/// Exit code for unreadable input, as diff(1) and cmp(1) use it.
pub const EXIT_TROUBLE: i32 = 2;

/// Bytes of output gathered before they are written: one write per line
/// would make a large diff a syscall per difference.
const FLUSH_BYTES: usize = 64 << 10;

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The stream to compare from (JSON lines; `-` for stdin).
    #[arg(value_name = "A.jsonl")]
    pub a: String,
    /// The stream to compare with (JSON lines; `-` for stdin).
    #[arg(value_name = "B.jsonl")]
    pub b: String,
    /// Compare only events of these types, e.g. `residual,jam`.
    #[arg(long, value_name = "TYPE,...", value_delimiter = ',')]
    pub types: Vec<String>,
    /// Numbers that differ by no more than this are equal (absolute).
    #[arg(long, value_name = "X", default_value_t = 0.0, value_parser = parse_tolerance)]
    pub tolerance: f64,
    /// Pair events of one key up to this far apart in time, e.g. `2s`: a
    /// moved event shows as changed (`t` among its fields) rather than as
    /// removed and added. Default: only within one tick.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = super::parse_duration)]
    pub window: std::time::Duration,
    /// One JSON object per difference, then a summary object (docs/qa.md).
    #[arg(long)]
    pub json: bool,
}

fn parse_tolerance(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err("expected a number >= 0, e.g. 0.001".to_string()),
    }
}

pub fn run(args: &DiffArgs) -> i32 {
    if args.a == "-" && args.b == "-" {
        error("only one of A and B can be stdin (`-`)");
        return EXIT_TROUBLE;
    }
    for t in &args.types {
        if !EVENT_TYPES.contains(&t.as_str()) {
            let help = did_you_mean(t, EVENT_TYPES.iter().copied())
                .map_or(String::new(), |h| format!("; {h}"));
            error(format_args!(
                "--types: unknown event type `{t}` (known: {}){help}",
                EVENT_TYPES.join(", ")
            ));
            return EXIT_TROUBLE;
        }
    }
    let opts = DiffOptions {
        types: (!args.types.is_empty())
            .then(|| args.types.iter().cloned().collect::<BTreeSet<_>>()),
        tolerance: args.tolerance,
        window: args.window,
    };
    let (a, b) = match (qa::open(&args.a), qa::open(&args.b)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            error(e);
            return EXIT_TROUBLE;
        }
    };
    let mut out = Stdout::new();
    let mut buf = String::new();
    let mut last_t = None;
    let result = qa::diff(a, b, &opts, |d: &Difference| {
        if args.json {
            buf.push_str(&d.to_json());
        } else {
            let t = d.event().t_ns;
            if last_t != Some(t) {
                last_t = Some(t);
                buf.push_str(&format!("@ {}\n", qa::format_time(t)));
            }
            buf.push_str(&d.render());
        }
        buf.push('\n');
        if buf.len() >= FLUSH_BYTES {
            out.write(&buf);
            buf.clear();
        }
        Ok(())
    });
    let summary = match result {
        Ok(s) => s,
        Err(DiffError::Input(e)) => {
            out.write(&buf);
            error(e);
            return EXIT_TROUBLE;
        }
        Err(e @ DiffError::Output(_)) => {
            error(e);
            return EXIT_TROUBLE;
        }
    };
    if args.json {
        buf.push_str(&summary.to_json());
        buf.push('\n');
    } else {
        if !summary.identical() {
            buf.push('\n');
        }
        buf.push_str(&summary.render());
    }
    out.write(&buf);
    if out.failure().is_some() {
        // Not 1: that would read as "the streams differ".
        let _ = out.exit_code(EXIT_TROUBLE);
        return EXIT_TROUBLE;
    }
    if summary.identical() { 0 } else { 1 }
}
