//! `twin.TagSample` in protobuf: the tag channels of format version 2.
//!
//! Version 1 wrote samples as JSON. Parsing that JSON was a third of a
//! replay's time and the messages four times their binary size, so tag
//! channels are now protobuf, with the schema's `FileDescriptorSet` as the
//! MCAP schema data: Foxglove plots them (`/tag/infeed.speed.num`) and any
//! protobuf library decodes them from the file alone. Events and ticks stay
//! JSON: events are the event stream's own lines, ticks are few.
//!
//! The sample's times are the MCAP message's own: `log_time` is the receive
//! time (after the clamp) and `publish_time` the source time, which is what
//! MCAP means by them. Only a time before 1970, which an unsigned MCAP time
//! cannot hold, is written in the message instead. Half of a sample message
//! was its two times.
//!
//! ```proto
//! syntax = "proto3";
//! package twin;
//! message TagSample {
//!   uint64 tick = 1;              // the tick that had run when it was pushed
//!   oneof value {
//!     double num = 2;             // NaN and infinities as themselves
//!     bool flag = 3;
//!     string text = 4;
//!   }
//!   Quality quality = 5;
//!   string reason = 6;            // a reason code (docs/events.md), or empty
//!   optional sfixed64 src_ns = 7;   // only when the message's publish_time cannot hold it
//!   optional sfixed64 recv_ns = 8;  // only when the message's log_time cannot hold it
//! }
//! enum Quality { GOOD = 0; UNCERTAIN = 1; BAD = 2; STALE = 3; }
//! ```

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, EnumValueDescriptorProto, FieldDescriptorProto,
    FileDescriptorProto, FileDescriptorSet, OneofDescriptorProto,
};

use crate::twin::record::{RecordValue, SampleRecord};
use crate::twin::{Quality, Reason};

#[derive(Clone, PartialEq, prost::Message)]
pub struct TagSample {
    #[prost(uint64, tag = "1")]
    pub tick: u64,
    #[prost(oneof = "SampleValue", tags = "2, 3, 4")]
    pub value: Option<SampleValue>,
    #[prost(int32, tag = "5")]
    pub quality: i32,
    #[prost(string, tag = "6")]
    pub reason: String,
    #[prost(sfixed64, optional, tag = "7")]
    pub src_ns: Option<i64>,
    #[prost(sfixed64, optional, tag = "8")]
    pub recv_ns: Option<i64>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum SampleValue {
    #[prost(double, tag = "2")]
    Num(f64),
    #[prost(bool, tag = "3")]
    Flag(bool),
    #[prost(string, tag = "4")]
    Text(String),
}

const QUALITIES: [Quality; 4] = [
    Quality::Good,
    Quality::Uncertain,
    Quality::Bad,
    Quality::Stale,
];

fn quality_number(q: Quality) -> i32 {
    match q {
        Quality::Good => 0,
        Quality::Uncertain => 1,
        Quality::Bad => 2,
        Quality::Stale => 3,
    }
}

/// A time as an MCAP message time (unsigned), where it fits.
pub fn message_time(t_ns: i64) -> Option<u64> {
    u64::try_from(t_ns).ok()
}

/// One sample, encoded, appended to `out`. Its times go in the message's
/// `log_time` (receive) and `publish_time` (source), as [`message_time`]
/// gives them; those that do not fit are written in the message.
pub fn encode(tick: u64, r: &SampleRecord, out: &mut Vec<u8>) {
    let value = r.value.as_ref().map(|v| match v {
        RecordValue::Num(n) => SampleValue::Num(*n),
        RecordValue::Bool(b) => SampleValue::Flag(*b),
        RecordValue::Text(t) => SampleValue::Text(t.clone()),
    });
    let m = TagSample {
        tick,
        value,
        quality: quality_number(r.quality),
        reason: r.reason.map(|x| x.as_str().to_string()).unwrap_or_default(),
        src_ns: message_time(r.source_time_ns)
            .is_none()
            .then_some(r.source_time_ns),
        recv_ns: message_time(r.recv_time_ns)
            .is_none()
            .then_some(r.recv_time_ns),
    };
    // A Vec grows as needed: encoding into it cannot fail.
    let _ = m.encode(out);
}

/// A sample message back into its tick and record (the tag is the
/// channel's, the times the message's unless it holds its own). The error
/// says what is wrong, for the caller to locate.
pub fn decode(
    data: &[u8],
    tag: std::sync::Arc<str>,
    log_time: u64,
    publish_time: u64,
) -> Result<(u64, SampleRecord), String> {
    let m = TagSample::decode(data).map_err(|e| e.to_string())?;
    let time = |own: Option<i64>, header: u64, what: &str| {
        own.or_else(|| i64::try_from(header).ok())
            .ok_or_else(|| format!("its {what} {header} is beyond the year 2262"))
    };
    let source_time_ns = time(m.src_ns, publish_time, "publish_time")?;
    let recv_time_ns = time(m.recv_ns, log_time, "log_time")?;
    let quality = usize::try_from(m.quality)
        .ok()
        .and_then(|i| QUALITIES.get(i).copied())
        .ok_or_else(|| format!("quality {} is not one of 0..=3", m.quality))?;
    let reason = if m.reason.is_empty() {
        None
    } else {
        Some(
            m.reason
                .parse::<Reason>()
                .map_err(|_| format!("reason {:?} is not a reason code", m.reason))?,
        )
    };
    let value = m.value.map(|v| match v {
        SampleValue::Num(n) => RecordValue::Num(n),
        SampleValue::Flag(b) => RecordValue::Bool(b),
        SampleValue::Text(t) => RecordValue::Text(t),
    });
    Ok((
        m.tick,
        SampleRecord {
            tag,
            value,
            quality,
            reason,
            source_time_ns,
            recv_time_ns,
        },
    ))
}

/// The schema's `FileDescriptorSet`, serialized: the MCAP schema data of a
/// tag channel (schema encoding `protobuf`, name `twin.TagSample`).
pub fn descriptor_set() -> Vec<u8> {
    fn field(name: &str, number: i32, ty: Type, json: &str) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.to_string()),
            number: Some(number),
            label: Some(Label::Optional as i32),
            r#type: Some(ty as i32),
            json_name: Some(json.to_string()),
            ..FieldDescriptorProto::default()
        }
    }
    let in_value = |mut f: FieldDescriptorProto| {
        f.oneof_index = Some(0);
        f
    };
    // A proto3 `optional` field is a synthetic one-field oneof.
    let proto3_optional = |mut f: FieldDescriptorProto, oneof: i32| {
        f.oneof_index = Some(oneof);
        f.proto3_optional = Some(true);
        f
    };
    let oneof = |name: &str| OneofDescriptorProto {
        name: Some(name.to_string()),
        options: None,
    };
    let mut quality = field("quality", 5, Type::Enum, "quality");
    quality.type_name = Some(".twin.Quality".to_string());
    let sample = DescriptorProto {
        name: Some("TagSample".to_string()),
        field: vec![
            field("tick", 1, Type::Uint64, "tick"),
            in_value(field("num", 2, Type::Double, "num")),
            in_value(field("flag", 3, Type::Bool, "flag")),
            in_value(field("text", 4, Type::String, "text")),
            quality,
            field("reason", 6, Type::String, "reason"),
            proto3_optional(field("src_ns", 7, Type::Sfixed64, "srcNs"), 1),
            proto3_optional(field("recv_ns", 8, Type::Sfixed64, "recvNs"), 2),
        ],
        oneof_decl: vec![oneof("value"), oneof("_src_ns"), oneof("_recv_ns")],
        ..DescriptorProto::default()
    };
    let quality_enum = EnumDescriptorProto {
        name: Some("Quality".to_string()),
        value: QUALITIES
            .iter()
            .map(|q| EnumValueDescriptorProto {
                name: Some(q.as_str().to_ascii_uppercase()),
                number: Some(quality_number(*q)),
                options: None,
            })
            .collect(),
        ..EnumDescriptorProto::default()
    };
    let file = FileDescriptorProto {
        name: Some("twin/tag_sample.proto".to_string()),
        package: Some("twin".to_string()),
        message_type: vec![sample],
        enum_type: vec![quality_enum],
        syntax: Some("proto3".to_string()),
        ..FileDescriptorProto::default()
    };
    FileDescriptorSet { file: vec![file] }.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(value: Option<RecordValue>, quality: Quality, reason: Option<Reason>) -> SampleRecord {
        SampleRecord {
            tag: "a.b".into(),
            value,
            quality,
            reason,
            source_time_ns: 1_764_000_000_123_456_789,
            recv_time_ns: -5,
        }
    }

    #[test]
    fn every_sample_survives_its_protobuf_message() {
        for (v, q, why) in [
            (None, Quality::Bad, Some(Reason::ALL[0])),
            (Some(RecordValue::Bool(true)), Quality::Good, None),
            (Some(RecordValue::Bool(false)), Quality::Uncertain, None),
            (Some(RecordValue::Num(0.0)), Quality::Good, None),
            (Some(RecordValue::Num(-1.5e300)), Quality::Stale, None),
            (Some(RecordValue::Num(f64::INFINITY)), Quality::Good, None),
            (Some(RecordValue::Text(String::new())), Quality::Good, None),
            (Some(RecordValue::Text("B-17".into())), Quality::Good, None),
        ] {
            let r = rec(v, q, why);
            let mut buf = Vec::new();
            encode(u64::MAX, &r, &mut buf);
            // The receive time (-5) does not fit a message time: it is in
            // the message; the source time is the message's publish time.
            let (tick, back) = decode(&buf, "a.b".into(), 77, 1_764_000_000_123_456_789).unwrap();
            assert_eq!((tick, &back), (u64::MAX, &r));
            let (_, other) = decode(&buf, "a.b".into(), 77, 12).unwrap();
            assert_eq!((other.source_time_ns, other.recv_time_ns), (12, -5));
        }
        let mut buf = Vec::new();
        encode(
            3,
            &rec(Some(RecordValue::Num(f64::NAN)), Quality::Good, None),
            &mut buf,
        );
        let (_, back) = decode(&buf, "a.b".into(), 0, 0).unwrap();
        assert!(matches!(back.value, Some(RecordValue::Num(n)) if n.is_nan()));
        // A good numeric sample with times after 1970 is a tick and a
        // number: the point of the binary format.
        buf.clear();
        let mut r = rec(Some(RecordValue::Num(1.25)), Quality::Good, None);
        r.recv_time_ns = r.source_time_ns + 1;
        encode(36_000, &r, &mut buf);
        assert!(buf.len() <= 13, "{} bytes", buf.len());
        let e = decode(&buf, "a.b".into(), u64::MAX, 0).unwrap_err();
        assert!(e.contains("log_time"), "{e}");
    }

    #[test]
    fn a_bad_message_is_an_error_not_a_panic() {
        let mut buf = Vec::new();
        encode(
            1,
            &rec(Some(RecordValue::Num(2.0)), Quality::Good, None),
            &mut buf,
        );
        for cut in 0..buf.len() {
            let _ = decode(&buf[..cut], "".into(), 0, 0);
        }
        // Quality 9 and an unknown reason are refused with what they are.
        let m = TagSample {
            quality: 9,
            ..TagSample::default()
        };
        let e = decode(&m.encode_to_vec(), "".into(), 0, 0).unwrap_err();
        assert!(e.contains("quality 9"), "{e}");
        let m = TagSample {
            reason: "gremlins".into(),
            ..TagSample::default()
        };
        let e = decode(&m.encode_to_vec(), "".into(), 0, 0).unwrap_err();
        assert!(e.contains("gremlins"), "{e}");
    }

    #[test]
    fn the_descriptor_set_describes_the_message() {
        let set = FileDescriptorSet::decode(descriptor_set().as_slice()).unwrap();
        let file = &set.file[0];
        assert_eq!(file.package.as_deref(), Some("twin"));
        let m = &file.message_type[0];
        assert_eq!(m.name.as_deref(), Some("TagSample"));
        let numbers: Vec<i32> = m.field.iter().filter_map(|f| f.number).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5, 6, 7, 8]);
        let names: Vec<&str> = file.enum_type[0]
            .value
            .iter()
            .filter_map(|v| v.name.as_deref())
            .collect();
        assert_eq!(names, ["GOOD", "UNCERTAIN", "BAD", "STALE"]);
    }
}
