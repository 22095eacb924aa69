//! The starter config `twin import` writes when it is given none: a plant
//! whose tags are the data's columns, declared as `[[sources.recorded]]`
//! (they come only from recordings), ready to check, replay and extend.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use crate::config::{RECORDED_MAX_STALE, RecordedType};
use crate::twin::record::SampleRecord;

/// A column name as a tag name: characters a tag may not hold (spaces,
/// units in brackets) become `_`, runs of them one `_`.
pub fn tag_name(column: &str) -> String {
    let mut out = String::with_capacity(column.len());
    for c in column.trim().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_matches('_').to_string();
    if out.is_empty() { "tag".into() } else { out }
}

/// Twice the longest gap between two samples of one tag, at least 5 s and
/// at most [`RECORDED_MAX_STALE`]: a tag goes stale when its data stops,
/// not between two rows of a slow export.
pub fn stale_after<'a>(samples: impl Iterator<Item = &'a SampleRecord>) -> Duration {
    let mut last: HashMap<&str, i64> = HashMap::new();
    let mut gap = 0i64;
    for s in samples {
        if let Some(prev) = last.insert(&*s.tag, s.recv_time_ns) {
            gap = gap.max(s.recv_time_ns.saturating_sub(prev));
        }
    }
    let twice = Duration::from_nanos(u64::try_from(gap.saturating_mul(2)).unwrap_or(0));
    // Whole seconds read better in a config and lose nothing here.
    let secs = twice.as_secs() + u64::from(twice.subsec_nanos() > 0);
    Duration::from_secs(secs).clamp(Duration::from_secs(5), RECORDED_MAX_STALE)
}

fn quote(s: &str) -> String {
    // TOML basic strings take JSON's escapes for everything we may meet.
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

pub fn config_text(
    plant: &str,
    input: &Path,
    tick: Duration,
    stale: Duration,
    tags: &[(&str, RecordedType)],
) -> String {
    let mut s = format!(
        "# Starter config written by `twin import` from {}.\n\
         # Its tags are the data's columns, declared as recorded: only recordings\n\
         # provide them (a live `twin run` leaves them no_data). Bind them to\n\
         # machines and lines as the plant grows (docs/config.md).\n\n\
         [plant]\nname = {}\ntick = \"{}\"\n\n\
         [[sources.recorded]]\nname = \"import\"\n\
         # Twice the longest gap between two rows of a tag.\n\
         stale_after = \"{}\"\n",
        input.display(),
        quote(plant),
        humantime::format_duration(tick),
        humantime::format_duration(stale),
    );
    for (tag, ty) in tags {
        s.push_str(&format!(
            "\n  [[sources.recorded.tags]]\n  tag = {}\n  type = \"{}\"\n",
            quote(tag),
            ty.name()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_become_tag_names() {
        assert_eq!(tag_name("Motor Current (A)"), "Motor_Current_A");
        assert_eq!(tag_name("infeed.speed"), "infeed.speed");
        assert_eq!(tag_name("  "), "tag");
    }
}
