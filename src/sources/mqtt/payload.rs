//! Payload decoding: plain numbers and JSON field paths.

use crate::config::Payload;
use crate::twin::Value;

/// Why a payload was dropped.
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
}

/// Decode a payload to a raw value (before scale and offset).
pub fn decode(spec: &Payload, bytes: &[u8]) -> Result<Value, PayloadError> {
    match spec {
        Payload::Number => {
            let text = std::str::from_utf8(bytes).map_err(|_| PayloadError::NotUtf8)?;
            let t = text.trim();
            match t {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => t
                    .parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite())
                    .map(Value::Num)
                    .ok_or_else(|| PayloadError::NotANumber(t.chars().take(32).collect())),
            }
        }
        Payload::Json { field } => {
            let v: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| PayloadError::BadJson(e.to_string()))?;
            let mut cur = &v;
            for seg in field {
                let next = match cur {
                    serde_json::Value::Object(m) => m.get(seg),
                    serde_json::Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                    _ => None,
                };
                cur = next.ok_or_else(|| PayloadError::MissingField(field.join(".")))?;
            }
            match cur {
                serde_json::Value::Bool(b) => Ok(Value::Bool(*b)),
                serde_json::Value::Number(n) => {
                    n.as_f64()
                        .map(Value::Num)
                        .ok_or_else(|| PayloadError::WrongType {
                            field: field.join("."),
                            found: "an out-of-range number",
                        })
                }
                other => Err(PayloadError::WrongType {
                    field: field.join("."),
                    found: match other {
                        serde_json::Value::Null => "null",
                        serde_json::Value::String(_) => "a string",
                        serde_json::Value::Array(_) => "an array",
                        _ => "an object",
                    },
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(path: &str) -> Payload {
        Payload::Json {
            field: path.split('.').map(str::to_string).collect(),
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(decode(&Payload::Number, b" 21.5\n"), Ok(Value::Num(21.5)));
        assert_eq!(decode(&Payload::Number, b"true"), Ok(Value::Bool(true)));
        assert!(matches!(
            decode(&Payload::Number, b"NaN"),
            Err(PayloadError::NotANumber(_))
        ));
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
        assert_eq!(decode(&json("data.rms"), p), Ok(Value::Num(1.5)));
        assert_eq!(decode(&json("data.axes.1"), p), Ok(Value::Num(0.2)));
        assert_eq!(decode(&json("ok"), p), Ok(Value::Bool(true)));
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
}
