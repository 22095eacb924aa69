//! Modbus application frames: encoding read and write requests and parsing
//! their replies, for both MBAP (Modbus TCP) and RTU framing over TCP.
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

impl std::fmt::Display for Exception {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exception {:02X} ({})", self.0, self.reason().as_str())
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
    /// A write reply that does not echo what was written: the device may
    /// have written something else, so it is never taken for a success.
    #[error("write reply echoes {what} {got:#06x}, the request had {want:#06x}")]
    Echo {
        what: &'static str,
        got: u16,
        want: u16,
    },
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

/// What a write request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteData {
    /// FC5, write single coil.
    Coil(bool),
    /// FC6, write single register.
    Register(u16),
    /// FC15, write multiple coils (1..=1968).
    Coils(Vec<bool>),
    /// FC16, write multiple registers (1..=123).
    Registers(Vec<u16>),
}

/// One write request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteRequest {
    pub unit: u8,
    pub start: u16,
    pub data: WriteData,
}

/// Protocol limit on the coils of one FC15 request.
pub const MAX_WRITE_COILS: usize = 1968;
/// Protocol limit on the registers of one FC16 request.
pub const MAX_WRITE_REGISTERS: usize = 123;

impl WriteRequest {
    pub fn function(&self) -> u8 {
        match self.data {
            WriteData::Coil(_) => 5,
            WriteData::Register(_) => 6,
            WriteData::Coils(_) => 15,
            WriteData::Registers(_) => 16,
        }
    }

    /// Coils or registers written.
    pub fn count(&self) -> usize {
        match &self.data {
            WriteData::Coil(_) | WriteData::Register(_) => 1,
            WriteData::Coils(b) => b.len(),
            WriteData::Registers(w) => w.len(),
        }
    }

    /// Why this request cannot be framed, if it cannot: an empty or
    /// oversized multiple write, or one that runs past address 65535.
    pub fn check(&self) -> Result<(), String> {
        let (n, max) = match &self.data {
            WriteData::Coil(_) | WriteData::Register(_) => (1, 1),
            WriteData::Coils(b) => (b.len(), MAX_WRITE_COILS),
            WriteData::Registers(w) => (w.len(), MAX_WRITE_REGISTERS),
        };
        if n == 0 || n > max {
            return Err(format!(
                "function {} writes 1..={max} items, not {n}",
                self.function()
            ));
        }
        if usize::from(self.start) + n > 65536 {
            return Err(format!(
                "{n} items from address {} run past address 65535",
                self.start
            ));
        }
        Ok(())
    }

    /// The request PDU (function code onwards). Quantities beyond the
    /// protocol limits are the caller's to refuse first ([`Self::check`]);
    /// here they would only be truncated to what a byte count can say.
    pub fn pdu(&self) -> Vec<u8> {
        let mut p = Vec::with_capacity(6 + 2 * self.count());
        p.push(self.function());
        p.extend(self.start.to_be_bytes());
        match &self.data {
            WriteData::Coil(v) => p.extend(coil_word(*v).to_be_bytes()),
            WriteData::Register(w) => p.extend(w.to_be_bytes()),
            WriteData::Coils(bits) => {
                let bits = &bits[..bits.len().min(MAX_WRITE_COILS)];
                p.extend((bits.len() as u16).to_be_bytes());
                let bytes = bits.len().div_ceil(8);
                p.push(bytes as u8);
                let mut packed = vec![0u8; bytes];
                for (i, b) in bits.iter().enumerate() {
                    packed[i / 8] |= u8::from(*b) << (i % 8);
                }
                p.extend(packed);
            }
            WriteData::Registers(words) => {
                let words = &words[..words.len().min(MAX_WRITE_REGISTERS)];
                p.extend((words.len() as u16).to_be_bytes());
                p.push((words.len() * 2) as u8);
                for w in words {
                    p.extend(w.to_be_bytes());
                }
            }
        }
        p
    }
}

/// FC5's encoding of a coil state: 0xFF00 on, 0x0000 off.
fn coil_word(v: bool) -> u16 {
    if v { 0xFF00 } else { 0x0000 }
}

/// Encode a write request as a Modbus TCP ADU.
pub fn encode_write_tcp(tid: u16, r: &WriteRequest) -> Vec<u8> {
    let pdu = r.pdu();
    let mut f = Vec::with_capacity(MBAP_LEN + pdu.len());
    f.extend(tid.to_be_bytes());
    f.extend([0, 0]);
    f.extend((pdu.len() as u16 + 1).to_be_bytes());
    f.push(r.unit);
    f.extend(pdu);
    f
}

/// Encode a write request as an RTU frame (for RTU framing over TCP).
pub fn encode_write_rtu(r: &WriteRequest) -> Vec<u8> {
    let mut f = vec![r.unit];
    f.extend(r.pdu());
    let crc = crc16(&f).to_le_bytes();
    f.extend(crc);
    f
}

/// Parse a write reply PDU against the request it answers. Every write
/// reply echoes the address and either the value (FC5, FC6) or the quantity
/// (FC15, FC16); an echo that differs is a [`FrameError::Echo`].
pub fn parse_write_pdu(pdu: &[u8], r: &WriteRequest) -> Result<Result<(), Exception>, FrameError> {
    let want_fn = r.function();
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
    let [_, a0, a1, v0, v1] = pdu else {
        return Err(FrameError::ByteCount {
            got: pdu.len().saturating_sub(1),
            want: 4,
        });
    };
    let address = u16::from_be_bytes([*a0, *a1]);
    if address != r.start {
        return Err(FrameError::Echo {
            what: "address",
            got: address,
            want: r.start,
        });
    }
    let got = u16::from_be_bytes([*v0, *v1]);
    let (what, want) = match &r.data {
        WriteData::Coil(v) => ("value", coil_word(*v)),
        WriteData::Register(w) => ("value", *w),
        WriteData::Coils(_) | WriteData::Registers(_) => ("quantity", r.count() as u16),
    };
    if got != want {
        return Err(FrameError::Echo { what, got, want });
    }
    Ok(Ok(()))
}

/// Length of an RTU write reply frame, from its first two bytes: an
/// exception is 5 bytes, every normal write reply 8.
pub fn rtu_write_reply_len(head: &[u8]) -> Option<usize> {
    match head {
        [_, f, ..] if f & 0x80 != 0 => Some(5),
        [_, _, ..] => Some(8),
        _ => None,
    }
}

/// Parse a complete RTU write reply frame.
pub fn parse_write_rtu(
    frame: &[u8],
    r: &WriteRequest,
) -> Result<Result<(), Exception>, FrameError> {
    let body = rtu_body(frame, r.unit)?;
    parse_write_pdu(&body[1..], r)
}

/// Check an RTU frame's length, CRC and unit; returns it without the CRC.
fn rtu_body(frame: &[u8], unit: u8) -> Result<&[u8], FrameError> {
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
    if body[0] != unit {
        return Err(FrameError::Unit {
            got: body[0],
            want: unit,
        });
    }
    Ok(body)
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
    let body = rtu_body(frame, r.unit)?;
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

    fn write(data: WriteData) -> WriteRequest {
        WriteRequest {
            unit: 7,
            start: 0x0102,
            data,
        }
    }

    #[test]
    fn write_requests_match_the_spec_layouts() {
        // Spec examples (Modbus Application Protocol v1.1b3, 6.5, 6.6, 6.11, 6.12).
        let fc5 = WriteRequest {
            unit: 1,
            start: 0x00AC,
            data: WriteData::Coil(true),
        };
        assert_eq!(fc5.pdu(), [5, 0x00, 0xAC, 0xFF, 0x00]);
        // The RTU spec example for FC5: 11 05 00 AC FF 00 4E 8B.
        let rtu = WriteRequest {
            unit: 0x11,
            ..fc5.clone()
        };
        assert_eq!(
            encode_write_rtu(&rtu),
            [0x11, 5, 0, 0xAC, 0xFF, 0, 0x4E, 0x8B]
        );
        assert_eq!(
            write(WriteData::Coil(false)).pdu(),
            [5, 0x01, 0x02, 0x00, 0x00]
        );
        let fc6 = WriteRequest {
            unit: 1,
            start: 0x0001,
            data: WriteData::Register(0x0003),
        };
        assert_eq!(fc6.pdu(), [6, 0, 1, 0, 3]);
        let fc15 = WriteRequest {
            unit: 1,
            start: 0x0013,
            data: WriteData::Coils(
                [1, 0, 1, 1, 0, 0, 1, 1, 1, 0]
                    .iter()
                    .map(|b| *b == 1)
                    .collect(),
            ),
        };
        assert_eq!(fc15.pdu(), [15, 0, 0x13, 0, 0x0A, 2, 0xCD, 0x01]);
        let fc16 = WriteRequest {
            unit: 1,
            start: 0x0001,
            data: WriteData::Registers(vec![0x000A, 0x0102]),
        };
        assert_eq!(fc16.pdu(), [16, 0, 1, 0, 2, 4, 0, 0x0A, 1, 2]);
        assert_eq!(
            encode_write_tcp(0xBEEF, &fc16),
            [0xBE, 0xEF, 0, 0, 0, 11, 1, 16, 0, 1, 0, 2, 4, 0, 0x0A, 1, 2]
        );
        let rtu = encode_write_rtu(&fc16);
        assert_eq!(
            &rtu[..rtu.len() - 2],
            &[1, 16, 0, 1, 0, 2, 4, 0, 0x0A, 1, 2]
        );
        assert_eq!(
            crc16(&rtu[..rtu.len() - 2]).to_le_bytes(),
            [rtu[rtu.len() - 2], rtu[rtu.len() - 1]]
        );
    }

    #[test]
    fn write_requests_outside_the_protocol_limits_are_refused_by_check() {
        assert!(write(WriteData::Registers(vec![])).check().is_err());
        assert!(write(WriteData::Registers(vec![0; 124])).check().is_err());
        assert!(write(WriteData::Registers(vec![0; 123])).check().is_ok());
        assert!(write(WriteData::Coils(vec![true; 1969])).check().is_err());
        assert!(write(WriteData::Coils(vec![true; 1968])).check().is_ok());
        let past_end = WriteRequest {
            unit: 1,
            start: 65535,
            data: WriteData::Registers(vec![1, 2]),
        };
        assert!(past_end.check().is_err());
        assert!(write(WriteData::Register(1)).check().is_ok());
    }

    #[test]
    fn write_replies_must_echo_the_request() {
        // Good echoes: FC5/FC6 echo address and value, FC15/FC16 address
        // and quantity.
        let r = write(WriteData::Coil(true));
        assert_eq!(parse_write_pdu(&[5, 1, 2, 0xFF, 0], &r), Ok(Ok(())));
        let r = write(WriteData::Register(0xABCD));
        assert_eq!(parse_write_pdu(&[6, 1, 2, 0xAB, 0xCD], &r), Ok(Ok(())));
        let r = write(WriteData::Coils(vec![true; 10]));
        assert_eq!(parse_write_pdu(&[15, 1, 2, 0, 10], &r), Ok(Ok(())));
        let r = write(WriteData::Registers(vec![1, 2, 3]));
        assert_eq!(parse_write_pdu(&[16, 1, 2, 0, 3], &r), Ok(Ok(())));

        // Bad echoes are errors, never a success.
        let r = write(WriteData::Coil(true));
        assert_eq!(
            parse_write_pdu(&[5, 1, 2, 0, 0], &r),
            Err(FrameError::Echo {
                what: "value",
                got: 0,
                want: 0xFF00
            })
        );
        let r = write(WriteData::Register(0xABCD));
        assert_eq!(
            parse_write_pdu(&[6, 1, 3, 0xAB, 0xCD], &r),
            Err(FrameError::Echo {
                what: "address",
                got: 0x0103,
                want: 0x0102
            })
        );
        assert!(matches!(
            parse_write_pdu(&[6, 1, 2, 0xAB, 0xCE], &r),
            Err(FrameError::Echo { what: "value", .. })
        ));
        let r = write(WriteData::Registers(vec![1, 2, 3]));
        assert_eq!(
            parse_write_pdu(&[16, 1, 2, 0, 2], &r),
            Err(FrameError::Echo {
                what: "quantity",
                got: 2,
                want: 3
            })
        );
        let r = write(WriteData::Coils(vec![true; 10]));
        assert!(matches!(
            parse_write_pdu(&[15, 1, 2, 0, 9], &r),
            Err(FrameError::Echo {
                what: "quantity",
                ..
            })
        ));
        // Wrong function, short and long replies.
        assert!(matches!(
            parse_write_pdu(&[16, 1, 2, 0, 10], &r),
            Err(FrameError::Function { got: 16, want: 15 })
        ));
        assert!(matches!(
            parse_write_pdu(&[15, 1, 2, 0], &r),
            Err(FrameError::ByteCount { .. })
        ));
        assert!(matches!(
            parse_write_pdu(&[15, 1, 2, 0, 10, 0], &r),
            Err(FrameError::ByteCount { .. })
        ));
        assert!(parse_write_pdu(&[], &r).is_err());
    }

    #[test]
    fn write_exceptions_decode_to_the_named_exception() {
        for (fc, data) in [
            (5u8, WriteData::Coil(true)),
            (6, WriteData::Register(1)),
            (15, WriteData::Coils(vec![true])),
            (16, WriteData::Registers(vec![1])),
        ] {
            let r = write(data);
            for code in [1u8, 2, 3, 4, 6, 0x0B] {
                assert_eq!(
                    parse_write_pdu(&[fc | 0x80, code], &r),
                    Ok(Err(Exception(code)))
                );
            }
            // An exception with trailing bytes is garbage, not a refusal.
            assert!(parse_write_pdu(&[fc | 0x80, 2, 0], &r).is_err());
            // Another function's exception is not this one's.
            assert!(matches!(
                parse_write_pdu(&[0x83, 2], &r),
                Err(FrameError::Function { .. })
            ));
        }
        assert_eq!(Exception(2).reason(), Reason::IllegalDataAddress);
        assert_eq!(
            Exception(3).to_string(),
            "exception 03 (illegal_data_value)"
        );
    }

    #[test]
    fn rtu_write_replies_round_trip_and_check_crc_and_unit() {
        let r = WriteRequest {
            unit: 3,
            start: 10,
            data: WriteData::Registers(vec![1, 2]),
        };
        let frame_of = |body: &[u8]| {
            let mut f = body.to_vec();
            f.extend(crc16(body).to_le_bytes());
            f
        };
        let ok = frame_of(&[3, 16, 0, 10, 0, 2]);
        assert_eq!(rtu_write_reply_len(&ok), Some(8));
        assert_eq!(parse_write_rtu(&ok, &r), Ok(Ok(())));
        let exc = frame_of(&[3, 0x90, 4]);
        assert_eq!(rtu_write_reply_len(&exc), Some(5));
        assert_eq!(parse_write_rtu(&exc, &r), Ok(Err(Exception(4))));
        let mut bad = ok.clone();
        bad[5] ^= 1;
        assert_eq!(parse_write_rtu(&bad, &r), Err(FrameError::Crc));
        let other_unit = frame_of(&[4, 16, 0, 10, 0, 2]);
        assert!(matches!(
            parse_write_rtu(&other_unit, &r),
            Err(FrameError::Unit { got: 4, want: 3 })
        ));
        let bad_echo = frame_of(&[3, 16, 0, 10, 0, 3]);
        assert!(matches!(
            parse_write_rtu(&bad_echo, &r),
            Err(FrameError::Echo { .. })
        ));
        assert_eq!(rtu_write_reply_len(&[3]), None);
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

            /// Write replies from a hostile peer never panic, and only an
            /// exact echo is ever a success.
            #[test]
            fn write_replies_never_panic_and_only_echoes_succeed(
                pdu in proptest::collection::vec(any::<u8>(), 0..12),
                words in proptest::collection::vec(any::<u16>(), 1..=4),
                start in any::<u16>(),
            ) {
                let r = WriteRequest { unit: 1, start, data: WriteData::Registers(words.clone()) };
                if parse_write_pdu(&pdu, &r) == Ok(Ok(())) {
                    let mut echo = vec![16u8];
                    echo.extend(start.to_be_bytes());
                    echo.extend((words.len() as u16).to_be_bytes());
                    prop_assert_eq!(&pdu, &echo);
                }
                let mut frame = vec![1u8];
                frame.extend(&pdu);
                let _ = parse_write_rtu(&frame, &r);
                let _ = rtu_write_reply_len(&frame);
            }

            #[test]
            fn coil_packing_round_trips_through_the_read_parser(bits in proptest::collection::vec(any::<bool>(), 1..=64)) {
                // FC15 packs coils as FC1 replies do: LSB first, byte by byte.
                let w = WriteRequest { unit: 1, start: 0, data: WriteData::Coils(bits.clone()) };
                let pdu = w.pdu();
                let mut reply = vec![1u8];
                reply.extend(&pdu[5..]);
                let r = ReadRequest { unit: 1, function: ReadFn::Coils, start: 0, count: bits.len() as u16 };
                prop_assert_eq!(parse_pdu(&reply, &r), Ok(Ok(ReadData::Bits(bits))));
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
