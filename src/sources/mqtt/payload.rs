//! Payload decoding: plain numbers, JSON field paths, and JSON arrays of
//! samples that carry their own timestamps.
//!
//! Pure functions from bytes to readings (raw values, before scale and
//! offset, with the device's timestamp where the payload has one), so every
//! shape is tested without a broker.

use crate::config::{Payload, TimeField, TimeUnit};
use crate::twin::Value;

/// Why a payload (or one sample of an array) was dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("payload is not UTF-8 text")]
    NotUtf8,
    #[error("payload {0:?} is not a number")]
    NotANumber(String),
    #[error("payload is not valid JSON: {0}")]
    BadJson(String),
    #[error("JSON has no field `{0}`")]
    MissingField(String),
    #[error("JSON field `{field}` is {found}, not a number or boolean")]
    WrongType { field: String, found: &'static str },
    #[error("JSON field `{field}` is {found}, not an array of samples")]
    NotAnArray { field: String, found: &'static str },
    #[error("timestamp field `{field}` is {found}, not {expected}")]
    BadTimeType {
        field: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("timestamp {0} is out of range; check the topic's time_unit")]
    TimeOutOfRange(String),
    #[error("timestamp {0:?} is not an RFC 3339 date-time such as \"2026-11-28T16:07:16.803Z\"")]
    BadRfc3339(String),
}

/// One value read from a payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Raw value, before scale and offset. `None`: the field is JSON
    /// `null`, the publisher saying it has no valid reading: the tag goes
    /// bad (`null_value`, as a Sparkplug metric marked null), where a
    /// dropped payload would leave its last value standing as good.
    pub value: Option<Value>,
    /// The device's timestamp (ns since the Unix epoch), if the payload
    /// carries one.
    pub time_ns: Option<i64>,
}

/// What one payload decoded to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decoded {
    pub readings: Vec<Reading>,
    /// Samples of an array that were dropped, and the first reason; the
    /// others still count.
    pub rejected: usize,
    pub first_error: Option<PayloadError>,
}

/// Decode a payload. An error means nothing usable was in it; a partly
/// broken array gives its good samples and counts the rest in
/// [`Decoded::rejected`].
pub fn decode(spec: &Payload, bytes: &[u8]) -> Result<Decoded, PayloadError> {
    match decode_strict(spec, bytes) {
        // Python's `json.dumps` (and many publishers after it) writes NaN
        // and infinities as bare `NaN`, `Infinity`, `-Infinity`, which is
        // not JSON. Read as the numbers they stand for, they make the tag
        // bad (`non_finite`); dropped, the tag stayed good at its last value.
        Err(PayloadError::BadJson(e)) if !matches!(spec, Payload::Number) => {
            match quote_non_finite(bytes) {
                Some(fixed) => match decode_strict(spec, &fixed) {
                    Err(PayloadError::BadJson(_)) => Err(PayloadError::BadJson(e)),
                    r => r,
                },
                None => Err(PayloadError::BadJson(e)),
            }
        }
        r => r,
    }
}

/// A number written as text: `NaN`, `Infinity` and `-Infinity` (as
/// Python's `json` writes them), and `nan`, `inf`, `-inf`.
fn non_finite_text(t: &str) -> Option<f64> {
    match t {
        "NaN" | "nan" => Some(f64::NAN),
        "Infinity" | "inf" => Some(f64::INFINITY),
        "-Infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// `bytes` with every bare `NaN`, `Infinity` and `-Infinity` outside a
/// string quoted, so that JSON parses it (as a string that
/// [`non_finite_text`] reads back); `None` if there is none.
fn quote_non_finite(bytes: &[u8]) -> Option<Vec<u8>> {
    const TOKENS: [&[u8]; 3] = [b"-Infinity", b"Infinity", b"NaN"];
    let mut out = Vec::with_capacity(bytes.len() + 8);
    let (mut in_string, mut escaped, mut found) = (false, false, false);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            out.push(b);
            i += 1;
            continue;
        }
        let token = TOKENS.iter().find(|t| {
            bytes[i..].starts_with(t)
                && bytes
                    .get(i + t.len())
                    .is_none_or(|c| !c.is_ascii_alphanumeric())
        });
        match token {
            Some(t) => {
                found = true;
                out.push(b'"');
                out.extend_from_slice(t);
                out.push(b'"');
                i += t.len();
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    found.then_some(out)
}

fn decode_strict(spec: &Payload, bytes: &[u8]) -> Result<Decoded, PayloadError> {
    match spec {
        Payload::Number => Ok(one(Some(decode_number(bytes)?), None)),
        // The hot path: one value, no timestamp. Stream to the field instead
        // of building the whole document (2-3x faster on typical payloads).
        Payload::Json { field, time: None } => Ok(one(seek::value(bytes, field)?, None)),
        Payload::Json { field, time } => {
            let doc = parse_json(bytes)?;
            let value = value_at(&doc, field)?;
            let time_ns = time.as_ref().map(|t| time_at(&doc, t)).transpose()?;
            Ok(one(value, time_ns))
        }
        Payload::JsonSamples { array, field, time } => {
            let doc = parse_json(bytes)?;
            let items = match lookup(&doc, array) {
                Some(serde_json::Value::Array(items)) => items,
                Some(other) => {
                    return Err(PayloadError::NotAnArray {
                        field: path_name(array),
                        found: json_kind(other),
                    });
                }
                None => return Err(PayloadError::MissingField(array.join("."))),
            };
            let mut out = Decoded::default();
            for item in items {
                let reading = value_at(item, field).and_then(|value| {
                    Ok(Reading {
                        value,
                        time_ns: Some(time_at(item, time)?),
                    })
                });
                match reading {
                    Ok(r) => out.readings.push(r),
                    Err(e) => {
                        out.rejected += 1;
                        out.first_error.get_or_insert(e);
                    }
                }
            }
            match (out.readings.is_empty(), out.first_error.take()) {
                (true, Some(e)) => Err(e),
                (_, e) => {
                    out.first_error = e;
                    Ok(out)
                }
            }
        }
    }
}

fn one(value: Option<Value>, time_ns: Option<i64>) -> Decoded {
    Decoded {
        readings: vec![Reading { value, time_ns }],
        rejected: 0,
        first_error: None,
    }
}

fn decode_number(bytes: &[u8]) -> Result<Value, PayloadError> {
    let text = std::str::from_utf8(bytes).map_err(|_| PayloadError::NotUtf8)?;
    let t = text.trim();
    match t {
        "true" => Ok(Value::Bool(true)),
        "false" => Ok(Value::Bool(false)),
        // `NaN` and `inf` are kept: a sensor that publishes them says it has
        // no valid reading, and the core turns them into a bad sample with
        // reason `non_finite`, as for a Modbus float register holding NaN.
        // Dropped here instead, the tag kept its last value as good.
        _ => t
            .parse::<f64>()
            .ok()
            .map(Value::Num)
            .ok_or_else(|| PayloadError::NotANumber(t.chars().take(32).collect())),
    }
}

fn parse_json(bytes: &[u8]) -> Result<serde_json::Value, PayloadError> {
    serde_json::from_slice(bytes).map_err(|e| PayloadError::BadJson(e.to_string()))
}

fn lookup<'a>(doc: &'a serde_json::Value, path: &[String]) -> Option<&'a serde_json::Value> {
    let mut cur = doc;
    for seg in path {
        cur = match cur {
            serde_json::Value::Object(m) => m.get(seg),
            serde_json::Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        }?;
    }
    Some(cur)
}

fn path_name(path: &[String]) -> String {
    if path.is_empty() {
        "(the payload)".to_string()
    } else {
        path.join(".")
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn value_at(doc: &serde_json::Value, field: &[String]) -> Result<Option<Value>, PayloadError> {
    let v = lookup(doc, field).ok_or_else(|| PayloadError::MissingField(field.join(".")))?;
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Bool(b) => Ok(Some(Value::Bool(*b))),
        serde_json::Value::Number(n) => n
            .as_f64()
            .filter(|n| n.is_finite())
            .map(|n| Some(Value::Num(n)))
            .ok_or_else(|| PayloadError::WrongType {
                field: field.join("."),
                found: "an out-of-range number",
            }),
        other => match other.as_str().and_then(non_finite_text) {
            Some(x) => Ok(Some(Value::Num(x))),
            None => Err(PayloadError::WrongType {
                field: field.join("."),
                found: json_kind(other),
            }),
        },
    }
}

fn time_at(doc: &serde_json::Value, time: &TimeField) -> Result<i64, PayloadError> {
    let v =
        lookup(doc, &time.path).ok_or_else(|| PayloadError::MissingField(time.path.join(".")))?;
    let wrong = |expected| PayloadError::BadTimeType {
        field: time.path.join("."),
        found: json_kind(v),
        expected,
    };
    let per_unit: i64 = match time.unit {
        TimeUnit::Rfc3339 => {
            let serde_json::Value::String(s) = v else {
                return Err(wrong("an RFC 3339 string"));
            };
            return parse_rfc3339(s).ok_or_else(|| PayloadError::BadRfc3339(s.clone()));
        }
        TimeUnit::Seconds => 1_000_000_000,
        TimeUnit::Millis => 1_000_000,
        TimeUnit::Micros => 1_000,
        TimeUnit::Nanos => 1,
    };
    let serde_json::Value::Number(n) = v else {
        return Err(wrong("a number"));
    };
    let out_of_range = || PayloadError::TimeOutOfRange(n.to_string());
    // Integers stay exact: nanoseconds since 1970 are beyond f64's 2^53.
    if let Some(i) = n.as_i64() {
        return i.checked_mul(per_unit).ok_or_else(out_of_range);
    }
    // Fractions are read from the decimal text: as an f64, seconds since
    // 1970 in nanoseconds are only good to a few hundred ns.
    if let Some(ns) = decimal_times(&n.to_string(), per_unit) {
        return Ok(ns);
    }
    let f = n.as_f64().ok_or_else(out_of_range)? * per_unit as f64;
    if f.is_finite() && f.abs() < 9.2e18 {
        Ok(f.round() as i64)
    } else {
        Err(out_of_range())
    }
}

/// `text * per_unit` for a plain decimal such as "1732800000.123", exactly
/// (digits past a nanosecond are cut). None for exponents or overflow.
fn decimal_times(text: &str, per_unit: i64) -> Option<i64> {
    let (neg, t) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut v = int.parse::<i64>().ok()?.checked_mul(per_unit)?;
    let mut scale = per_unit;
    for d in frac.bytes() {
        scale /= 10;
        if scale == 0 {
            break;
        }
        v = v.checked_add(i64::from(d - b'0') * scale)?;
    }
    Some(if neg { -v } else { v })
}

/// Nanoseconds since the Unix epoch of an RFC 3339 date-time:
/// `2026-11-28T16:07:16.803Z`, `2026-11-28T17:07:16+01:00`. A space may
/// stand for the `T`; letters may be lower case; fractions go down to ns.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        // 60 is a leap second; it is counted as the next second's start.
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut frac_ns = 0i64;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = &b[start..i];
        if digits.is_empty() {
            return None;
        }
        for (k, d) in digits.iter().take(9).enumerate() {
            frac_ns += i64::from(d - b'0') * 10i64.pow(8 - k as u32);
        }
    }
    let offset_s = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    secs.checked_mul(1_000_000_000)?.checked_add(frac_ns)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`). Also the calendar of `twin import`'s times.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Find one value by field path while parsing, without building the
/// document: objects are scanned key by key and everything off the path is
/// skipped (`IgnoredAny`). Same results and errors as the DOM path.
mod seek {
    use std::fmt;

    use serde::de::{
        self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    };

    use super::PayloadError;
    use crate::twin::Value;

    enum Found {
        Num(f64),
        Bool(bool),
        /// JSON `null`: no valid reading.
        Null,
        /// NaN or an infinity, written as text (see `non_finite_text`).
        NonFinite(f64),
        /// Something other than a number or boolean, by kind.
        Other(&'static str),
        /// An out-of-range number (serde_json gives it as an error-free
        /// non-finite float only with arbitrary precision, so this is rare).
        BadNumber,
        Missing,
    }

    pub(super) fn value(bytes: &[u8], path: &[String]) -> Result<Option<Value>, PayloadError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let found = Seek(path)
            .deserialize(&mut de)
            .and_then(|f| de.end().map(|()| f))
            .map_err(|e| PayloadError::BadJson(e.to_string()))?;
        let name = || path.join(".");
        match found {
            Found::Num(n) if n.is_finite() => Ok(Some(Value::Num(n))),
            Found::Num(_) | Found::BadNumber => Err(PayloadError::WrongType {
                field: name(),
                found: "an out-of-range number",
            }),
            Found::Bool(b) => Ok(Some(Value::Bool(b))),
            Found::Null => Ok(None),
            Found::NonFinite(x) => Ok(Some(Value::Num(x))),
            Found::Other(kind) => Err(PayloadError::WrongType {
                field: name(),
                found: kind,
            }),
            Found::Missing => Err(PayloadError::MissingField(name())),
        }
    }

    struct Seek<'p>(&'p [String]);

    impl<'de> DeserializeSeed<'de> for Seek<'_> {
        type Value = Found;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Found, D::Error> {
            d.deserialize_any(self)
        }
    }

    /// Compares an object key with the wanted one without allocating.
    struct KeyIs<'k>(&'k str);

    impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
        type Value = bool;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for KeyIs<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object key")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            Ok(v == self.0)
        }
    }

    impl<'de> Visitor<'de> for Seek<'_> {
        type Value = Found;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Found, E> {
            Ok(if self.0.is_empty() {
                Found::Bool(v)
            } else {
                Found::Missing
            })
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Found, E> {
            Ok(if self.0.is_empty() {
                Found::Num(v as f64)
            } else {
                Found::Missing
            })
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Found, E> {
            Ok(if self.0.is_empty() {
                Found::Num(v as f64)
            } else {
                Found::Missing
            })
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Found, E> {
            Ok(if !self.0.is_empty() {
                Found::Missing
            } else if v.is_finite() {
                Found::Num(v)
            } else {
                Found::BadNumber
            })
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Found, E> {
            Ok(if self.0.is_empty() {
                match super::non_finite_text(v) {
                    Some(x) => Found::NonFinite(x),
                    None => Found::Other("a string"),
                }
            } else {
                Found::Missing
            })
        }
        fn visit_unit<E: de::Error>(self) -> Result<Found, E> {
            Ok(if self.0.is_empty() {
                Found::Null
            } else {
                Found::Missing
            })
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found, A::Error> {
            let Some((first, rest)) = self.0.split_first() else {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                return Ok(Found::Other("an object"));
            };
            let mut found = Found::Missing;
            while let Some(hit) = map.next_key_seed(KeyIs(first))? {
                // A repeated key: JSON objects keep the last one, as the DOM does.
                if hit {
                    found = map.next_value_seed(Seek(rest))?;
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Found, A::Error> {
            let Some((first, rest)) = self.0.split_first() else {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(Found::Other("an array"));
            };
            let want = first.parse::<usize>().ok();
            let mut found = Found::Missing;
            let mut i = 0usize;
            loop {
                if Some(i) == want {
                    match seq.next_element_seed(Seek(rest))? {
                        Some(f) => found = f,
                        None => break,
                    }
                } else if seq.next_element::<IgnoredAny>()?.is_none() {
                    break;
                }
                i += 1;
            }
            Ok(found)
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn streaming_seek_agrees_with_the_document_path() {
        let payloads: &[&[u8]] = &[
            br#"{"data":{"rms":1.5,"axes":[0.1,0.2]},"ok":true,"s":"x","n":null}"#,
            br#"{"data":{"rms":"high"}}"#,
            br#"{"data":[1,2,3]}"#,
            br#"{"data":{"rms":1},"data":{"rms":2}}"#,
            br#"{"d\u0061ta":{"rms":7}}"#,
            br#"[{"rms":1},{"rms":2}]"#,
            br#"42"#,
            br#"{"data":{"rms":-0.0}}"#,
            br#"{"data":{"rms":18446744073709551615}}"#,
            br#"{"data":{}}"#,
            br#"{"data":{"rms":1.5}} trailing"#,
            br#"{"data":{"rms":1.5"#,
            br#"not json"#,
        ];
        let paths = [
            "data.rms",
            "data.axes.1",
            "data.axes.9",
            "ok",
            "s",
            "n",
            "data",
            "1.rms",
            "0",
            "data.2",
        ];
        for p in payloads {
            for path in paths {
                let field: Vec<String> = path.split('.').map(str::to_string).collect();
                let dom = parse_json(p).and_then(|doc| value_at(&doc, &field));
                let streamed = seek::value(p, &field);
                match (&dom, &streamed) {
                    // Both reject bad JSON; serde's messages may differ.
                    (Err(PayloadError::BadJson(_)), Err(PayloadError::BadJson(_))) => {}
                    _ => assert_eq!(dom, streamed, "{} at {path}", String::from_utf8_lossy(p)),
                }
            }
        }
        // One deliberate difference: a number too large for f64 in a field
        // off the path is skipped, not parsed, so it no longer spoils the
        // field that was asked for. On the path it is still an error.
        let big = br#"{"other":1e400,"data":{"rms":2}}"#;
        let rms: Vec<String> = vec!["data".into(), "rms".into()];
        assert_eq!(seek::value(big, &rms), Ok(Some(Value::Num(2.0))));
        assert!(seek::value(br#"{"data":{"rms":1e400}}"#, &rms).is_err());
    }

    use super::*;

    fn path(p: &str) -> Vec<String> {
        if p.is_empty() {
            Vec::new()
        } else {
            p.split('.').map(str::to_string).collect()
        }
    }

    fn json(p: &str) -> Payload {
        Payload::Json {
            field: path(p),
            time: None,
        }
    }

    fn samples(array: &str, field: &str, time: &str, unit: TimeUnit) -> Payload {
        Payload::JsonSamples {
            array: path(array),
            field: path(field),
            time: TimeField {
                path: path(time),
                unit,
            },
        }
    }

    /// The readings' values; a JSON `null` (no value) is left out, and
    /// `json_null_is_a_reading_without_a_value` checks it.
    fn values(spec: &Payload, bytes: &[u8]) -> Result<Vec<Value>, PayloadError> {
        decode(spec, bytes).map(|d| d.readings.into_iter().filter_map(|r| r.value).collect())
    }

    #[test]
    fn numbers() {
        assert_eq!(
            values(&Payload::Number, b" 21.5\n"),
            Ok(vec![Value::Num(21.5)])
        );
        assert_eq!(
            values(&Payload::Number, b"true"),
            Ok(vec![Value::Bool(true)])
        );
        // A sensor's "no valid reading" reaches the core, which makes the
        // tag bad (`non_finite`), rather than being dropped with the tag
        // left good at its last value.
        for (text, want) in [
            (&b"NaN"[..], f64::NAN),
            (b"nan", f64::NAN),
            (b"inf", f64::INFINITY),
            (b"-Infinity", f64::NEG_INFINITY),
            (b"1e999", f64::INFINITY),
        ] {
            let got = values(&Payload::Number, text);
            assert!(
                matches!(&got, Ok(v) if matches!(v[..], [Value::Num(n)] if n.total_cmp(&want).is_eq() || (n.is_nan() && want.is_nan()))),
                "{}: {got:?}",
                String::from_utf8_lossy(text)
            );
        }
        assert!(matches!(
            decode(&Payload::Number, b"abc"),
            Err(PayloadError::NotANumber(_))
        ));
        assert_eq!(
            decode(&Payload::Number, &[0xff, 0xfe]),
            Err(PayloadError::NotUtf8)
        );
    }

    #[test]
    fn json_paths() {
        let p = br#"{"data":{"rms":1.5,"axes":[0.1,0.2]},"ok":true,"s":"x"}"#;
        assert_eq!(values(&json("data.rms"), p), Ok(vec![Value::Num(1.5)]));
        assert_eq!(values(&json("data.axes.1"), p), Ok(vec![Value::Num(0.2)]));
        assert_eq!(values(&json("ok"), p), Ok(vec![Value::Bool(true)]));
        assert_eq!(
            decode(&json("data.peak"), p),
            Err(PayloadError::MissingField("data.peak".into()))
        );
        assert!(matches!(
            decode(&json("s"), p),
            Err(PayloadError::WrongType { .. })
        ));
        assert!(matches!(
            decode(&json("a"), b"{"),
            Err(PayloadError::BadJson(_))
        ));
    }

    /// A field that is JSON `null` is a reading without a value (the tag
    /// goes bad, `null_value`), on the streaming path, the document path
    /// and in arrays of samples, where the other samples still count.
    #[test]
    fn json_null_is_a_reading_without_a_value() {
        let p = br#"{"v":null,"meta":{"ts":1732800000}}"#;
        let d = decode(&json("v"), p).expect("decodes");
        assert_eq!(d.readings.len(), 1);
        assert_eq!(d.readings[0].value, None);
        let timed = Payload::Json {
            field: path("v"),
            time: Some(TimeField {
                path: path("meta.ts"),
                unit: TimeUnit::Seconds,
            }),
        };
        let d = decode(&timed, p).expect("decodes");
        assert_eq!(d.readings[0].value, None);
        assert_eq!(d.readings[0].time_ns, Some(1_732_800_000_000_000_000));
        let spec = samples("", "v", "ts", TimeUnit::Millis);
        let d = decode(&spec, br#"[{"ts": 1, "v": null}, {"ts": 2, "v": 1.5}]"#).expect("decodes");
        let got: Vec<Option<Value>> = d.readings.into_iter().map(|r| r.value).collect();
        assert_eq!(got, [None, Some(Value::Num(1.5))]);
        assert_eq!(d.rejected, 0);
        // A missing field is still an error: nothing was said about it.
        assert!(matches!(
            decode(&json("w"), p),
            Err(PayloadError::MissingField(_))
        ));
    }

    /// `NaN`, `Infinity` and `-Infinity` as Python's `json` writes them
    /// (bare, which is not JSON) or quoted are read as the non-finite
    /// numbers they stand for, so the core makes the tag bad
    /// (`non_finite`); the same words inside a longer string, or as another
    /// field's value, change nothing.
    #[test]
    fn json_nan_and_infinities_as_python_writes_them_are_non_finite_readings() {
        let nan = |v: &Option<Value>| matches!(v, Some(Value::Num(n)) if n.is_nan());
        for body in [
            &br#"{"v": NaN}"#[..],
            br#"{"v":NaN,"note":"NaN, Infinity"}"#,
            br#"{"v": "NaN"}"#,
            br#"{"v": "nan"}"#,
        ] {
            let d = decode(&json("v"), body).expect("decodes");
            assert!(
                nan(&d.readings[0].value),
                "{}: {d:?}",
                String::from_utf8_lossy(body)
            );
        }
        let d = decode(&json("v"), br#"{"v": -Infinity}"#).expect("decodes");
        assert_eq!(d.readings[0].value, Some(Value::Num(f64::NEG_INFINITY)));
        let d = decode(&json("v"), br#"{"v": Infinity, "w": 1}"#).expect("decodes");
        assert_eq!(d.readings[0].value, Some(Value::Num(f64::INFINITY)));
        // Another field's NaN does not spoil this one's value.
        let d = decode(&json("v"), br#"{"w": NaN, "v": 2.5}"#).expect("decodes");
        assert_eq!(d.readings[0].value, Some(Value::Num(2.5)));
        // The document path (with a timestamp) and arrays of samples.
        let timed = Payload::Json {
            field: path("v"),
            time: Some(TimeField {
                path: path("ts"),
                unit: TimeUnit::Seconds,
            }),
        };
        let d = decode(&timed, br#"{"v": NaN, "ts": 1732800000}"#).expect("decodes");
        assert!(nan(&d.readings[0].value));
        let spec = samples("", "v", "ts", TimeUnit::Millis);
        let d = decode(&spec, br#"[{"ts": 1, "v": NaN}, {"ts": 2, "v": 1.5}]"#).expect("decodes");
        assert!(nan(&d.readings[0].value));
        assert_eq!(d.readings[1].value, Some(Value::Num(1.5)));
        // Text that merely contains the words stays a string (wrong type),
        // and JSON that is broken otherwise stays broken.
        assert!(matches!(
            decode(&json("v"), br#"{"v": "NaN or so"}"#),
            Err(PayloadError::WrongType { .. })
        ));
        assert!(matches!(
            decode(&json("v"), br#"{"v": NaNa}"#),
            Err(PayloadError::BadJson(_))
        ));
        assert!(matches!(
            decode(&json("v"), br#"{"v": NaN"#),
            Err(PayloadError::BadJson(_))
        ));
        // A quote escaped inside a string does not end it.
        let d = decode(&json("v"), br#"{"s": "a \" NaN", "v": NaN}"#).expect("decodes");
        assert!(nan(&d.readings[0].value));
    }

    #[test]
    fn a_json_object_may_carry_its_timestamp() {
        let spec = Payload::Json {
            field: path("v"),
            time: Some(TimeField {
                path: path("meta.ts"),
                unit: TimeUnit::Seconds,
            }),
        };
        let d = decode(&spec, br#"{"v": 3, "meta": {"ts": 1732800000.5}}"#).expect("decodes");
        assert_eq!(d.readings[0].time_ns, Some(1_732_800_000_500_000_000));
        assert!(matches!(
            decode(&spec, br#"{"v": 3, "meta": {"ts": "soon"}}"#),
            Err(PayloadError::BadTimeType { .. })
        ));
    }

    #[test]
    fn arrays_of_timestamped_samples() {
        let spec = samples("", "v", "ts", TimeUnit::Millis);
        let d = decode(
            &spec,
            br#"[{"ts": 1732800000123, "v": 1.2}, {"ts": 1732800000223, "v": 1.3}]"#,
        )
        .expect("decodes");
        assert_eq!(
            d.readings,
            vec![
                Reading {
                    value: Some(Value::Num(1.2)),
                    time_ns: Some(1_732_800_000_123_000_000)
                },
                Reading {
                    value: Some(Value::Num(1.3)),
                    time_ns: Some(1_732_800_000_223_000_000)
                },
            ]
        );
        assert_eq!(d.rejected, 0);
        // An empty batch is not an error: there was just nothing to send.
        assert_eq!(decode(&spec, b"[]"), Ok(Decoded::default()));
        assert!(matches!(
            decode(&spec, br#"{"v": 1}"#),
            Err(PayloadError::NotAnArray { .. })
        ));
    }

    #[test]
    fn a_broken_sample_is_dropped_and_the_others_kept() {
        let spec = samples("data.batch", "value", "t", TimeUnit::Nanos);
        let d = decode(
            &spec,
            br#"{"data": {"batch": [{"t": 1732800000123456789, "value": 2}, {"t": 5}, {"value": 1, "t": "x"}]}}"#,
        )
        .expect("decodes");
        // Nanoseconds stay exact (beyond f64's 53 bits).
        assert_eq!(d.readings.len(), 1);
        assert_eq!(d.readings[0].time_ns, Some(1_732_800_000_123_456_789));
        assert_eq!(d.rejected, 2);
        assert_eq!(
            d.first_error,
            Some(PayloadError::MissingField("value".into()))
        );
        // All broken: the payload is.
        assert!(decode(&spec, br#"{"data": {"batch": [{"t": 5}]}}"#).is_err());
    }

    #[test]
    fn time_units() {
        let at = |unit, ts: &str| {
            let spec = samples("", "v", "ts", unit);
            decode(&spec, format!(r#"[{{"ts": {ts}, "v": 0}}]"#).as_bytes())
                .map(|d| d.readings[0].time_ns)
        };
        assert_eq!(
            at(TimeUnit::Seconds, "1732800000"),
            Ok(Some(1_732_800_000_000_000_000))
        );
        assert_eq!(
            at(TimeUnit::Micros, "1732800000123456"),
            Ok(Some(1_732_800_000_123_456_000))
        );
        assert_eq!(
            at(TimeUnit::Rfc3339, r#""2024-11-28T13:20:00.123Z""#),
            Ok(Some(1_732_800_000_123_000_000))
        );
        // Milliseconds read as seconds overflow: a clear error, not year 56000.
        assert!(matches!(
            at(TimeUnit::Seconds, "1732800000123000"),
            Err(PayloadError::TimeOutOfRange(_))
        ));
        assert!(matches!(
            at(TimeUnit::Millis, r#""2024-11-28T13:20:00Z""#),
            Err(PayloadError::BadTimeType { .. })
        ));
    }

    #[test]
    fn rfc3339_dates() {
        let base = 1_732_800_000_000_000_000;
        assert_eq!(parse_rfc3339("2024-11-28T13:20:00Z"), Some(base));
        assert_eq!(parse_rfc3339("2024-11-28 13:20:00z"), Some(base));
        assert_eq!(parse_rfc3339("2024-11-28T14:20:00+01:00"), Some(base));
        assert_eq!(parse_rfc3339("2024-11-28T08:50:00-04:30"), Some(base));
        assert_eq!(
            parse_rfc3339("2024-11-28T13:20:00.000000001Z"),
            Some(base + 1)
        );
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z"),
            Some(951_782_400_000_000_000)
        );
        for bad in [
            "2024-11-28",
            "2024-11-28T13:20:00",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-11-28T24:00:00Z",
            "2024-11-28T13:20:00.Z",
            "2024-11-28T13:20:00+0100",
            "2024-11-28T13:20:00Zjunk",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
