//! `twin expect EXPECT.toml EVENTS.jsonl [--junit OUT.xml]`: check an event
//! stream against expectations (docs/qa.md). Exit 0 when every assertion
//! holds, 1 when one fails, 78 for an invalid expectations file, 2 when the
//! stream cannot be read.
//!
//! [`load`] and [`conclude`] are what `twin replay --expect/--junit` calls
//! around feeding its events to the same [`crate::qa::Checker`].

use std::path::{Path, PathBuf};

use clap::Args;

use super::EXIT_CONFIG;
use super::diff::EXIT_TROUBLE;
use super::load::render_report;
use super::output::{Stderr, Stdout, error};
use crate::qa::{self, Expectations, Report};

#[derive(Debug, Args)]
pub struct ExpectArgs {
    /// The expectations file (TOML; see docs/qa.md).
    #[arg(value_name = "EXPECT.toml")]
    pub expectations: PathBuf,
    /// The event stream to check (JSON lines; `-` for stdin).
    #[arg(value_name = "EVENTS.jsonl")]
    pub events: String,
    /// Also write the verdicts as JUnit XML, for Jenkins or GitLab.
    #[arg(long, value_name = "OUT.xml")]
    pub junit: Option<PathBuf>,
}

/// Load an expectations file, or print its diagnostics and give exit code 78.
pub(crate) fn load(path: &Path) -> Result<Expectations, i32> {
    Expectations::load(path).map_err(|report| {
        Stderr::Wait.write(&render_report(&report, false));
        EXIT_CONFIG
    })
}

/// Print a report, write its JUnit file if asked, and give the exit code:
/// 0 when every assertion held, 1 when one failed, 2 when the JUnit file or
/// the report cannot be written (a CI must not take a report it never got
/// for a verdict). The verdicts go to `out`, or to stderr when stdout
/// carries something else (`twin replay --events -`).
pub(crate) fn conclude(report: &Report, junit: Option<&Path>, out: Option<&mut Stdout>) -> i32 {
    let Some(out) = out else {
        Stderr::Wait.write(&report.render());
        return write_junit(report, junit).unwrap_or(if report.passed() { 0 } else { 1 });
    };
    out.write(&report.render());
    if let Some(code) = write_junit(report, junit) {
        return code;
    }
    if out.failure().is_some() {
        // Not 1: that would read as "an assertion failed".
        let _ = out.exit_code(EXIT_TROUBLE);
        return EXIT_TROUBLE;
    }
    if report.passed() { 0 } else { 1 }
}

/// Write the JUnit file, if asked; the exit code if it cannot be written.
fn write_junit(report: &Report, junit: Option<&Path>) -> Option<i32> {
    if let Some(path) = junit
        && let Err(e) = std::fs::write(path, qa::junit::to_xml(report))
    {
        error(format_args!("cannot write {}: {e}", path.display()));
        return Some(EXIT_TROUBLE);
    }
    None
}

pub fn run(args: &ExpectArgs) -> i32 {
    let expectations = match load(&args.expectations) {
        Ok(e) => e,
        Err(code) => return code,
    };
    let mut reader = match qa::open(&args.events) {
        Ok(r) => r,
        Err(e) => {
            error(e);
            return EXIT_TROUBLE;
        }
    };
    let mut checker = expectations.checker();
    loop {
        match reader.next_event() {
            Ok(Some(ev)) => {
                if let Err(e) = checker.observe(&ev) {
                    error(format_args!("{}:{}: {}", reader.path(), e.line, e.message));
                    return EXIT_TROUBLE;
                }
            }
            Ok(None) => break,
            Err(e) => {
                error(e);
                return EXIT_TROUBLE;
            }
        }
    }
    conclude(
        &checker.finish(),
        args.junit.as_deref(),
        Some(&mut Stdout::new()),
    )
}
