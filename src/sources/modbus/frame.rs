//! Modbus application frames for read requests: encoding requests and
//! parsing replies, for both MBAP (Modbus TCP) and RTU framing over TCP.
//!
//! Parsing never trusts the peer: every length is checked against the
//! request it answers, and anything that does not fit is reported as a
//! [`FrameError`] so the link can drop the connection instead of guessing
//! where the next frame starts.

use crate::twin::Reason;

/// Function codes this module reads with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReadFn {
    Coils = 1,
    DiscreteInputs = 2,
    HoldingRegisters = 3,
    InputRegisters = 4,
}

impl ReadFn {
    pub fn is_bits(self) -> bool {
        matches!(self, ReadFn::Coils | ReadFn::DiscreteInputs)
    }

    /// Protocol limit on the quantity of one read.
    pub fn max_count(self) -> u16 {
        if self.is_bits() { 2000 } else { 125 }
    }

    /// Bytes of data in a full reply for `count` items.
    pub fn data_len(self, count: u16) -> usize {
        if self.is_bits() {
            usize::from(count).div_ceil(8)
        } else {
            usize::from(count) * 2
        }
    }
}

/// One read request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    pub unit: u8,
    pub function: ReadFn,
    pub start: u16,
    pub count: u16,
}

/// The data of a successful read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadData {
    Bits(Vec<bool>),
    Words(Vec<u16>),
}

/// A Modbus exception code (the device refused the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Exception(pub u8);

impl Exception {
    /// The quality reason for the tags of the refused read.
    pub fn reason(self) -> Reason {
        match self.0 {
            0x01 => Reason::IllegalFunction,
            0x02 => Reason::IllegalDataAddress,
            0x03 => Reason::IllegalDataValue,
            0x04 => Reason::ServerDeviceFailure,
            0x05 => Reason::Acknowledge,
            0x06 => Reason::ServerDeviceBusy,
            0x07 => Reason::NegativeAcknowledge,
            0x08 => Reason::MemoryParityError,
            0x0A => Reason::GatewayPathUnavailable,
            0x0B => Reason::GatewayTargetDeviceFailedToRespond,
            _ => Reason::UnknownException,
        }
    }
}

/// A reply that cannot be trusted; the connection must be dropped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("protocol id {0} is not Modbus (0)")]
    ProtocolId(u16),
    #[error("MBAP length {0} outside 2..=254")]
    Length(u16),
    #[error("reply function code {got:#04x} does not answer request {want:#04x}")]
    Function { got: u8, want: u8 },
    #[error("reply carries {got} data bytes, the request needs {want}")]
    ByteCount { got: usize, want: usize },
    #[error("reply from unit {got}, request was for unit {want}")]
    Unit { got: u8, want: u8 },
    #[error("RTU CRC mismatch")]
    Crc,
}

/// MBAP header size (transaction id, protocol id, length, unit id).
pub const MBAP_LEN: usize = 7;
/// Largest Modbus TCP ADU.
pub const MAX_ADU: usize = 260;

/// Encode a read request as a Modbus TCP ADU.
pub fn encode_tcp(tid: u16, r: &ReadRequest) -> [u8; 12] {
    let [t0, t1] = tid.to_be_bytes();
    let [s0, s1] = r.start.to_be_bytes();
    let [c0, c1] = r.count.to_be_bytes();
    [t0, t1, 0, 0, 0, 6, r.unit, r.function as u8, s0, s1, c0, c1]
}

/// Encode a read request as an RTU frame (for RTU framing over TCP).
pub fn encode_rtu(r: &ReadRequest) -> [u8; 8] {
    let [s0, s1] = r.start.to_be_bytes();
    let [c0, c1] = r.count.to_be_bytes();
    let body = [r.unit, r.function as u8, s0, s1, c0, c1];
    let [k0, k1] = crc16(&body).to_le_bytes();
    [body[0], body[1], body[2], body[3], body[4], body[5], k0, k1]
}

/// Modbus CRC-16 (poly 0xA001, init 0xFFFF).
pub fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc
}

/// An MBAP header, parsed from the first 7 bytes of a TCP frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mbap {
    pub tid: u16,
    pub unit: u8,
    /// Bytes following the header (the PDU).
    pub pdu_len: usize,
}

pub fn parse_mbap(h: &[u8; MBAP_LEN]) -> Result<Mbap, FrameError> {
    let tid = u16::from_be_bytes([h[0], h[1]]);
    let proto = u16::from_be_bytes([h[2], h[3]]);
    let len = u16::from_be_bytes([h[4], h[5]]);
    if proto != 0 {
        return Err(FrameError::ProtocolId(proto));
    }
    if !(2..=254).contains(&len) {
        return Err(FrameError::Length(len));
    }
    Ok(Mbap {
        tid,
        unit: h[6],
        pdu_len: usize::from(len) - 1,
    })
}

/// Parse a reply PDU (function code onwards) against the request it answers.
pub fn parse_pdu(pdu: &[u8], r: &ReadRequest) -> Result<Result<ReadData, Exception>, FrameError> {
    let want_fn = r.function as u8;
    let Some(&f) = pdu.first() else {
        return Err(FrameError::ByteCount { got: 0, want: 1 });
    };
    if f == want_fn | 0x80 {
        return match pdu.get(1) {
            Some(&code) if pdu.len() == 2 => Ok(Err(Exception(code))),
            _ => Err(FrameError::ByteCount {
                got: pdu.len().saturating_sub(1),
                want: 1,
            }),
        };
    }
    if f != want_fn {
        return Err(FrameError::Function {
            got: f,
            want: want_fn,
        });
    }
    let want = r.function.data_len(r.count);
    let declared = pdu.get(1).map(|b| usize::from(*b));
    let data = pdu.get(2..).unwrap_or(&[]);
    if declared != Some(want) || data.len() != want {
        return Err(FrameError::ByteCount {
            got: declared.unwrap_or(0),
            want,
        });
    }
    Ok(Ok(if r.function.is_bits() {
        ReadData::Bits(
            (0..usize::from(r.count))
                .map(|i| data[i / 8] >> (i % 8) & 1 == 1)
                .collect(),
        )
    } else {
        ReadData::Words(
            data.chunks_exact(2)
                .map(|w| u16::from_be_bytes([w[0], w[1]]))
                .collect(),
        )
    }))
}

/// Length of the RTU reply frame for `r`, given its first two bytes (unit,
/// function) and, for normal replies, the byte-count byte. Returns the bytes
/// needed so far when the frame length cannot be known yet.
pub fn rtu_reply_len(head: &[u8]) -> Option<usize> {
    match head {
        [_, f, ..] if f & 0x80 != 0 => Some(5),
        [_, _, n, ..] => Some(5 + usize::from(*n)),
        _ => None,
    }
}

/// Parse a complete RTU reply frame.
pub fn parse_rtu(frame: &[u8], r: &ReadRequest) -> Result<Result<ReadData, Exception>, FrameError> {
    if frame.len() < 4 {
        return Err(FrameError::ByteCount {
            got: frame.len(),
            want: 4,
        });
    }
    let (body, crc) = frame.split_at(frame.len() - 2);
    if crc16(body) != u16::from_le_bytes([crc[0], crc[1]]) {
        return Err(FrameError::Crc);
    }
    if body[0] != r.unit {
        return Err(FrameError::Unit {
            got: body[0],
            want: r.unit,
        });
    }
    parse_pdu(&body[1..], r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(function: ReadFn, count: u16) -> ReadRequest {
        ReadRequest {
            unit: 7,
            function,
            start: 0x1234,
            count,
        }
    }

    #[test]
    fn tcp_request_layout() {
        let f = encode_tcp(0xBEEF, &req(ReadFn::HoldingRegisters, 3));
        assert_eq!(f, [0xBE, 0xEF, 0, 0, 0, 6, 7, 3, 0x12, 0x34, 0, 3]);
    }

    #[test]
    fn rtu_crc_matches_the_spec_example() {
        // Read 2 holding registers at 0 from unit 1: 01 03 00 00 00 02 C4 0B.
        let r = ReadRequest {
            unit: 1,
            function: ReadFn::HoldingRegisters,
            start: 0,
            count: 2,
        };
        assert_eq!(encode_rtu(&r), [1, 3, 0, 0, 0, 2, 0xC4, 0x0B]);
    }

    #[test]
    fn replies_parse_and_are_checked_against_the_request() {
        let r = req(ReadFn::HoldingRegisters, 2);
        assert_eq!(
            parse_pdu(&[3, 4, 0, 1, 0xFF, 0xFE], &r),
            Ok(Ok(ReadData::Words(vec![1, 0xFFFE])))
        );
        assert_eq!(parse_pdu(&[0x83, 2], &r), Ok(Err(Exception(2))));
        assert!(matches!(
            parse_pdu(&[3, 2, 0, 1], &r),
            Err(FrameError::ByteCount { .. })
        ));
        assert!(matches!(
            parse_pdu(&[4, 4, 0, 1, 0, 2], &r),
            Err(FrameError::Function { .. })
        ));
        assert!(parse_pdu(&[], &r).is_err());
        let c = req(ReadFn::Coils, 10);
        assert_eq!(
            parse_pdu(&[1, 2, 0b1000_0101, 0b10], &c),
            Ok(Ok(ReadData::Bits(vec![
                true, false, true, false, false, false, false, true, false, true
            ])))
        );
    }

    #[test]
    fn mbap_rejects_garbage() {
        assert_eq!(parse_mbap(&[0, 1, 0, 0, 0, 5, 7]).map(|m| m.pdu_len), Ok(4));
        assert_eq!(
            parse_mbap(&[0, 1, 0x12, 0x34, 0, 5, 7]),
            Err(FrameError::ProtocolId(0x1234))
        );
        assert_eq!(
            parse_mbap(&[0, 1, 0, 0, 0x10, 0, 7]),
            Err(FrameError::Length(0x1000))
        );
    }

    #[test]
    fn rtu_reply_round_trip_and_crc_check() {
        let r = ReadRequest {
            unit: 1,
            function: ReadFn::InputRegisters,
            start: 0,
            count: 1,
        };
        let body = [1u8, 4, 2, 0x01, 0x02];
        let [a, b] = crc16(&body).to_le_bytes();
        let mut frame = body.to_vec();
        frame.extend([a, b]);
        assert_eq!(rtu_reply_len(&frame), Some(frame.len()));
        assert_eq!(parse_rtu(&frame, &r), Ok(Ok(ReadData::Words(vec![0x0102]))));
        frame[3] ^= 0xFF;
        assert_eq!(parse_rtu(&frame, &r), Err(FrameError::Crc));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        fn function() -> impl Strategy<Value = ReadFn> {
            prop_oneof![
                Just(ReadFn::Coils),
                Just(ReadFn::DiscreteInputs),
                Just(ReadFn::HoldingRegisters),
                Just(ReadFn::InputRegisters)
            ]
        }

        proptest! {
            /// Whatever a peer sends, parsing returns a value or an error;
            /// it never panics and never yields more items than requested.
            #[test]
            fn replies_from_a_hostile_peer_never_panic(
                pdu in proptest::collection::vec(any::<u8>(), 0..300),
                f in function(),
                count in 1u16..=125,
            ) {
                let r = ReadRequest { unit: 1, function: f, start: 0, count };
                match parse_pdu(&pdu, &r) {
                    Ok(Ok(ReadData::Words(w))) => prop_assert_eq!(w.len(), usize::from(count)),
                    Ok(Ok(ReadData::Bits(b))) => prop_assert_eq!(b.len(), usize::from(count)),
                    Ok(Err(_)) | Err(_) => {}
                }
                let mut frame = vec![1u8];
                frame.extend(&pdu);
                let _ = parse_rtu(&frame, &r);
                let _ = rtu_reply_len(&frame);
            }

            #[test]
            fn well_formed_replies_round_trip(words in proptest::collection::vec(any::<u16>(), 1..=125)) {
                let r = ReadRequest { unit: 9, function: ReadFn::InputRegisters, start: 7, count: words.len() as u16 };
                let mut pdu = vec![4u8, (words.len() * 2) as u8];
                for w in &words {
                    pdu.extend(w.to_be_bytes());
                }
                prop_assert_eq!(parse_pdu(&pdu, &r), Ok(Ok(ReadData::Words(words))));
            }
        }
    }
}
