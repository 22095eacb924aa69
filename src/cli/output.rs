//! What a command itself prints: `check`'s verdicts, `whatif`'s forecast,
//! `sim`'s endpoint lines on stdout, and messages and config reports on
//! stderr. (Logs are logging.rs's, the event stream is sinks/events.rs's.)
//!
//! `println!` and `eprintln!` panic when the stream fails, and stdout and
//! stderr are outside input: a pipe whose reader went away
//! (`twin check … | head -1`), `/dev/full`, a disk that fills. So:
//!
//! - A stdout whose reader went away (EPIPE) is not a failure: the reader has
//!   all it wanted. Later output is skipped and the exit code stays what the
//!   command's work says: 0 for one that only prints, as with ripgrep, and
//!   `check`'s verdict on every file it was given.
//! - A stdout that refuses the output otherwise (a full disk) is a failure: a
//!   report cut short must not pass for a complete one. The command says so
//!   and exits 1, unless it already has a more specific code (78, 2).
//! - stderr is best effort: what it refuses is dropped, and the exit code
//!   carries the outcome. A one-shot command waits for stderr, so a long
//!   report comes out whole; a command that runs a twin or a plant queues its
//!   text with the log lines, so a stderr nobody reads never holds it up.
//!
//! Either way text written here keeps its order with the log lines and with
//! stdout in a terminal: queued log lines are let out first.

use std::fmt;
use std::io::{self, Write};

use super::{EXIT_FAILURE, logging};

/// A command's stdout, remembering how it ended.
#[derive(Debug, Default)]
pub(crate) struct Stdout {
    /// The reader went away (EPIPE).
    reader_gone: bool,
    /// stdout refused the output for another reason.
    failed: Option<io::Error>,
    /// The log queue once failed to drain; do not wait on it again.
    stderr_stalled: bool,
}

impl Stdout {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Write `text` whole and flush it. Does nothing once stdout has failed
    /// or its reader has gone.
    pub(crate) fn write(&mut self, text: &str) {
        if self.reader_gone || self.failed.is_some() {
            return;
        }
        // Let what the command already said on stderr come out first, so a
        // terminal shows both streams in the order they were written.
        if !self.stderr_stalled {
            self.stderr_stalled = !logging::drain();
        }
        let mut out = io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => self.reader_gone = true,
            Err(e) => self.failed = Some(e),
        }
    }

    /// Write one line.
    pub(crate) fn line(&mut self, line: impl fmt::Display) {
        self.write(&format!("{line}\n"));
    }

    /// Why stdout refused the output, if it did (a reader that went away is
    /// not a refusal).
    pub(crate) fn failure(&self) -> Option<&io::Error> {
        self.failed.as_ref()
    }

    /// The exit code of a one-shot command whose work gave `code`: a stdout
    /// that refused the output turns success into a failure (and says so).
    pub(crate) fn exit_code(&self, code: i32) -> i32 {
        match &self.failed {
            Some(e) => {
                error(format_args!("cannot write the output to stdout: {e}"));
                if code == 0 { EXIT_FAILURE } else { code }
            }
            None => code,
        }
    }
}

/// How a command writes to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stderr {
    /// Straight to stderr, waiting for it to take the text: a one-shot
    /// command (`check`, `whatif`, `snapshot`), whose report must come out
    /// whole.
    Wait,
    /// Into the log queue, line by line, never waiting: a command that runs
    /// the twin or the plant (`run`, `sim`, `demo`), which nothing may hold
    /// up. Lines the queue cannot take are dropped and counted.
    Queue,
}

impl Stderr {
    /// Write `text`; best effort.
    pub(crate) fn write(self, text: &str) {
        match self {
            Stderr::Wait => {
                // Bounded: it gives up on a stderr that takes nothing.
                let _ = logging::drain();
                let _ = io::stderr().lock().write_all(text.as_bytes());
            }
            Stderr::Queue => {
                for line in text.split_inclusive('\n') {
                    logging::write_text(line);
                }
            }
        }
    }
}

/// An `error: …` line on stderr, in the form clap uses for usage errors, from
/// a one-shot command.
pub(crate) fn error(msg: impl fmt::Display) {
    Stderr::Wait.write(&format!("error: {msg}\n"));
}
