//! Register words ↔ typed values. Big-endian bytes and words (ABCD), the
//! Modbus default; other orders arrive with the ingestion issue.

use crate::config::DataType;

/// Decode the raw value of `ty` from `words` (at least `ty.width()` of them).
/// Returns `None` if there are too few words.
pub fn decode_words(ty: DataType, words: &[u16]) -> Option<f64> {
    let w = |i: usize| words.get(i).copied().map(u64::from);
    let u32v = || Some((w(0)? << 16) | w(1)?);
    let u64v = || Some((w(0)? << 48) | (w(1)? << 32) | (w(2)? << 16) | w(3)?);
    Some(match ty {
        DataType::Bool => f64::from(u8::from(*words.first()? != 0)),
        DataType::U16 => f64::from(*words.first()?),
        DataType::I16 => f64::from(*words.first()? as i16),
        DataType::U32 => u32v()? as f64,
        DataType::I32 => f64::from(u32v()? as u32 as i32),
        DataType::F32 => f64::from(f32::from_bits(u32v()? as u32)),
        DataType::U64 => u64v()? as f64,
        DataType::I64 => u64v()? as i64 as f64,
        DataType::F64 => f64::from_bits(u64v()?),
    })
}

/// Engineering value of a raw register value: `raw * scale + offset`.
///
/// Decimal scales such as 0.1 or 0.001 are not exact in binary, so
/// `538 * 0.1` gives 53.800000000000004. When the scale is the reciprocal of
/// a whole number we divide by that number instead, which yields the closest
/// double to the decimal value (53.8) — what an engineer reading the PLC
/// expects to see.
pub fn apply_scale(raw: f64, scale: f64, offset: f64) -> f64 {
    let inv = 1.0 / scale;
    let scaled = if scale.abs() < 1.0 && (inv - inv.round()).abs() < 1e-9 * inv.abs() {
        raw / inv.round()
    } else {
        raw * scale
    };
    scaled + offset
}

/// Encode a raw value of `ty` into registers. Out-of-range values saturate,
/// which is what a PLC's own conversion would do.
pub fn encode_words(ty: DataType, raw: f64) -> Vec<u16> {
    let split32 = |v: u32| vec![(v >> 16) as u16, v as u16];
    let split64 = |v: u64| {
        vec![
            (v >> 48) as u16,
            (v >> 32) as u16,
            (v >> 16) as u16,
            v as u16,
        ]
    };
    match ty {
        DataType::Bool => vec![u16::from(raw != 0.0)],
        DataType::U16 => vec![raw.round() as u16],
        DataType::I16 => vec![raw.round() as i16 as u16],
        DataType::U32 => split32(raw.round() as u32),
        DataType::I32 => split32(raw.round() as i32 as u32),
        DataType::F32 => split32((raw as f32).to_bits()),
        DataType::U64 => split64(raw.round() as u64),
        DataType::I64 => split64(raw.round() as i64 as u64),
        DataType::F64 => split64(raw.to_bits()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_type() {
        let cases = [
            (DataType::Bool, 1.0),
            (DataType::U16, 65535.0),
            (DataType::I16, -1234.0),
            (DataType::U32, 4_000_000_000.0),
            (DataType::I32, -2_000_000_000.0),
            (DataType::F32, 3.5),
            (DataType::U64, 9_007_199_254_740_992.0),
            (DataType::I64, -9_007_199_254_740_992.0),
            (DataType::F64, -0.123456789),
        ];
        for (ty, v) in cases {
            let words = encode_words(ty, v);
            assert_eq!(words.len(), usize::from(ty.width()), "{ty:?}");
            assert_eq!(decode_words(ty, &words), Some(v), "{ty:?}");
        }
    }

    #[test]
    fn abcd_order_is_big_endian() {
        assert_eq!(
            decode_words(DataType::U32, &[0x0001, 0x0002]),
            Some(65538.0)
        );
        assert_eq!(encode_words(DataType::F32, 1.0), vec![0x3F80, 0x0000]);
    }

    #[test]
    fn decimal_scales_give_decimal_values() {
        assert_eq!(apply_scale(538.0, 0.1, 0.0), 53.8);
        assert_eq!(apply_scale(608.0, 0.001, 0.0), 0.608);
        assert_eq!(apply_scale(3.0, 2.5, 1.0), 8.5);
        assert_eq!(apply_scale(-7.0, 0.01, 0.0), -0.07);
    }

    #[test]
    fn short_input_is_none_not_a_panic() {
        assert_eq!(decode_words(DataType::F64, &[1, 2]), None);
        assert_eq!(decode_words(DataType::U16, &[]), None);
    }
}
