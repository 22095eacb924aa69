//! Encoding setpoints into registers: the inverse of the poller's decoding.

use super::*;
use crate::config::WordOrder;

fn target(table: RegisterTable, data_type: DataType, scale: f64, offset: f64) -> ModbusTarget {
    ModbusTarget {
        device: 0,
        table,
        address: 40,
        data_type,
        bit: None,
        order: WordOrder::Abcd,
        scale,
        offset,
        own_register: true,
    }
}

fn holding(data_type: DataType) -> ModbusTarget {
    target(RegisterTable::Holding, data_type, 1.0, 0.0)
}

#[test]
fn function_codes_follow_the_register_width() {
    let coil = target(RegisterTable::Coil, DataType::Bool, 1.0, 0.0);
    assert_eq!(
        encode(&coil, 1.0).map(|e| e.data),
        Ok(WriteData::Coil(true))
    );
    assert_eq!(
        encode(&coil, 0.0).map(|e| e.data),
        Ok(WriteData::Coil(false))
    );
    assert_eq!(
        encode(&holding(DataType::U16), 7.0).map(|e| e.data),
        Ok(WriteData::Register(7))
    );
    assert_eq!(
        encode(&holding(DataType::I16), -2.0).map(|e| e.data),
        Ok(WriteData::Register(0xFFFE))
    );
    assert_eq!(
        encode(&holding(DataType::Bool), 1.0).map(|e| e.data),
        Ok(WriteData::Register(1))
    );
    // Multi-register types go in one FC16 so the PLC never sees half a value.
    assert_eq!(
        encode(&holding(DataType::U32), 65536.0 + 2.0).map(|e| e.data),
        Ok(WriteData::Registers(vec![1, 2]))
    );
    assert_eq!(
        encode(&holding(DataType::F32), 123.456).map(|e| e.raw),
        Ok(vec![0x42F6, 0xE979])
    );
    for ty in [DataType::U64, DataType::I64, DataType::F64] {
        match encode(&holding(ty), 1.0).map(|e| e.data) {
            Ok(WriteData::Registers(w)) => assert_eq!(w.len(), 4, "{ty:?}"),
            other => panic!("{ty:?}: {other:?}"),
        }
    }
}

#[test]
fn word_and_byte_order_are_applied() {
    let mut t = holding(DataType::F32);
    t.order = WordOrder::Cdab;
    assert_eq!(encode(&t, 123.456).map(|e| e.raw), Ok(vec![0xE979, 0x42F6]));
    t.order = WordOrder::Dcba;
    assert_eq!(encode(&t, 123.456).map(|e| e.raw), Ok(vec![0x79E9, 0xF642]));
    let mut t = holding(DataType::U16);
    t.order = WordOrder::Badc;
    assert_eq!(
        encode(&t, f64::from(0x1234u16)).map(|e| e.raw),
        Ok(vec![0x3412])
    );
}

#[test]
fn reverse_scaling_and_rounding_half_away_from_zero() {
    // Belt speed in m/s, stored as centi-m/s with an offset.
    let t = target(RegisterTable::Holding, DataType::I16, 0.01, -1.0);
    let e = encode(&t, 0.5).expect("fits");
    assert_eq!(e.raw, vec![150]);
    assert_eq!(e.value, 0.5);
    // 0.1 is 538 × 0.1: the exact inverse of the poller's scaling.
    let t = target(RegisterTable::Holding, DataType::U16, 0.1, 0.0);
    assert_eq!(encode(&t, 53.8).map(|e| e.raw), Ok(vec![538]));
    // Half a count rounds away from zero, both ways.
    let t = holding(DataType::I16);
    assert_eq!(encode(&t, 2.5).map(|e| e.raw), Ok(vec![3]));
    assert_eq!(encode(&t, -2.5).map(|e| e.raw), Ok(vec![(-3i16) as u16]));
    assert_eq!(
        encode(&t, 2.49).map(|e| (e.raw, e.value)),
        Ok((vec![2], 2.0))
    );
    let t = target(RegisterTable::Holding, DataType::U16, 2.0, 0.0);
    // 5 is 2.5 raw: written as 3, which reads as 6.
    assert_eq!(
        encode(&t, 5.0).map(|e| (e.raw, e.value)),
        Ok((vec![3], 6.0))
    );
}

#[test]
fn values_that_do_not_fit_are_refused_not_saturated() {
    let cases = [
        (DataType::U16, 65535.6),
        (DataType::U16, -0.6),
        (DataType::I16, 32767.5),
        (DataType::I16, -32768.6),
        (DataType::U32, 4_294_967_295.5),
        (DataType::I32, -2_147_483_648.5),
        (DataType::U64, 1.9e19),
        (DataType::I64, -9.3e18),
        (DataType::F32, 1e39),
    ];
    for (ty, v) in cases {
        assert!(
            matches!(encode(&holding(ty), v), Err(Unencodable::OutOfRange { .. })),
            "{ty:?} {v}"
        );
    }
    // The edges themselves fit.
    assert_eq!(
        encode(&holding(DataType::U16), 65535.4).map(|e| e.raw),
        Ok(vec![65535])
    );
    assert_eq!(
        encode(&holding(DataType::U16), -0.4).map(|e| e.raw),
        Ok(vec![0])
    );
    assert_eq!(
        encode(&holding(DataType::I16), -32768.0).map(|e| e.raw),
        Ok(vec![0x8000])
    );
    // Scaling can push a value out of range.
    let t = target(RegisterTable::Holding, DataType::U16, 0.001, 0.0);
    assert!(matches!(encode(&t, 70.0), Err(Unencodable::OutOfRange { raw, .. }) if raw == 70000.0));
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert!(matches!(
            encode(&holding(DataType::F64), v),
            Err(Unencodable::NotFinite { .. })
        ));
    }
}

#[test]
fn unsafe_or_impossible_targets_are_refused() {
    let mut bit = holding(DataType::Bool);
    bit.bit = Some(3);
    match encode(&bit, 1.0) {
        Err(Unencodable::Unsupported(why)) => assert!(why.contains("not atomic"), "{why}"),
        other => panic!("{other:?}"),
    }
    let coil = target(RegisterTable::Coil, DataType::Bool, 1.0, 0.0);
    assert!(matches!(
        encode(&coil, 0.5),
        Err(Unencodable::NotABool { .. })
    ));
    assert!(matches!(
        encode(&coil, 2.0),
        Err(Unencodable::NotABool { .. })
    ));
    assert!(matches!(
        encode(&target(RegisterTable::Coil, DataType::U16, 1.0, 0.0), 1.0),
        Err(Unencodable::Unsupported(_))
    ));
    assert!(matches!(
        encode(&target(RegisterTable::Input, DataType::U16, 1.0, 0.0), 1.0),
        Err(Unencodable::Unsupported(_))
    ));
    assert!(matches!(
        encode(&holding(DataType::String), 1.0),
        Err(Unencodable::Unsupported(_))
    ));
    assert!(matches!(
        encode(
            &target(RegisterTable::Holding, DataType::U16, 0.0, 0.0),
            1.0
        ),
        Err(Unencodable::Unsupported(_))
    ));
}

#[test]
fn read_back_decodes_what_was_written() {
    let mut t = target(RegisterTable::Holding, DataType::F32, 0.5, 10.0);
    t.order = WordOrder::Cdab;
    let e = encode(&t, 42.25).expect("fits");
    assert_eq!(decode(&t, &ReadData::Words(e.raw.clone())), Ok(e.value));
    let coil = target(RegisterTable::Coil, DataType::Bool, 1.0, 0.0);
    assert_eq!(decode(&coil, &ReadData::Bits(vec![true])), Ok(1.0));
    let mut bit = holding(DataType::Bool);
    bit.bit = Some(9);
    bit.order = WordOrder::Badc;
    assert_eq!(decode(&bit, &ReadData::Words(vec![0x0002])), Ok(1.0));
    assert!(decode(&holding(DataType::U32), &ReadData::Words(vec![1])).is_err());
}

#[tokio::test]
async fn refusals_before_sending_name_the_device_and_register() {
    // Nothing here may reach the device: writes never open a connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let link = Link::spawn(
        super::super::link::LinkConfig {
            name: "filler".into(),
            address,
            framing: super::super::link::Framing::Tcp,
            timeout: Duration::from_millis(200),
            max_in_flight: 1,
        },
        shutdown.clone(),
    );
    let mut w = ModbusWriter::new();
    w.add_device(0, "filler", 3, link);
    w.allow(0, RegisterTable::Holding, 40, 1);
    let t = holding(DataType::U16);
    match w.write(&t, 70000.0).await {
        WriteOutcome::NotSent { why } => {
            let msg = why.to_string();
            assert!(
                msg.contains("device \"filler\" (unit 3) holding register 40"),
                "{msg}"
            );
            assert!(msg.contains("outside the range of u16"), "{msg}");
        }
        other => panic!("{other:?}"),
    }
    let mut other = t.clone();
    other.address = 41;
    assert!(matches!(
        w.write(&other, 1.0).await,
        WriteOutcome::NotSent {
            why: NotSent::NotAllowed { .. }
        }
    ));
    // A u32 at 40 runs into 41, which is not allowed either.
    assert!(matches!(
        w.write(&holding(DataType::U32), 1.0).await,
        WriteOutcome::NotSent {
            why: NotSent::NotAllowed { .. }
        }
    ));
    // A link that never connected: not sent, immediately.
    assert!(matches!(
        w.write(&t, 1.0).await,
        WriteOutcome::NotSent {
            why: NotSent::Link {
                error: LinkError::NotConnected,
                ..
            }
        }
    ));
    shutdown.cancel();
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

    fn int_type() -> impl Strategy<Value = DataType> {
        prop_oneof![
            Just(DataType::U16),
            Just(DataType::I16),
            Just(DataType::U32),
            Just(DataType::I32),
        ]
    }

    fn scale() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(1.0),
            Just(0.1),
            Just(0.01),
            Just(0.001),
            Just(2.5),
            Just(-0.5),
            Just(10.0)
        ]
    }

    proptest! {
        /// Encoding then the poller's own decoding gives the value back
        /// within half a raw count, for every integer type, order and
        /// scale; and the `value` reported is exactly what decodes.
        #[test]
        fn integer_registers_round_trip_within_half_a_count(
            ty in int_type(),
            order in order(),
            scale in scale(),
            offset in prop_oneof![Just(0.0), Just(-40.0), Just(273.15)],
            frac in 0.0f64..1.0,
        ) {
            let (min, max, _) = int_range(ty).expect("an integer type");
            let raw = min + frac * (max - min);
            let value = raw * scale + offset;
            let mut t = target(RegisterTable::Holding, ty, scale, offset);
            t.order = order;
            let e = encode(&t, value);
            prop_assert!(e.is_ok(), "{:?}", e);
            let e = e.expect("checked");
            let back = codec::decode_words(ty, order, &e.raw).expect("width");
            let read = crate::sources::apply_scale(back, scale, offset);
            let half = 0.5 * scale.abs();
            prop_assert!((read - value).abs() <= half * (1.0 + 1e-9) + 1e-9 * value.abs(),
                "{ty:?} {order:?} wrote {value}, read {read}");
            prop_assert_eq!(read, e.value);
        }

        #[test]
        fn floats_round_trip(
            v in -1e30f64..1e30,
            order in order(),
            scale in scale(),
        ) {
            for ty in [DataType::F32, DataType::F64] {
                let mut t = target(RegisterTable::Holding, ty, scale, 0.0);
                t.order = order;
                let e = encode(&t, v).expect("in range");
                let back = codec::decode_words(ty, order, &e.raw).expect("width");
                let read = crate::sources::apply_scale(back, scale, 0.0);
                let tol = if ty == DataType::F32 { 1e-6 } else { 1e-12 } * v.abs().max(1e-30);
                prop_assert!((read - v).abs() <= tol, "{ty:?} wrote {v}, read {read}");
                prop_assert_eq!(read, e.value);
            }
        }

        /// Whatever the value, encoding refuses or yields words of the
        /// target's width; it never panics.
        #[test]
        fn any_value_encodes_or_is_refused(v in any::<f64>(), ty in int_type(), scale in scale()) {
            let t = target(RegisterTable::Holding, ty, scale, 0.0);
            if let Ok(e) = encode(&t, v) {
                prop_assert_eq!(e.raw.len(), usize::from(ty.width()));
            }
        }
    }
}
