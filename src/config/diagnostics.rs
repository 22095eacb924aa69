//! Diagnostics for plant configs: located, complete, and written for the
//! integrator who has to fix the file.
//!
//! Every problem found in a file becomes one [`Diagnostic`]. Loading never stops
//! at the first problem: the integrator gets the whole list in one go, each entry
//! with `file:line:col`, the key path, what was expected and, where we can guess,
//! a did-you-mean.

use std::fmt::{self, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How bad a diagnostic is. Errors make a config invalid; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// One problem in one config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Byte range in the file the problem points at.
    pub span: Range<usize>,
    /// Key path such as `sources.modbus[0].registers[3].type`.
    pub path: String,
    /// One sentence saying what is wrong.
    pub message: String,
    /// What would have been accepted.
    pub expected: Option<String>,
    /// A concrete suggestion, usually a did-you-mean.
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(span: Range<usize>, path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            span,
            path: path.into(),
            message: message.into(),
            expected: None,
            help: None,
        }
    }

    pub fn warning(
        span: Range<usize>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(span, path, message)
        }
    }

    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn maybe_help(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }
}

/// The text of a config file, with what is needed to turn byte offsets into
/// `line:col` and to quote the offending line.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        SourceFile {
            path: path.into(),
            text,
            line_starts,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line];
        let col = self
            .text
            .get(start..offset)
            .map(|s| strip_bom(start, s).chars().count())
            .unwrap_or(0);
        (line + 1, col + 1)
    }

    fn line_text(&self, line: usize) -> &str {
        let start = self.line_starts[line - 1];
        let end = self
            .line_starts
            .get(line)
            .copied()
            .unwrap_or(self.text.len());
        strip_bom(start, self.text.get(start..end).unwrap_or("")).trim_end_matches(['\n', '\r'])
    }

    /// Render a diagnostic the way a compiler would: headline, location, the
    /// quoted line with a caret under the problem, then key, expectation and help.
    ///
    /// The gutter is as wide as the line number, so `-->`, `|` and `=` line up
    /// whatever the line. A diagnostic about the whole file (span `0..0`, e.g. a
    /// missing section) quotes no line: there is none to point at.
    pub fn render(&self, d: &Diagnostic) -> String {
        let (line, col) = self.line_col(d.span.start);
        let g = line.to_string().len();
        let mut out = String::new();
        let _ = writeln!(out, "{}: {}", d.severity, d.message);
        let _ = writeln!(out, "{:g$}--> {}:{}:{}", "", self.path.display(), line, col);
        let src = self.line_text(line);
        if d.span != (0..0) && !src.trim().is_empty() {
            let width = {
                let end = d.span.end.max(d.span.start + 1);
                let (eline, ecol) = self.line_col(end);
                if eline == line && ecol > col {
                    ecol - col
                } else {
                    src.chars().count().saturating_sub(col - 1).max(1)
                }
            };
            let _ = writeln!(out, "{:g$} |", "");
            let _ = writeln!(out, "{line} | {src}");
            let _ = writeln!(
                out,
                "{:g$} | {}{}",
                "",
                " ".repeat(col - 1),
                "^".repeat(width)
            );
        }
        if !d.path.is_empty() {
            let _ = writeln!(out, "{:g$} = key: {}", "", d.path);
        }
        if let Some(e) = &d.expected {
            let _ = writeln!(out, "{:g$} = expected: {e}", "");
        }
        if let Some(h) = &d.help {
            let _ = writeln!(out, "{:g$} = help: {h}", "");
        }
        out
    }

    /// One line per diagnostic, `file:line:col: severity: key: message`, for
    /// scripts and editors.
    pub fn render_short(&self, d: &Diagnostic) -> String {
        let (line, col) = self.line_col(d.span.start);
        let mut s = format!("{}:{}:{}: {}: ", self.path.display(), line, col, d.severity);
        if !d.path.is_empty() {
            let _ = write!(s, "{}: ", d.path);
        }
        s.push_str(&d.message);
        if let Some(e) = &d.expected {
            let _ = write!(s, " (expected {e})");
        }
        if let Some(h) = &d.help {
            let _ = write!(s, "; {h}");
        }
        s
    }
}

/// A byte-order mark opening the file (editors on Windows write one) is
/// not a column: TOML skips it, so the first line's columns and its quoted
/// text must too, or every caret on that line lands one place to the right.
fn strip_bom(line_start: usize, s: &str) -> &str {
    if line_start == 0 {
        s.strip_prefix('\u{feff}').unwrap_or(s)
    } else {
        s
    }
}

/// Closest candidate to `word` among `candidates`, if it is close enough to be
/// a plausible typo.
pub fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let word = word.to_ascii_lowercase();
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(&word, &c.to_ascii_lowercase());
        if score >= 0.8 && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

/// [`closest`], phrased as a help line.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// Every diagnostic of one file; the error type of config loading.
#[derive(Debug, Clone)]
pub struct ConfigReport {
    pub file: SourceFile,
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigReport {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// All diagnostics rendered in file order, followed by a summary line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for d in &self.diagnostics {
            out.push_str(&self.file.render(d));
            out.push('\n');
        }
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        let _ = writeln!(
            out,
            "{}: {} error{}, {} warning{}",
            self.file.path.display(),
            errors,
            if errors == 1 { "" } else { "s" },
            warnings,
            if warnings == 1 { "" } else { "s" },
        );
        out
    }
}

impl fmt::Display for ConfigReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

impl std::error::Error for ConfigReport {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_in_chars() {
        let f = SourceFile::new("x.toml", "a = 1\nbé = 2\n");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(6), (2, 1));
        // `=` after a two-byte char is the 4th character of line 2.
        assert_eq!(f.line_col(10), (2, 4));
    }

    #[test]
    fn render_aligns_the_gutter_and_quotes_nothing_for_the_whole_file() {
        let f = SourceFile::new("x.toml", "# comment\nname = 1\n");
        let d = Diagnostic::error(0..0, "plant", "missing").help("add it");
        assert_eq!(
            f.render(&d),
            "error: missing\n --> x.toml:1:1\n  = key: plant\n  = help: add it\n"
        );
        let d = Diagnostic::error(10..14, "name", "bad");
        assert_eq!(
            f.render(&d),
            "error: bad\n --> x.toml:2:1\n  |\n2 | name = 1\n  | ^^^^\n  = key: name\n"
        );
    }

    #[test]
    fn a_byte_order_mark_is_not_a_column_of_the_first_line() {
        let f = SourceFile::new("x.toml", "\u{feff}versio = 1\r\nname = 2\r\n");
        let d = Diagnostic::error(3..9, "versio", "unknown key");
        assert_eq!(f.line_col(3), (1, 1));
        assert_eq!(f.line_col(15), (2, 1));
        assert_eq!(
            f.render(&d),
            "error: unknown key\n --> x.toml:1:1\n  |\n1 | versio = 1\n  | ^^^^^^\n  = key: versio\n"
        );
    }

    #[test]
    fn did_you_mean_finds_typos_only() {
        assert_eq!(
            did_you_mean("unit_idd", ["unit_id", "address"]).as_deref(),
            Some("did you mean `unit_id`?")
        );
        assert_eq!(did_you_mean("zzzz", ["unit_id", "address"]), None);
    }
}
