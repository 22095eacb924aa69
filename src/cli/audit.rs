//! `twin audit verify FILE` checks an audit log's whole hash chain;
//! `twin audit FILE [--tag …] [--actor …] [--decision …] [--since …]
//! [--until …] [--csv]` prints the entries that match (docs/audit.md). The
//! work is the library's (`guard::audit`).
//!
//! Exit codes: 0 when the chain is intact, 65 (EX_DATAERR) at the first
//! broken line, 1 when the file cannot be read, 2 for usage errors.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::EXIT_FAILURE;
use super::output::{Stdout, error};
use crate::config::diagnostics::did_you_mean;
use crate::guard::audit::{self, AuditError, AuditReader, Decision, Filter};

/// Exit code for a log whose chain is broken (sysexits EX_DATAERR).
pub const EXIT_DATAERR: i32 = 65;

/// Bytes of output gathered before they are written: one write per entry
/// would make a large export a syscall per line.
const FLUSH_BYTES: usize = 64 << 10;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// The audit log (JSON lines, as the guard writes it).
    #[arg(value_name = "FILE", required = true)]
    pub file: Option<PathBuf>,
    /// Only entries for these setpoint tags.
    #[arg(long, value_name = "TAG,...", value_delimiter = ',')]
    pub tag: Vec<String>,
    /// Only entries by these actors: a model id or an operator name
    /// (`model:ID` or `operator:NAME` to say which), or `system`.
    #[arg(long, value_name = "ACTOR,...", value_delimiter = ',')]
    pub actor: Vec<String>,
    /// Only these decisions, e.g. `blocked,clamped`.
    #[arg(long, value_name = "DECISION,...", value_delimiter = ',', value_parser = parse_decision)]
    pub decision: Vec<Decision>,
    /// Only entries at or after this time (RFC 3339, e.g.
    /// 2026-12-05T08:00:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub since: Option<i64>,
    /// Only entries before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<i64>,
    /// CSV with a header row instead of the entries' JSON lines.
    #[arg(long)]
    pub csv: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check every entry's hash, seq and link to the entry before; name the
    /// first broken line.
    Verify {
        /// The audit log.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

fn parse_decision(s: &str) -> Result<Decision, String> {
    Decision::parse(s).ok_or_else(|| {
        let names = Decision::ALL.map(Decision::as_str);
        let help = did_you_mean(s, names).map_or(String::new(), |h| format!("; {h}"));
        format!("unknown decision (known: {}){help}", names.join(", "))
    })
}

fn parse_time(s: &str) -> Result<i64, String> {
    audit::parse_rfc3339(s.trim())
        .ok_or_else(|| "expected an RFC 3339 time, e.g. 2026-12-05T08:00:00Z".to_string())
}

pub fn run(args: &AuditArgs) -> i32 {
    match (&args.command, &args.file) {
        (Some(AuditCommand::Verify { file }), _) => verify(file),
        (None, Some(file)) => query(file, args),
        // clap requires FILE without a subcommand.
        (None, None) => 2,
    }
}

/// The exit code for a failed read.
fn fail(e: &AuditError) -> i32 {
    error(e);
    if e.broken().is_some() {
        EXIT_DATAERR
    } else {
        EXIT_FAILURE
    }
}

fn verify(file: &std::path::Path) -> i32 {
    match audit::verify(file) {
        Ok(report) => {
            let mut out = Stdout::new();
            out.line(report.summary());
            out.exit_code(0)
        }
        Err(e) => fail(&e),
    }
}

fn query(file: &std::path::Path, args: &AuditArgs) -> i32 {
    let filter = Filter {
        tags: args.tag.clone(),
        actors: args.actor.clone(),
        decisions: args.decision.clone(),
        since_ns: args.since,
        until_ns: args.until,
    };
    let mut reader = match AuditReader::open(file) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    let mut out = Stdout::new();
    let mut csv = args.csv.then(|| csv::Writer::from_writer(Vec::new()));
    if let Some(w) = &mut csv
        && let Err(e) = w.write_record(audit::csv_header())
    {
        error(format_args!("cannot write CSV: {e}"));
        return EXIT_FAILURE;
    }
    let mut buf = Vec::new();
    let code = loop {
        let entry = match reader.next_entry() {
            Ok(Some(e)) => e,
            Ok(None) => break 0,
            Err(e) => {
                // What matched before the break is printed, then the
                // break: it is a finding, not noise.
                flush(&mut out, &mut buf, csv.as_mut());
                break fail(&e);
            }
        };
        if !filter.matches(&entry) {
            continue;
        }
        match &mut csv {
            Some(w) => {
                if let Err(e) = w.write_record(audit::csv_row(&entry)) {
                    error(format_args!("cannot write CSV: {e}"));
                    return EXIT_FAILURE;
                }
                if w.get_ref().len() >= FLUSH_BYTES {
                    flush(&mut out, &mut buf, Some(w));
                }
            }
            None => {
                // The line as the file holds it, so the output verifies
                // entry by entry against the same hashing rule.
                buf.extend_from_slice(reader.line_bytes());
                buf.push(b'\n');
                if buf.len() >= FLUSH_BYTES {
                    flush(&mut out, &mut buf, None);
                }
            }
        }
    };
    flush(&mut out, &mut buf, csv.as_mut());
    out.exit_code(code)
}

/// Hand what is gathered to stdout (the CSV writer's buffer, or the JSON
/// lines'). Every entry is valid UTF-8: it parsed as JSON.
fn flush(out: &mut Stdout, buf: &mut Vec<u8>, csv: Option<&mut csv::Writer<Vec<u8>>>) {
    if let Some(w) = csv {
        // The writer holds its own buffer; take it whole, and go on with a
        // fresh writer (`write_record` writes no header of its own).
        let full = std::mem::replace(w, csv::Writer::from_writer(Vec::new()));
        // Flushing into a Vec cannot fail.
        if let Ok(mut bytes) = full.into_inner() {
            buf.append(&mut bytes);
        }
    }
    if !buf.is_empty() {
        out.write(&String::from_utf8_lossy(buf));
        buf.clear();
    }
}
