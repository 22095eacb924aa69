//! Register words ↔ typed values, in any of the four byte/word orders.
//!
//! The wire order is first undone into canonical big-endian (ABCD) words;
//! decoding then reads those. Encoding (used by the virtual plant and, later,
//! write-back) does the reverse, so `decode(encode(x)) == x` for every type
//! and order (property-tested).

use crate::config::{DataType, Register, WordOrder};

/// A raw (unscaled) value read from registers.
#[derive(Debug, Clone, PartialEq)]
pub enum Raw {
    Num(f64),
    Bool(bool),
    Text(String),
}

/// Put `words` (as on the wire) into canonical ABCD order, in place.
fn to_canonical(order: WordOrder, words: &mut [u16]) {
    if order.swaps_bytes() {
        for w in words.iter_mut() {
            *w = w.swap_bytes();
        }
    }
    if order.reverses_words() {
        words.reverse();
    }
}

/// The inverse of [`to_canonical`] (both steps are involutions and commute).
fn to_wire(order: WordOrder, words: &mut [u16]) {
    to_canonical(order, words);
}

/// Decode the raw value of numeric type `ty` from the first `ty.width()`
/// registers of `words`. `None` if there are too few words.
pub fn decode_words(ty: DataType, order: WordOrder, words: &[u16]) -> Option<f64> {
    let n = usize::from(ty.width());
    let mut w = [0u16; 4];
    w[..n].copy_from_slice(words.get(..n)?);
    // 16-bit values have no word order, only a byte order.
    to_canonical(order, &mut w[..n]);
    let u32v = || (u64::from(w[0]) << 16) | u64::from(w[1]);
    let u64v = || {
        (u64::from(w[0]) << 48)
            | (u64::from(w[1]) << 32)
            | (u64::from(w[2]) << 16)
            | u64::from(w[3])
    };
    Some(match ty {
        DataType::Bool => f64::from(u8::from(w[0] != 0)),
        DataType::U16 => f64::from(w[0]),
        DataType::I16 => f64::from(w[0] as i16),
        DataType::U32 => u32v() as f64,
        DataType::I32 => f64::from(u32v() as u32 as i32),
        DataType::F32 => f64::from(f32::from_bits(u32v() as u32)),
        DataType::U64 => u64v() as f64,
        DataType::I64 => u64v() as i64 as f64,
        DataType::F64 => f64::from_bits(u64v()),
        DataType::String => return None,
    })
}

/// Encode a raw value of numeric type `ty` into registers in wire order.
/// Out-of-range values saturate, as a PLC's own conversion would.
pub fn encode_words(ty: DataType, order: WordOrder, raw: f64) -> Vec<u16> {
    let split32 = |v: u32| vec![(v >> 16) as u16, v as u16];
    let split64 = |v: u64| {
        vec![
            (v >> 48) as u16,
            (v >> 32) as u16,
            (v >> 16) as u16,
            v as u16,
        ]
    };
    let mut w = match ty {
        DataType::Bool => vec![u16::from(raw != 0.0)],
        DataType::U16 => vec![raw.round() as u16],
        DataType::I16 => vec![raw.round() as i16 as u16],
        DataType::U32 => split32(raw.round() as u32),
        DataType::I32 => split32(raw.round() as i32 as u32),
        DataType::F32 => split32((raw as f32).to_bits()),
        DataType::U64 => split64(raw.round() as u64),
        DataType::I64 => split64(raw.round() as i64 as u64),
        DataType::F64 => split64(raw.to_bits()),
        DataType::String => Vec::new(),
    };
    to_wire(order, &mut w);
    w
}

/// Decode text: two characters per register, high byte first (or low byte
/// first when the order swaps bytes). Bytes are read as Latin-1, as PLC
/// string types are; NULs and trailing spaces (padding) are dropped. Word
/// order does not apply to text.
pub fn decode_string(order: WordOrder, words: &[u16]) -> String {
    let mut s: String = words
        .iter()
        .flat_map(|w| {
            let [hi, lo] = w.to_be_bytes();
            if order.swaps_bytes() {
                [lo, hi]
            } else {
                [hi, lo]
            }
        })
        .filter(|b| *b != 0)
        .map(char::from)
        .collect();
    s.truncate(s.trim_end().len());
    s
}

/// Encode text into `length` registers, NUL-padded; characters beyond the
/// registers' capacity are cut, and non-Latin-1 characters become `?`.
pub fn encode_string(order: WordOrder, s: &str, length: u16) -> Vec<u16> {
    let mut bytes: Vec<u8> = s
        .chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .take(usize::from(length) * 2)
        .collect();
    bytes.resize(usize::from(length) * 2, 0);
    bytes
        .chunks_exact(2)
        .map(|p| {
            if order.swaps_bytes() {
                u16::from_be_bytes([p[1], p[0]])
            } else {
                u16::from_be_bytes([p[0], p[1]])
            }
        })
        .collect()
}

/// Decode one register map entry from the words (or bits, as 0/1 words) that
/// start at its address.
pub fn decode_register(reg: &Register, words: &[u16]) -> Option<Raw> {
    match (reg.data_type, reg.bit) {
        (DataType::String, _) => Some(Raw::Text(decode_string(
            reg.order,
            words.get(..usize::from(reg.length))?,
        ))),
        (DataType::Bool, Some(bit)) => {
            let w = *words.first()?;
            // Bit numbers refer to the register's value, so undo a byte swap first.
            let w = if reg.order.swaps_bytes() {
                w.swap_bytes()
            } else {
                w
            };
            Some(Raw::Bool(w >> bit & 1 == 1))
        }
        (DataType::Bool, None) => Some(Raw::Bool(*words.first()? != 0)),
        (ty, _) => decode_words(ty, reg.order, words).map(Raw::Num),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERS: [WordOrder; 4] = [
        WordOrder::Abcd,
        WordOrder::Dcba,
        WordOrder::Badc,
        WordOrder::Cdab,
    ];

    #[test]
    fn round_trips_every_type_in_every_order() {
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
        for order in ORDERS {
            for (ty, v) in cases {
                let words = encode_words(ty, order, v);
                assert_eq!(words.len(), usize::from(ty.width()), "{ty:?}");
                assert_eq!(decode_words(ty, order, &words), Some(v), "{ty:?} {order:?}");
            }
        }
    }

    #[test]
    fn the_four_orders_of_one_f32() {
        // 123.456f32 = 0x42F6E979: A=42 B=F6 C=E9 D=79.
        let v = f64::from(123.456f32);
        assert_eq!(
            decode_words(DataType::F32, WordOrder::Abcd, &[0x42F6, 0xE979]),
            Some(v)
        );
        assert_eq!(
            decode_words(DataType::F32, WordOrder::Cdab, &[0xE979, 0x42F6]),
            Some(v)
        );
        assert_eq!(
            decode_words(DataType::F32, WordOrder::Badc, &[0xF642, 0x79E9]),
            Some(v)
        );
        assert_eq!(
            decode_words(DataType::F32, WordOrder::Dcba, &[0x79E9, 0xF642]),
            Some(v)
        );
        assert_eq!(
            decode_words(DataType::U16, WordOrder::Badc, &[0x3412]),
            Some(f64::from(0x1234u16))
        );
    }

    #[test]
    fn strings_and_bits() {
        let w = encode_string(WordOrder::Abcd, "LOT-42", 4);
        assert_eq!(w, vec![0x4C4F, 0x542D, 0x3432, 0x0000]);
        assert_eq!(decode_string(WordOrder::Abcd, &w), "LOT-42");
        let swapped = encode_string(WordOrder::Badc, "AB", 1);
        assert_eq!(swapped, vec![0x4241]);
        assert_eq!(decode_string(WordOrder::Badc, &swapped), "AB");
        assert_eq!(decode_string(WordOrder::Abcd, &[0x4142, 0x2020]), "AB");
        assert_eq!(encode_string(WordOrder::Abcd, "TOO LONG", 1), vec![0x544F]);
    }

    #[test]
    fn short_input_is_none_not_a_panic() {
        assert_eq!(decode_words(DataType::F64, WordOrder::Abcd, &[1, 2]), None);
        assert_eq!(decode_words(DataType::U16, WordOrder::Abcd, &[]), None);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn order() -> impl Strategy<Value = WordOrder> {
            prop_oneof![
                Just(WordOrder::Abcd),
                Just(WordOrder::Dcba),
                Just(WordOrder::Badc),
                Just(WordOrder::Cdab)
            ]
        }

        /// Every representable value of each type survives encode → decode
        /// in every order, bit for bit.
        fn value_of(ty: DataType) -> BoxedStrategy<f64> {
            match ty {
                DataType::Bool => prop_oneof![Just(0.0), Just(1.0)].boxed(),
                DataType::U16 => any::<u16>().prop_map(f64::from).boxed(),
                DataType::I16 => any::<i16>().prop_map(f64::from).boxed(),
                DataType::U32 => any::<u32>().prop_map(f64::from).boxed(),
                DataType::I32 => any::<i32>().prop_map(f64::from).boxed(),
                DataType::F32 => any::<f32>()
                    .prop_filter("NaN has no single bit pattern", |f| !f.is_nan())
                    .prop_map(f64::from)
                    .boxed(),
                // 64-bit integers: the exactly representable range of f64.
                DataType::U64 => (0u64..=(1 << 53)).prop_map(|v| v as f64).boxed(),
                DataType::I64 => (-(1i64 << 53)..=(1 << 53)).prop_map(|v| v as f64).boxed(),
                DataType::F64 => any::<f64>().prop_filter("not NaN", |f| !f.is_nan()).boxed(),
                DataType::String => Just(0.0).boxed(),
            }
        }

        fn numeric() -> impl Strategy<Value = DataType> {
            prop_oneof![
                Just(DataType::Bool),
                Just(DataType::U16),
                Just(DataType::I16),
                Just(DataType::U32),
                Just(DataType::I32),
                Just(DataType::F32),
                Just(DataType::U64),
                Just(DataType::I64),
                Just(DataType::F64)
            ]
        }

        proptest! {
            #[test]
            fn numbers_round_trip(
                (ty, v) in numeric().prop_flat_map(|ty| (Just(ty), value_of(ty))),
                order in order(),
            ) {
                let words = encode_words(ty, order, v);
                prop_assert_eq!(words.len(), usize::from(ty.width()));
                let back = decode_words(ty, order, &words);
                prop_assert_eq!(back.map(f64::to_bits), Some(v.to_bits()));
            }

            #[test]
            fn orders_are_distinct_views_of_the_same_bytes(v in any::<u32>(), order in order()) {
                // Decoding the ABCD encoding with another order equals the
                // byte/word permutation that order names.
                let abcd = encode_words(DataType::U32, WordOrder::Abcd, f64::from(v));
                let b = v.to_be_bytes();
                let expect = match order {
                    WordOrder::Abcd => [b[0], b[1], b[2], b[3]],
                    WordOrder::Dcba => [b[3], b[2], b[1], b[0]],
                    WordOrder::Badc => [b[1], b[0], b[3], b[2]],
                    WordOrder::Cdab => [b[2], b[3], b[0], b[1]],
                };
                prop_assert_eq!(
                    decode_words(DataType::U32, order, &abcd),
                    Some(f64::from(u32::from_be_bytes(expect)))
                );
            }

            #[test]
            fn strings_round_trip(s in "[ -~]{0,16}", extra in 0u16..4, order in order()) {
                // Printable ASCII; trailing spaces are padding by convention.
                let s = s.trim_end().to_string();
                let length = (s.len() as u16).div_ceil(2) + extra;
                let words = encode_string(order, &s, length);
                prop_assert_eq!(words.len(), usize::from(length));
                prop_assert_eq!(decode_string(order, &words), s);
            }

            #[test]
            fn decoding_arbitrary_words_never_panics(
                words in proptest::collection::vec(any::<u16>(), 0..6),
                ty in numeric(),
                order in order(),
            ) {
                let out = decode_words(ty, order, &words);
                prop_assert_eq!(out.is_some(), words.len() >= usize::from(ty.width()));
            }
        }
    }
}
