//! Interlock expressions: the conditions on other tags that must hold before
//! a setpoint is written (`[[setpoints]].interlocks`).
//!
//! The language is deliberately small, so that a safety reviewer can read
//! every interlock without learning a tool:
//!
//! ```text
//! expr    := or
//! or      := and  (("||" | "or")  and)*
//! and     := unary (("&&" | "and") unary)*
//! unary   := ("!" | "not") unary | compare
//! compare := primary (("==" | "!=" | "<" | "<=" | ">" | ">=") primary)?
//! primary := NUMBER | STRING | "true" | "false" | TAG | "(" expr ")"
//! ```
//!
//! `not` binds looser than a comparison (`not a == b` is `not (a == b)`),
//! comparisons do not chain, and there is no arithmetic. Tags are named as
//! in the rest of the config (letters, digits, `_`, `.`, `-`); a number
//! starts with a digit, `-` or `.`.
//!
//! Config loading parses and type-checks each interlock ([`parse`],
//! [`check_types`]) and maps every error back into the TOML file
//! ([`SpanMap`]); the guard evaluates the result each time it decides
//! ([`Interlock::eval`]). Evaluation fails closed: an outcome that depends on
//! a tag that is missing, not `good`, or of the wrong kind is
//! [`Verdict::Unknown`], which the guard treats as a failed interlock.

use std::fmt::{self, Write as _};
use std::ops::Range;

use crate::twin::{Quality, Value};

/// Deepest nesting of parentheses and `not` the parser follows. Real
/// interlocks nest two or three levels; the bound keeps a hostile config
/// from exhausting the stack.
pub const MAX_DEPTH: usize = 64;

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    fn is_order(self) -> bool {
        !matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

/// A node of a parsed interlock, with the byte range of the expression text
/// it was parsed from.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Range<usize>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExprKind {
    Tag(String),
    Num(f64),
    Str(String),
    Bool(bool),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
}

impl Expr {
    fn new(kind: ExprKind, span: Range<usize>) -> Self {
        Expr { kind, span }
    }

    /// The same tree with every span set to `0..0`: what two parses of
    /// differently spaced (or parenthesised) text have in common.
    pub fn without_spans(&self) -> Expr {
        let b = |e: &Expr| Box::new(e.without_spans());
        let kind = match &self.kind {
            ExprKind::Not(e) => ExprKind::Not(b(e)),
            ExprKind::And(l, r) => ExprKind::And(b(l), b(r)),
            ExprKind::Or(l, r) => ExprKind::Or(b(l), b(r)),
            ExprKind::Cmp(op, l, r) => ExprKind::Cmp(*op, b(l), b(r)),
            leaf => leaf.clone(),
        };
        Expr::new(kind, 0..0)
    }

    /// Every tag the expression reads, each once, in order of appearance.
    pub fn tags(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let ExprKind::Tag(t) = &e.kind
                && !out.contains(&t.as_str())
            {
                out.push(t.as_str());
            }
        });
        out
    }

    /// Tag references with their spans, in order of appearance.
    pub fn tag_refs(&self) -> Vec<(&str, Range<usize>)> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let ExprKind::Tag(t) = &e.kind {
                out.push((t.as_str(), e.span.clone()));
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Expr)) {
        f(self);
        match &self.kind {
            ExprKind::Not(e) => e.walk(f),
            ExprKind::And(l, r) | ExprKind::Or(l, r) | ExprKind::Cmp(_, l, r) => {
                l.walk(f);
                r.walk(f);
            }
            _ => {}
        }
    }

    /// Binding strength, for printing with the fewest parentheses.
    fn prec(&self) -> u8 {
        match self.kind {
            ExprKind::Or(..) => 1,
            ExprKind::And(..) => 2,
            ExprKind::Not(_) => 3,
            ExprKind::Cmp(..) => 4,
            _ => 5,
        }
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, min: u8) -> fmt::Result {
        if self.prec() < min {
            f.write_char('(')?;
            self.write(f, 0)?;
            return f.write_char(')');
        }
        match &self.kind {
            ExprKind::Tag(t) => f.write_str(t),
            ExprKind::Num(n) => write!(f, "{n}"),
            ExprKind::Bool(b) => write!(f, "{b}"),
            ExprKind::Str(s) => {
                f.write_char('"')?;
                for c in s.chars() {
                    if matches!(c, '"' | '\\') {
                        f.write_char('\\')?;
                    }
                    f.write_char(c)?;
                }
                f.write_char('"')
            }
            ExprKind::Not(e) => {
                f.write_str("not ")?;
                e.write(f, 3)
            }
            // Left-associative: a right operand of the same operator needs
            // its parentheses to parse back as written.
            ExprKind::And(l, r) => {
                l.write(f, 2)?;
                f.write_str(" and ")?;
                r.write(f, 3)
            }
            ExprKind::Or(l, r) => {
                l.write(f, 1)?;
                f.write_str(" or ")?;
                r.write(f, 2)
            }
            ExprKind::Cmp(op, l, r) => {
                l.write(f, 5)?;
                write!(f, " {} ", op.as_str())?;
                r.write(f, 5)
            }
        }
    }
}

/// Prints the expression in the syntax [`parse`] reads, with the fewest
/// parentheses that keep its meaning.
impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, 0)
    }
}

/// A problem in an interlock, located in the expression's own text.
#[derive(Debug, Clone, PartialEq)]
pub struct ExprError {
    pub span: Range<usize>,
    pub message: String,
    pub expected: String,
    pub help: Option<String>,
}

impl ExprError {
    fn new(span: Range<usize>, message: impl Into<String>, expected: impl Into<String>) -> Self {
        ExprError {
            span,
            message: message.into(),
            expected: expected.into(),
            help: None,
        }
    }

    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A tag name or a keyword (`and`, `or`, `not`, `true`, `false`).
    Word(String),
    Num(f64),
    Str(String),
    LParen,
    RParen,
    Bang,
    AndAnd,
    OrOr,
    Cmp(CmpOp),
    End,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Word(w) => format!("`{w}`"),
        Tok::Num(n) => format!("the number {n}"),
        Tok::Str(_) => "a string".into(),
        Tok::LParen => "`(`".into(),
        Tok::RParen => "`)`".into(),
        Tok::Bang => "`!`".into(),
        Tok::AndAnd => "`&&`".into(),
        Tok::OrOr => "`||`".into(),
        Tok::Cmp(op) => format!("`{}`", op.as_str()),
        Tok::End => "the end of the interlock".into(),
    }
}

const KEYWORDS: &[&str] = &["and", "or", "not", "true", "false"];
const NOT_HELP: &str =
    "`not` applies to a whole comparison; write `a == (not b)` to negate one side";
const A_VALUE: &str = "a tag, a number, a \"string\", true, false, `not` or `(`";

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn lex(src: &str) -> Result<Vec<(Tok, Range<usize>)>, ExprError> {
    let mut out = Vec::new();
    let mut it = src.char_indices().peekable();
    while let Some(&(i, c)) = it.peek() {
        if c.is_whitespace() {
            it.next();
            continue;
        }
        let two = src.get(i..i + 2).unwrap_or("");
        let op = match two {
            "==" => Some(Tok::Cmp(CmpOp::Eq)),
            "!=" => Some(Tok::Cmp(CmpOp::Ne)),
            "<=" => Some(Tok::Cmp(CmpOp::Le)),
            ">=" => Some(Tok::Cmp(CmpOp::Ge)),
            "&&" => Some(Tok::AndAnd),
            "||" => Some(Tok::OrOr),
            _ => None,
        };
        if let Some(op) = op {
            it.next();
            it.next();
            out.push((op, i..i + 2));
            continue;
        }
        let single = match c {
            '(' => Some(Tok::LParen),
            ')' => Some(Tok::RParen),
            '!' => Some(Tok::Bang),
            '<' => Some(Tok::Cmp(CmpOp::Lt)),
            '>' => Some(Tok::Cmp(CmpOp::Gt)),
            _ => None,
        };
        if let Some(t) = single {
            it.next();
            out.push((t, i..i + 1));
            continue;
        }
        match c {
            '"' => {
                it.next();
                let mut s = String::new();
                let end = loop {
                    match it.next() {
                        None => {
                            return Err(ExprError::new(
                                i..src.len(),
                                "unterminated string",
                                "a closing `\"`",
                            ));
                        }
                        Some((j, '"')) => break j + 1,
                        Some((j, '\\')) => match it.next() {
                            Some((_, e @ ('"' | '\\'))) => s.push(e),
                            Some((k, e)) => {
                                return Err(ExprError::new(
                                    j..k + e.len_utf8(),
                                    format!("unknown escape `\\{e}` in a string"),
                                    "`\\\"` or `\\\\`",
                                ));
                            }
                            None => {
                                return Err(ExprError::new(
                                    i..src.len(),
                                    "unterminated string",
                                    "a closing `\"`",
                                ));
                            }
                        },
                        Some((_, ch)) => s.push(ch),
                    }
                };
                out.push((Tok::Str(s), i..end));
            }
            '=' => {
                return Err(
                    ExprError::new(i..i + 1, "`=` is not an operator", "`==` to compare")
                        .help("write `==` to compare two values"),
                );
            }
            '&' | '|' => {
                let (word, twin) = if c == '&' {
                    ("and", "&&")
                } else {
                    ("or", "||")
                };
                return Err(ExprError::new(
                    i..i + 1,
                    format!("single `{c}` is not an operator"),
                    format!("`{twin}` or `{word}`"),
                )
                .help(format!("write `{twin}` (or `{word}`)")));
            }
            c if is_word_char(c) => {
                let mut end = i;
                while let Some(&(j, ch)) = it.peek() {
                    if !is_word_char(ch) {
                        break;
                    }
                    end = j + ch.len_utf8();
                    it.next();
                }
                let w = &src[i..end];
                out.push((word(w, i..end)?, i..end));
            }
            c => {
                let span = i..i + c.len_utf8();
                let e = ExprError::new(span, format!("unexpected {c:?}"), A_VALUE);
                return Err(match c {
                    '+' | '*' | '/' | '%' => {
                        e.help("interlocks compare values; there is no arithmetic")
                    }
                    '\'' => e.help("string literals use double quotes: \"running\""),
                    _ => e,
                });
            }
        }
    }
    out.push((Tok::End, src.len()..src.len()));
    Ok(out)
}

/// One run of word characters: a number, a keyword or a tag.
fn word(w: &str, span: Range<usize>) -> Result<Tok, ExprError> {
    let lead = w.trim_start_matches('-');
    let numeric = w.starts_with(['-', '.']) || w.starts_with(|c: char| c.is_ascii_digit());
    if numeric && let Ok(n) = w.parse::<f64>() {
        if n.is_finite() {
            return Ok(Tok::Num(n));
        }
        return Err(ExprError::new(
            span,
            format!("number {w} is not finite"),
            "a finite number",
        ));
    }
    if w.starts_with(['-', '.']) {
        let e = ExprError::new(
            span,
            format!("invalid number `{w}`"),
            "a number such as 0.5 or -2",
        );
        return Err(
            if w == "-" || lead.starts_with(|c: char| c.is_ascii_alphabetic()) {
                e.help("interlocks compare values; there is no arithmetic")
            } else {
                e
            },
        );
    }
    Ok(Tok::Word(w.to_string()))
}

struct Parser {
    toks: Vec<(Tok, Range<usize>)>,
    pos: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &(Tok, Range<usize>) {
        // `lex` always ends the list with `End`, and nothing moves past it.
        &self.toks[self.pos.min(self.toks.len() - 1)]
    }

    fn bump(&mut self) -> (Tok, Range<usize>) {
        let t = self.peek().clone();
        if t.0 != Tok::End {
            self.pos += 1;
        }
        t
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(&self.peek().0, Tok::Word(x) if x == w)
    }

    fn deeper(&mut self, span: &Range<usize>) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(ExprError::new(
                span.clone(),
                format!("interlock nested more than {MAX_DEPTH} levels deep"),
                "a shallower expression",
            )
            .help("split it into several interlocks: all of them must hold"));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut l = self.and()?;
        while matches!(self.peek().0, Tok::OrOr) || self.is_word("or") {
            self.bump();
            let r = self.and()?;
            let span = l.span.start..r.span.end;
            l = Expr::new(ExprKind::Or(Box::new(l), Box::new(r)), span);
        }
        Ok(l)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut l = self.unary()?;
        while matches!(self.peek().0, Tok::AndAnd) || self.is_word("and") {
            self.bump();
            let r = self.unary()?;
            let span = l.span.start..r.span.end;
            l = Expr::new(ExprKind::And(Box::new(l), Box::new(r)), span);
        }
        Ok(l)
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if matches!(self.peek().0, Tok::Bang) || self.is_word("not") {
            let (_, at) = self.bump();
            self.deeper(&at)?;
            let e = self.unary()?;
            self.depth -= 1;
            let span = at.start..e.span.end;
            return Ok(Expr::new(ExprKind::Not(Box::new(e)), span));
        }
        self.compare()
    }

    fn compare(&mut self) -> Result<Expr, ExprError> {
        let l = self.primary()?;
        let Tok::Cmp(op) = self.peek().0 else {
            return Ok(l);
        };
        self.bump();
        let r = self.primary()?;
        if let (Tok::Cmp(next), at) = self.peek().clone() {
            return Err(ExprError::new(
                at,
                format!(
                    "comparisons do not chain: `{}` after a comparison",
                    next.as_str()
                ),
                "`and`, `or`, `)` or the end of the interlock",
            )
            .help("compare twice and join them: `a < b and b < c`"));
        }
        let span = l.span.start..r.span.end;
        Ok(Expr::new(ExprKind::Cmp(op, Box::new(l), Box::new(r)), span))
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let (tok, span) = self.bump();
        let kind = match tok {
            Tok::Num(n) => ExprKind::Num(n),
            Tok::Str(s) => ExprKind::Str(s),
            Tok::Word(w) if w == "true" => ExprKind::Bool(true),
            Tok::Word(w) if w == "false" => ExprKind::Bool(false),
            Tok::Word(w) if !KEYWORDS.contains(&w.as_str()) => ExprKind::Tag(w),
            Tok::LParen => {
                self.deeper(&span)?;
                let inner = self.or()?;
                self.depth -= 1;
                let (close, at) = self.bump();
                if close != Tok::RParen {
                    return Err(ExprError::new(
                        at,
                        format!("expected `)`, found {}", describe(&close)),
                        "`)` closing the `(`",
                    )
                    .help("each `(` needs its `)`"));
                }
                return Ok(Expr::new(inner.kind, span.start..at.end));
            }
            other => {
                let e = ExprError::new(
                    span,
                    format!("expected a value, found {}", describe(&other)),
                    A_VALUE,
                );
                return Err(match other {
                    Tok::End => e.help("the interlock ends too early"),
                    Tok::Bang => e.help(NOT_HELP),
                    Tok::Word(w) if w == "not" => e.help(NOT_HELP),
                    Tok::Word(w) => e.help(format!("`{w}` is a keyword, not a tag")),
                    _ => e,
                });
            }
        };
        Ok(Expr::new(kind, span))
    }
}

/// Parses an interlock. The first problem is returned, located in `src`.
pub fn parse(src: &str) -> Result<Expr, ExprError> {
    let toks = lex(src)?;
    if toks.len() == 1 {
        return Err(ExprError::new(
            0..src.len(),
            "empty interlock",
            "a condition, e.g. \"line.running and guard.door_closed\"",
        ));
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let e = p.or()?;
    let (tok, at) = p.bump();
    if tok != Tok::End {
        let e = ExprError::new(
            at,
            format!("unexpected {} after a complete condition", describe(&tok)),
            "`and`, `or` or the end of the interlock",
        );
        return Err(match tok {
            Tok::RParen => e.help("this `)` has no matching `(`"),
            _ => e.help("join conditions with `and` or `or`"),
        });
    }
    Ok(e)
}

/// What a value is, for the type check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bool,
    Num,
    Text,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Bool => "a boolean",
            Kind::Num => "a number",
            Kind::Text => "text",
        }
    }
}

/// Type-checks `e` as a condition. `kind_of` gives a tag's kind, or `None`
/// for a tag the config does not declare: such a tag is reported elsewhere
/// (with a did-you-mean), and no type error is raised about it here.
pub fn check_types(e: &Expr, kind_of: &dyn Fn(&str) -> Option<Kind>) -> Vec<ExprError> {
    let mut errs = Vec::new();
    cond(e, kind_of, &mut errs);
    errs
}

/// `e` must be a condition (a boolean).
fn cond(e: &Expr, kind_of: &dyn Fn(&str) -> Option<Kind>, errs: &mut Vec<ExprError>) {
    match &e.kind {
        ExprKind::Not(x) => cond(x, kind_of, errs),
        ExprKind::And(l, r) | ExprKind::Or(l, r) => {
            cond(l, kind_of, errs);
            cond(r, kind_of, errs);
        }
        _ => match infer(e, kind_of, errs) {
            Some(Kind::Bool) | None => {}
            Some(k) => errs.push(not_a_condition(e, k)),
        },
    }
}

fn not_a_condition(e: &Expr, k: Kind) -> ExprError {
    let what = match &e.kind {
        ExprKind::Tag(t) => format!("tag `{t}` is {}", k.noun()),
        _ => format!("`{e}` is {}", k.noun()),
    };
    let err = ExprError::new(
        e.span.clone(),
        format!("{what}, not a condition"),
        "a condition: a boolean tag, true, false or a comparison",
    );
    match k {
        Kind::Num => err.help(format!("compare it, e.g. `{e} != 0`")),
        _ => err.help(format!("compare it, e.g. `{e} == \"running\"`")),
    }
}

fn infer(
    e: &Expr,
    kind_of: &dyn Fn(&str) -> Option<Kind>,
    errs: &mut Vec<ExprError>,
) -> Option<Kind> {
    match &e.kind {
        ExprKind::Tag(t) => kind_of(t),
        ExprKind::Num(_) => Some(Kind::Num),
        ExprKind::Str(_) => Some(Kind::Text),
        ExprKind::Bool(_) => Some(Kind::Bool),
        ExprKind::Not(_) | ExprKind::And(..) | ExprKind::Or(..) => {
            cond(e, kind_of, errs);
            Some(Kind::Bool)
        }
        ExprKind::Cmp(op, l, r) => {
            let (lk, rk) = (infer(l, kind_of, errs), infer(r, kind_of, errs));
            if let (Some(lk), Some(rk)) = (lk, rk)
                && let Some(err) = compare_kinds(*op, l, lk, r, rk)
            {
                errs.push(err);
            }
            Some(Kind::Bool)
        }
    }
}

fn compare_kinds(op: CmpOp, l: &Expr, lk: Kind, r: &Expr, rk: Kind) -> Option<ExprError> {
    let named = |e: &Expr, k: Kind| match &e.kind {
        ExprKind::Tag(t) => format!("tag `{t}` ({})", k.noun()),
        _ => format!("`{e}` ({})", k.noun()),
    };
    if op.is_order() {
        // Point at the side that is not a number (the left one if neither is).
        let bad = [(l, lk), (r, rk)]
            .into_iter()
            .find(|(_, k)| *k != Kind::Num)?;
        return Some(
            ExprError::new(
                bad.0.span.clone(),
                format!(
                    "`{}` compares numbers, but {} is not one",
                    op.as_str(),
                    named(bad.0, bad.1)
                ),
                "a number on both sides of `<`, `<=`, `>` or `>=`",
            )
            .help(match bad.1 {
                Kind::Bool => "use a boolean alone, or with `==`/`!=`",
                _ => "text can only be compared with `==` or `!=`",
            }),
        );
    }
    if lk == rk {
        return None;
    }
    // Blame the literal if there is one: the tag's kind is the config's.
    let (bad, bad_kind, other, want) = match (&l.kind, &r.kind) {
        (ExprKind::Tag(_), _) => (r, rk, l, lk),
        _ => (l, lk, r, rk),
    };
    let help = match want {
        Kind::Bool => format!("compare `{other}` with true or false, or use it alone"),
        Kind::Num => format!("compare `{other}` with a number"),
        Kind::Text => format!("compare `{other}` with a \"string\""),
    };
    Some(
        ExprError::new(
            bad.span.clone(),
            format!(
                "cannot compare {} with {}",
                named(other, want),
                named(bad, bad_kind)
            ),
            format!("{} on both sides of `{}`", kind_plural(want), op.as_str()),
        )
        .help(help),
    )
}

fn kind_plural(k: Kind) -> &'static str {
    match k {
        Kind::Bool => "booleans",
        Kind::Num => "numbers",
        Kind::Text => "text",
    }
}

/// Maps byte offsets in a string's decoded value back to the config file,
/// so an error inside an interlock points at the very character.
///
/// A literal string (`'...'`) maps one to one; a basic string (`"..."`)
/// maps through its escapes: an escaped character points at its backslash.
/// If the source text does not decode to the value (a form this map does
/// not follow), every offset maps to the whole string: still the right
/// place, just less precise.
#[derive(Debug, Clone)]
pub struct SpanMap {
    /// File offset of each byte of the value, and of its end.
    offsets: Vec<usize>,
    whole: Range<usize>,
}

impl SpanMap {
    /// `span` is the string's span in `file_text`, quotes included.
    pub fn new(file_text: &str, span: Range<usize>, value: &str) -> SpanMap {
        let offsets = file_text
            .get(span.clone())
            .and_then(|raw| string_offsets(raw, value))
            .map(|o| o.into_iter().map(|x| x + span.start).collect())
            .unwrap_or_default();
        SpanMap {
            offsets,
            whole: span,
        }
    }

    /// A range of the value as a range of the file.
    pub fn map(&self, r: &Range<usize>) -> Range<usize> {
        match (self.offsets.get(r.start), self.offsets.get(r.end)) {
            (Some(&s), Some(&e)) if e >= s => s..e.max(s + 1).min(self.whole.end),
            _ => self.whole.clone(),
        }
    }
}

/// The offset, within `raw` (a TOML string with its delimiters), of each
/// byte of `value` and of its end; `None` if `raw` does not decode to
/// `value` by the rules followed here.
fn string_offsets(raw: &str, value: &str) -> Option<Vec<usize>> {
    let (delim, basic) = if raw.starts_with("\"\"\"") {
        (3, true)
    } else if raw.starts_with("'''") {
        (3, false)
    } else if raw.starts_with('"') {
        (1, true)
    } else if raw.starts_with('\'') {
        (1, false)
    } else {
        return None;
    };
    let end = raw.len().checked_sub(delim)?;
    let mut start = delim;
    if delim == 3 {
        // A newline right after the opening delimiter is not part of the value.
        if raw[start..].starts_with("\r\n") {
            start += 2;
        } else if raw[start..].starts_with('\n') {
            start += 1;
        }
    }
    let body = raw.get(start..end)?;
    let mut out = Vec::with_capacity(value.len() + 1);
    let mut decoded = String::with_capacity(value.len());
    if !basic {
        decoded.push_str(body);
        out.extend((0..body.len()).map(|i| start + i));
    } else {
        let mut it = body.char_indices().peekable();
        while let Some((i, c)) = it.next() {
            let at = start + i;
            if c != '\\' {
                decoded.push(c);
                out.extend((0..c.len_utf8()).map(|k| at + k));
                continue;
            }
            let (_, e) = it.next()?;
            let ch = match e {
                'b' => '\u{8}',
                't' => '\t',
                'n' => '\n',
                'f' => '\u{c}',
                'r' => '\r',
                'e' => '\u{1b}',
                '"' => '"',
                '\\' => '\\',
                'u' | 'U' | 'x' => {
                    let n = match e {
                        'u' => 4,
                        'U' => 8,
                        _ => 2,
                    };
                    let mut hex = String::new();
                    for _ in 0..n {
                        hex.push(it.next()?.1);
                    }
                    char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?
                }
                // A line-ending backslash (multi-line strings) drops the
                // whitespace and newlines that follow it.
                w if w.is_whitespace() => {
                    while it.peek().is_some_and(|(_, c)| c.is_whitespace()) {
                        it.next();
                    }
                    continue;
                }
                _ => return None,
            };
            decoded.push(ch);
            out.extend(std::iter::repeat_n(at, ch.len_utf8()));
        }
    }
    out.push(end);
    (decoded == value).then_some(out)
}

/// The result of evaluating an interlock.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Holds,
    /// The condition is false; `reason` names the part that is, with the
    /// values of its tags.
    Fails {
        reason: String,
    },
    /// The outcome depends on a tag that is missing, not `good`, or not of
    /// the kind the check expected. The guard treats it as failed.
    Unknown {
        tag: String,
        why: String,
    },
}

impl Verdict {
    /// Whether a write may go ahead: only when the interlock holds.
    pub fn holds(&self) -> bool {
        matches!(self, Verdict::Holds)
    }
}

/// One interlock of a setpoint, parsed and checked against the config.
#[derive(Debug, Clone, PartialEq)]
pub struct Interlock {
    /// The expression as written.
    pub text: String,
    pub expr: Expr,
    /// The TOML string in the config file, for messages.
    pub span: Range<usize>,
}

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Bool(bool),
    Num(f64),
    Text(String),
}

/// Three-valued (Kleene) truth: an unknown input only decides the outcome
/// when the known ones do not.
enum Tri<'e> {
    True,
    /// False, and the smallest sub-condition that makes it so.
    False(&'e Expr),
    Unknown(String, String),
}

impl Interlock {
    /// Evaluates the interlock against the tags' current values.
    ///
    /// `lookup` gives a tag's value and quality, or `None` when the tag has
    /// none yet. Only `good` values are used: a tag that is missing,
    /// `uncertain`, `bad` or `stale`, a number that is not finite, or a value
    /// of another kind than the config declared, makes every part it feeds
    /// unknown. `and` is false as soon as one side is false and `or` true as
    /// soon as one side is true, known or not the other; any other outcome
    /// that an unknown tag feeds is [`Verdict::Unknown`], naming that tag.
    pub fn eval(&self, lookup: impl Fn(&str) -> Option<(Value, Quality)>) -> Verdict {
        match truth(&self.expr, &lookup) {
            Tri::True => Verdict::Holds,
            Tri::Unknown(tag, why) => Verdict::Unknown { tag, why },
            Tri::False(part) => {
                let mut reason = format!("`{part}` is false");
                let values: Vec<String> = part
                    .tags()
                    .into_iter()
                    .filter_map(|t| {
                        lookup(t).map(|(v, _)| match v {
                            Value::Bool(b) => format!("{t} = {b}"),
                            Value::Num(n) => format!("{t} = {n}"),
                            Value::Text(s) => format!("{t} = {s:?}"),
                        })
                    })
                    .collect();
                if !values.is_empty() {
                    let _ = write!(reason, " ({})", values.join(", "));
                }
                Verdict::Fails { reason }
            }
        }
    }

    /// The tags the interlock reads, each once.
    pub fn tags(&self) -> Vec<&str> {
        self.expr.tags()
    }
}

fn truth<'e>(e: &'e Expr, lookup: &impl Fn(&str) -> Option<(Value, Quality)>) -> Tri<'e> {
    match &e.kind {
        ExprKind::Not(x) => match truth(x, lookup) {
            Tri::True => Tri::False(e),
            Tri::False(_) => Tri::True,
            u => u,
        },
        ExprKind::And(l, r) => match (truth(l, lookup), truth(r, lookup)) {
            (f @ Tri::False(_), _) | (_, f @ Tri::False(_)) => f,
            (u @ Tri::Unknown(..), _) | (_, u @ Tri::Unknown(..)) => u,
            _ => Tri::True,
        },
        ExprKind::Or(l, r) => match (truth(l, lookup), truth(r, lookup)) {
            (Tri::True, _) | (_, Tri::True) => Tri::True,
            (u @ Tri::Unknown(..), _) | (_, u @ Tri::Unknown(..)) => u,
            _ => Tri::False(e),
        },
        ExprKind::Cmp(op, l, r) => match (value(l, lookup), value(r, lookup)) {
            (Err((t, w)), _) | (_, Err((t, w))) => Tri::Unknown(t, w),
            (Ok(a), Ok(b)) => match compare(*op, &a, &b) {
                Some(true) => Tri::True,
                Some(false) => Tri::False(e),
                None => Tri::Unknown(
                    first_tag(e),
                    format!("its value cannot be compared with `{}`", op.as_str()),
                ),
            },
        },
        _ => match value(e, lookup) {
            Ok(Val::Bool(true)) => Tri::True,
            Ok(Val::Bool(false)) => Tri::False(e),
            Ok(_) => Tri::Unknown(first_tag(e), "its value is not a boolean".into()),
            Err((t, w)) => Tri::Unknown(t, w),
        },
    }
}

fn first_tag(e: &Expr) -> String {
    e.tags().first().map_or_else(String::new, |t| t.to_string())
}

fn value(
    e: &Expr,
    lookup: &impl Fn(&str) -> Option<(Value, Quality)>,
) -> Result<Val, (String, String)> {
    match &e.kind {
        ExprKind::Num(n) => Ok(Val::Num(*n)),
        ExprKind::Str(s) => Ok(Val::Text(s.clone())),
        ExprKind::Bool(b) => Ok(Val::Bool(*b)),
        ExprKind::Tag(t) => {
            let unknown = |why: String| Err((t.clone(), why));
            match lookup(t) {
                None => unknown("it has no value".into()),
                Some((_, q)) if q != Quality::Good => {
                    unknown(format!("its quality is {}", q.as_str()))
                }
                Some((Value::Num(n), _)) if !n.is_finite() => {
                    unknown("its value is not a finite number".into())
                }
                Some((Value::Num(n), _)) => Ok(Val::Num(n)),
                Some((Value::Bool(b), _)) => Ok(Val::Bool(b)),
                Some((Value::Text(s), _)) => Ok(Val::Text(s.to_string())),
            }
        }
        // A condition used as a value (`(a and b) == c`).
        _ => match truth(e, lookup) {
            Tri::True => Ok(Val::Bool(true)),
            Tri::False(_) => Ok(Val::Bool(false)),
            Tri::Unknown(t, w) => Err((t, w)),
        },
    }
}

/// `None` when the two values are of kinds the operator cannot compare:
/// the config check rules that out, so it means a tag changed kind.
fn compare(op: CmpOp, a: &Val, b: &Val) -> Option<bool> {
    use std::cmp::Ordering;
    let ord = match (a, b) {
        (Val::Num(x), Val::Num(y)) => x.partial_cmp(y)?,
        (Val::Bool(x), Val::Bool(y)) if !op.is_order() => x.cmp(y),
        (Val::Text(x), Val::Text(y)) if !op.is_order() => x.cmp(y),
        _ => return None,
    };
    Some(match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    })
}

#[cfg(test)]
#[path = "interlock_tests.rs"]
mod tests;
