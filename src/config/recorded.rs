//! `[[sources.recorded]]`: tags no live source provides, whose samples only
//! ever come from recordings (`twin import` of a historian export, a CSV
//! from a lab). Declaring them lets such data replay under a checked config:
//! lines, machines and models can refer to them like any other tag. A live
//! run connects to nothing for them, so they stay `no_data` there.

use std::time::Duration;

use super::decode::{Loc, MS, Sink, Table, check_tag_name};

/// Longest `stale_after` of a recorded tag: a week. Imported data is often
/// sparse (a lab value per shift, an hourly historian export), well beyond
/// the hour a live source is allowed.
pub const RECORDED_MAX_STALE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How a recorded tag's values are read from foreign data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordedType {
    Number,
    Bool,
    Text,
}

impl RecordedType {
    pub const NAMES: &'static [&'static str] = &["number", "bool", "text"];
    const ALIASES: &'static [(&'static str, &'static str)] = &[
        ("float", "number"),
        ("f64", "number"),
        ("int", "number"),
        ("boolean", "bool"),
        ("string", "text"),
        ("str", "text"),
    ];

    pub fn name(self) -> &'static str {
        match self {
            RecordedType::Number => "number",
            RecordedType::Bool => "bool",
            RecordedType::Text => "text",
        }
    }

    fn from_name(s: &str) -> RecordedType {
        match s {
            "bool" => RecordedType::Bool,
            "text" => RecordedType::Text,
            _ => RecordedType::Number,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RecordedSource {
    pub name: Loc<String>,
    pub stale_after: Option<Duration>,
    pub tags: Vec<RecordedTag>,
}

#[derive(Debug, Clone)]
pub struct RecordedTag {
    pub tag: Loc<String>,
    pub data_type: RecordedType,
    pub unit: Option<String>,
    pub stale_after: Option<Duration>,
}

pub(super) fn decode(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<RecordedSource> {
    let name = t.req_str(sink, "name");
    let stale_after = t
        .opt_duration(sink, "stale_after", MS, RECORDED_MAX_STALE)
        .map(|d| d.value);
    let mut tags = Vec::new();
    for mut e in t.opt_table_array(sink, "tags") {
        let tag = e.req_str(sink, "tag");
        if let Some(tag) = &tag {
            check_tag_name(sink, &e.key_path("tag"), tag);
        }
        let data_type = e
            .opt_enum_aliased(sink, "type", RecordedType::NAMES, RecordedType::ALIASES)
            .map_or(RecordedType::Number, |l| RecordedType::from_name(l.value));
        let unit = e.opt_str(sink, "unit").map(|u| u.value);
        let tag_stale = e
            .opt_duration(sink, "stale_after", MS, RECORDED_MAX_STALE)
            .map(|d| d.value);
        e.finish(sink);
        if let Some(tag) = tag {
            tags.push(RecordedTag {
                tag,
                data_type,
                unit,
                stale_after: tag_stale,
            });
        }
    }
    t.finish(sink);
    let Some(name) = name else {
        sink.broken_tags
            .extend(tags.into_iter().map(|t| t.tag.value));
        return None;
    };
    Some(RecordedSource {
        name,
        stale_after,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{RecordedType, TagSource, load_str};
    use std::path::Path;

    const BASE: &str = "[plant]\nname = \"lab\"\n\n[[sources.recorded]]\nname = \"lims\"\nstale_after = \"3d\"\n\
        [[sources.recorded.tags]]\ntag = \"oven.temp\"\nunit = \"degC\"\n\
        [[sources.recorded.tags]]\ntag = \"oven.batch\"\ntype = \"text\"\nstale_after = \"90m\"\n";

    #[test]
    fn recorded_tags_join_the_tag_table_with_their_type_and_long_staleness() {
        let cfg = load_str(Path::new("p.toml"), BASE).expect("valid");
        let temp = cfg.tags.id("oven.temp").expect("declared");
        let batch = cfg.tags.id("oven.batch").expect("declared");
        assert_eq!(
            cfg.tags.get(temp).source,
            TagSource::Recorded { source: 0, tag: 0 }
        );
        assert_eq!(cfg.value_type(temp), RecordedType::Number);
        assert_eq!(cfg.value_type(batch), RecordedType::Text);
        assert_eq!(cfg.tags.get(temp).stale_after.as_secs(), 3 * 24 * 3600);
        assert_eq!(cfg.tags.get(batch).stale_after.as_secs(), 90 * 60);
        assert_eq!(cfg.source_name(temp), "lims");
        assert_eq!(cfg.recorded_tags(), vec!["oven.temp", "oven.batch"]);
    }

    #[test]
    fn a_recorded_tag_is_read_only_for_a_setpoint_and_its_source_name_is_unique() {
        let text = format!(
            "{BASE}\n[[sources.mqtt]]\nname = \"lims\"\nbroker = \"embedded\"\n\
             [[sources.mqtt.topics]]\ntopic = \"t\"\ntag = \"x\"\n\n\
             [[setpoints]]\ntag = \"oven.temp\"\nmin = 0\nmax = 1\n"
        );
        let report = load_str(Path::new("p.toml"), &text).expect_err("invalid");
        let all = report.to_string();
        assert!(all.contains("recorded source \"lims\""), "{all}");
        assert!(all.contains("duplicate source name \"lims\""), "{all}");
        let too_stale = BASE.replace("\"3d\"", "\"8d\"");
        let report = load_str(Path::new("p.toml"), &too_stale).expect_err("over a week");
        assert!(
            report
                .to_string()
                .contains("sources.recorded[0].stale_after"),
            "{report}"
        );
    }
}
