//! A small, error-collecting reader over the spanned TOML tree.
//!
//! serde stops at the first error; integrators want all of them. So the schema
//! is decoded by hand with [`Table`], which records every key it is asked for,
//! reports wrong types and ranges with the exact span, and at the end
//! ([`Table::finish`]) flags each key it was never asked for as unknown, with a
//! did-you-mean taken from the keys that *were* asked for. That gives the same
//! guarantee as `#[serde(deny_unknown_fields)]` without losing the other errors.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::diagnostics::{Diagnostic, closest, did_you_mean};

/// Collects diagnostics while decoding one file.
#[derive(Debug, Default)]
pub struct Sink {
    pub diags: Vec<Diagnostic>,
    /// Tags declared by a register or topic that was dropped because of an
    /// error. The error is already reported where the tag is declared, so a
    /// reference to the tag elsewhere is not reported again as unknown: that
    /// would send the integrator to the wrong line.
    pub broken_tags: BTreeSet<String>,
}

impl Sink {
    pub fn push(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }
}

/// A value with the byte range it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loc<T> {
    pub value: T,
    pub span: Range<usize>,
}

impl<T> Loc<T> {
    pub fn new(value: T, span: Range<usize>) -> Self {
        Loc { value, span }
    }
}

impl<T> std::ops::Deref for Loc<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

pub fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// Units suggested for a mistyped duration unit: the usual spellings only,
/// not every one humantime accepts.
const DURATION_UNITS: &[&str] = &[
    "ns", "us", "ms", "s", "sec", "secs", "seconds", "m", "min", "mins", "minutes", "h", "hours",
];

/// The diagnostic for a duration string humantime could not parse. An unknown
/// unit is pointed at precisely, because that is what needs changing.
fn duration_error(
    v: &Spanned<DeValue<'_>>,
    text: &str,
    e: humantime::DurationError,
    path: String,
    expected: String,
) -> Diagnostic {
    let span = v.span();
    match e {
        humantime::DurationError::UnknownUnit { value, unit, .. } if unit.is_empty() => {
            Diagnostic::error(span, path, format!("duration \"{text}\" has no unit"))
                .expected(expected)
                .help(format!(
                    "write the unit, e.g. \"{value}ms\" or \"{value}s\""
                ))
        }
        humantime::DurationError::UnknownUnit {
            start, end, unit, ..
        } => {
            // Offsets are into the trimmed text; map them into the file only
            // when the string is written plainly (quotes, no escapes), so the
            // source text and the value line up byte for byte.
            let lead = text.len() - text.trim_start().len();
            let plain = span.len() == text.len() + 2;
            let unit_span = if plain {
                span.start + 1 + lead + start..span.start + 1 + lead + end
            } else {
                span
            };
            Diagnostic::error(
                unit_span,
                path,
                format!("unknown unit \"{unit}\" in duration \"{text}\""),
            )
            .expected(expected)
            .help(
                did_you_mean(&unit, DURATION_UNITS.iter().copied())
                    .unwrap_or_else(|| "use ms, s, m or h, e.g. \"500ms\" or \"1m30s\"".into()),
            )
        }
        e => Diagnostic::error(span, path, format!("invalid duration \"{text}\": {e}"))
            .expected(expected)
            .help(if text.trim_start().starts_with('-') {
                "a duration cannot be negative; write e.g. \"500ms\" or \"1m30s\""
            } else {
                "write a number, then its unit (ms, s, m or h), e.g. \"500ms\" or \"1m30s\""
            }),
    }
}

/// A TOML table being decoded, with its key path for messages.
pub struct Table<'a, 'i> {
    table: &'a DeTable<'i>,
    span: Range<usize>,
    path: String,
    asked: Vec<&'static str>,
}

impl<'a, 'i> Table<'a, 'i> {
    pub fn new(table: &'a DeTable<'i>, span: Range<usize>, path: impl Into<String>) -> Self {
        Table {
            table,
            span,
            path: path.into(),
            asked: Vec::new(),
        }
    }

    /// Treat `value` as a table, or report that it is not one.
    pub fn from_value(
        sink: &mut Sink,
        value: &'a Spanned<DeValue<'i>>,
        path: impl Into<String>,
    ) -> Option<Self> {
        let path = path.into();
        match value.get_ref() {
            DeValue::Table(t) => Some(Table::new(t, value.span(), path)),
            other => {
                sink.push(
                    Diagnostic::error(
                        value.span(),
                        path,
                        format!("expected a table, found {}", type_name(other)),
                    )
                    .expected("a table (`[section]` or `{ key = value }`)"),
                );
                None
            }
        }
    }

    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The table's own key path, e.g. `models[0].alarm`.
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{}", self.path, key)
        }
    }

    /// Span of the whole key/value entry, pointing at the key.
    pub fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(k, _)| k.span())
    }

    /// The string at `key`, if it is one, without asking for it (an unknown
    /// or wrong key is still reported by the decoder that asks): for a caller
    /// that must know a table's id even when the table is rejected.
    pub fn peek_str(&self, key: &str) -> Option<String> {
        self.table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .and_then(|(_, v)| match v.get_ref() {
                DeValue::String(s) => Some(s.to_string()),
                _ => None,
            })
    }

    fn get(&mut self, key: &'static str) -> Option<&'a Spanned<DeValue<'i>>> {
        if !self.asked.contains(&key) {
            self.asked.push(key);
        }
        self.table
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    fn missing(&self, sink: &mut Sink, key: &'static str, expected: &str) {
        sink.push(
            Diagnostic::error(
                self.span.clone(),
                self.key_path(key),
                format!("missing required key `{key}`"),
            )
            .expected(expected.to_string())
            .help(format!("add `{key} = ...` to this table")),
        );
    }

    /// `kind` is what the value should have been ("an integer"), `expected`
    /// the full expectation ("an integer in 0..=65535").
    fn wrong_type(
        &self,
        sink: &mut Sink,
        key: &str,
        v: &Spanned<DeValue<'_>>,
        kind: &str,
        expected: &str,
    ) {
        let mut d = Diagnostic::error(
            v.span(),
            self.key_path(key),
            format!("expected {kind}, found {}", type_name(v.get_ref())),
        )
        .expected(expected.to_string());
        // A quoted number or boolean is the most common slip; say exactly
        // what to write instead.
        if let DeValue::String(text) = v.get_ref() {
            let t = text.trim();
            let fits = match kind {
                "an integer" => t.parse::<i64>().is_ok(),
                "a number" => t.parse::<f64>().is_ok_and(f64::is_finite),
                "a boolean" => t == "true" || t == "false",
                _ => false,
            };
            if fits {
                d = d.help(format!("remove the quotes: `{key} = {t}`"));
            }
        }
        sink.push(d);
    }

    pub fn opt_str(&mut self, sink: &mut Sink, key: &'static str) -> Option<Loc<String>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::String(s) => Some(Loc::new(s.to_string(), v.span())),
            _ => {
                self.wrong_type(sink, key, v, "a string", "a string");
                None
            }
        }
    }

    pub fn req_str(&mut self, sink: &mut Sink, key: &'static str) -> Option<Loc<String>> {
        if self.get(key).is_none() {
            self.missing(sink, key, "a string");
            return None;
        }
        let s = self.opt_str(sink, key)?;
        if s.value.trim().is_empty() {
            sink.push(
                Diagnostic::error(s.span.clone(), self.key_path(key), "must not be empty")
                    .expected("a non-empty string"),
            );
            return None;
        }
        Some(s)
    }

    pub fn opt_bool(&mut self, sink: &mut Sink, key: &'static str) -> Option<Loc<bool>> {
        let v = self.get(key)?;
        match v.get_ref() {
            DeValue::Boolean(b) => Some(Loc::new(*b, v.span())),
            _ => {
                self.wrong_type(sink, key, v, "a boolean", "a boolean (true or false)");
                None
            }
        }
    }

    /// An integer within `min..=max`.
    pub fn opt_int(
        &mut self,
        sink: &mut Sink,
        key: &'static str,
        min: i64,
        max: i64,
    ) -> Option<Loc<i64>> {
        let v = self.get(key)?;
        let expected = format!("an integer in {min}..={max}");
        match v.get_ref() {
            DeValue::Integer(i) => {
                let parsed = i64::from_str_radix(i.as_str(), i.radix()).ok();
                match parsed {
                    Some(n) if (min..=max).contains(&n) => Some(Loc::new(n, v.span())),
                    _ => {
                        sink.push(
                            Diagnostic::error(
                                v.span(),
                                self.key_path(key),
                                format!("{} is out of range", i.as_str()),
                            )
                            .expected(expected),
                        );
                        None
                    }
                }
            }
            _ => {
                self.wrong_type(sink, key, v, "an integer", &expected);
                None
            }
        }
    }

    pub fn req_int(
        &mut self,
        sink: &mut Sink,
        key: &'static str,
        min: i64,
        max: i64,
    ) -> Option<Loc<i64>> {
        if self.get(key).is_none() {
            self.missing(sink, key, &format!("an integer in {min}..={max}"));
            return None;
        }
        self.opt_int(sink, key, min, max)
    }

    /// A finite number; integers are accepted.
    pub fn opt_f64(&mut self, sink: &mut Sink, key: &'static str) -> Option<Loc<f64>> {
        let v = self.get(key)?;
        let n = match v.get_ref() {
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            _ => {
                self.wrong_type(sink, key, v, "a number", "a number");
                return None;
            }
        };
        match n {
            Some(n) if n.is_finite() => Some(Loc::new(n, v.span())),
            _ => {
                sink.push(
                    Diagnostic::error(v.span(), self.key_path(key), "must be a finite number")
                        .expected("a finite number (not nan or inf)"),
                );
                None
            }
        }
    }

    pub fn req_f64(&mut self, sink: &mut Sink, key: &'static str) -> Option<Loc<f64>> {
        if self.get(key).is_none() {
            self.missing(sink, key, "a number");
            return None;
        }
        self.opt_f64(sink, key)
    }

    /// A duration written as a string with a unit, such as `"250ms"` or `"5s"`,
    /// within `min..=max`.
    pub fn opt_duration(
        &mut self,
        sink: &mut Sink,
        key: &'static str,
        min: Duration,
        max: Duration,
    ) -> Option<Loc<Duration>> {
        let v = self.get(key)?;
        let expected = format!(
            "a duration string such as \"250ms\" or \"5s\", between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        );
        let DeValue::String(s) = v.get_ref() else {
            let mut d = Diagnostic::error(
                v.span(),
                self.key_path(key),
                format!(
                    "expected a duration string, found {}",
                    type_name(v.get_ref())
                ),
            )
            .expected(expected);
            if let DeValue::Integer(i) = v.get_ref() {
                d = d.help(format!(
                    "write the unit, e.g. `{key} = \"{}ms\"`",
                    i.as_str()
                ));
            }
            sink.push(d);
            return None;
        };
        match humantime::parse_duration(s.trim()) {
            Ok(d) if d >= min && d <= max => Some(Loc::new(d, v.span())),
            Ok(d) => {
                sink.push(
                    Diagnostic::error(
                        v.span(),
                        self.key_path(key),
                        format!("duration {} is out of range", humantime::format_duration(d)),
                    )
                    .expected(expected),
                );
                None
            }
            Err(e) => {
                sink.push(duration_error(v, s, e, self.key_path(key), expected));
                None
            }
        }
    }

    /// A string that must be one of `choices`.
    pub fn opt_enum(
        &mut self,
        sink: &mut Sink,
        key: &'static str,
        choices: &[&'static str],
    ) -> Option<Loc<&'static str>> {
        self.opt_enum_aliased(sink, key, choices, &[])
    }

    /// Like [`Table::opt_enum`], but a wrong value is also matched against
    /// `aliases` (other spellings of a choice, e.g. `float` for `f32`) so the
    /// did-you-mean can name the choice an integrator had in mind.
    pub fn opt_enum_aliased(
        &mut self,
        sink: &mut Sink,
        key: &'static str,
        choices: &[&'static str],
        aliases: &[(&'static str, &'static str)],
    ) -> Option<Loc<&'static str>> {
        let s = self.opt_str(sink, key)?;
        match choices.iter().find(|c| **c == s.value) {
            Some(c) => Some(Loc::new(*c, s.span)),
            None => {
                let words = choices.iter().copied().chain(aliases.iter().map(|a| a.0));
                let guess = closest(&s.value, words)
                    .map(|w| aliases.iter().find(|a| a.0 == w).map_or(w, |a| a.1));
                sink.push(
                    Diagnostic::error(
                        s.span.clone(),
                        self.key_path(key),
                        format!("unknown {key} \"{}\"", s.value),
                    )
                    .expected(format!("one of {}", choices.join(", ")))
                    .maybe_help(guess.map(|g| format!("did you mean `{g}`?"))),
                );
                None
            }
        }
    }

    /// A required [`Table::opt_enum_aliased`].
    pub fn req_enum(
        &mut self,
        sink: &mut Sink,
        key: &'static str,
        choices: &[&'static str],
        aliases: &[(&'static str, &'static str)],
    ) -> Option<Loc<&'static str>> {
        if self.get(key).is_none() {
            self.missing(sink, key, &format!("one of {}", choices.join(", ")));
            return None;
        }
        self.opt_enum_aliased(sink, key, choices, aliases)
    }

    /// An array of finite numbers (integers accepted).
    pub fn opt_f64_array(&mut self, sink: &mut Sink, key: &'static str) -> Option<Vec<f64>> {
        let v = self.get(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(
                sink,
                key,
                v,
                "an array of numbers",
                "an array of numbers, e.g. [65535, -32768]",
            );
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let n = match item.get_ref() {
                DeValue::Integer(n) => i64::from_str_radix(n.as_str(), n.radix())
                    .ok()
                    .map(|n| n as f64),
                DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
                _ => None,
            };
            match n {
                Some(n) if n.is_finite() => out.push(n),
                _ => sink.push(
                    Diagnostic::error(
                        item.span(),
                        format!("{}[{i}]", self.key_path(key)),
                        format!(
                            "expected a finite number, found {}",
                            type_name(item.get_ref())
                        ),
                    )
                    .expected("a number, e.g. 65535 or -32768"),
                ),
            }
        }
        Some(out)
    }

    /// An array of strings.
    pub fn opt_str_array(
        &mut self,
        sink: &mut Sink,
        key: &'static str,
    ) -> Option<Vec<Loc<String>>> {
        let v = self.get(key)?;
        let DeValue::Array(items) = v.get_ref() else {
            self.wrong_type(sink, key, v, "an array of strings", "an array of strings");
            return None;
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::String(s) => out.push(Loc::new(s.to_string(), item.span())),
                other => sink.push(
                    Diagnostic::error(
                        item.span(),
                        format!("{}[{i}]", self.key_path(key)),
                        format!("expected a string, found {}", type_name(other)),
                    )
                    .expected("a string"),
                ),
            }
        }
        Some(out)
    }

    /// A sub-table.
    pub fn opt_table(&mut self, sink: &mut Sink, key: &'static str) -> Option<Table<'a, 'i>> {
        let v = self.get(key)?;
        let path = self.key_path(key);
        Table::from_value(sink, v, path)
    }

    /// An array of tables (`[[key]]`); a single table is reported, not guessed.
    pub fn opt_table_array(&mut self, sink: &mut Sink, key: &'static str) -> Vec<Table<'a, 'i>> {
        let Some(v) = self.get(key) else {
            return Vec::new();
        };
        let path = self.key_path(key);
        match v.get_ref() {
            DeValue::Array(items) => items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| Table::from_value(sink, item, format!("{path}[{i}]")))
                .collect(),
            other => {
                sink.push(
                    Diagnostic::error(
                        v.span(),
                        path,
                        format!("expected an array of tables, found {}", type_name(other)),
                    )
                    .expected(format!(
                        "an array of tables, written `[[{}]]`",
                        self.key_path(key)
                    ))
                    .help(format!(
                        "write `[[{}]]` instead of `[{}]`",
                        self.key_path(key),
                        self.key_path(key)
                    )),
                );
                Vec::new()
            }
        }
    }

    /// Entries of a table whose keys are free-form (e.g. machine roles), with
    /// string values.
    pub fn str_entries(&self, sink: &mut Sink) -> Vec<(Loc<String>, Loc<String>)> {
        let mut out = Vec::new();
        for (k, v) in self.table.iter() {
            let key = Loc::new(k.get_ref().to_string(), k.span());
            match v.get_ref() {
                DeValue::String(s) => out.push((key, Loc::new(s.to_string(), v.span()))),
                other => sink.push(
                    Diagnostic::error(
                        v.span(),
                        self.key_path(&key.value),
                        format!("expected a tag name, found {}", type_name(other)),
                    )
                    .expected("a string naming a tag"),
                ),
            }
        }
        out
    }

    /// Report every key that no decoder asked for.
    pub fn finish(self, sink: &mut Sink) {
        for (k, _) in self.table.iter() {
            let name = k.get_ref().as_ref();
            if !self.asked.contains(&name) {
                let mut valid: Vec<&str> = self.asked.clone();
                valid.sort_unstable();
                sink.push(
                    Diagnostic::error(
                        k.span(),
                        self.key_path(name),
                        format!("unknown key `{name}`"),
                    )
                    .expected(format!("one of {}", valid.join(", ")))
                    .maybe_help(did_you_mean(name, self.asked.iter().copied())),
                );
            }
        }
    }
}

pub(super) const MS: Duration = Duration::from_millis(1);
pub(super) const HOUR: Duration = Duration::from_secs(3600);

pub(super) fn check_tag_name(sink: &mut Sink, path: &str, tag: &Loc<String>) {
    if let Some(bad) = tag
        .value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        sink.push(
            Diagnostic::error(
                tag.span.clone(),
                path,
                format!("tag name \"{}\" contains {:?}", tag.value, bad),
            )
            .expected("letters, digits, `_`, `.` and `-`, e.g. \"filler.motor_current\""),
        );
    }
}

/// A dimension: a number > 0, reported at its value when it is not.
pub(super) fn positive(
    sink: &mut Sink,
    t: &Table<'_, '_>,
    key: &'static str,
    v: Option<Loc<f64>>,
    unit: &str,
) -> Option<Loc<f64>> {
    let v = v?;
    if v.value > 0.0 {
        return Some(v);
    }
    sink.push(
        Diagnostic::error(
            v.span.clone(),
            t.key_path(key),
            format!("{key} must be positive, found {}", v.value),
        )
        .expected(format!("a number > 0, in {unit}")),
    );
    None
}
