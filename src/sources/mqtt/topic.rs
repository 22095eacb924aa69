//! Topic routing: from a received topic to the config entries (and tags) it
//! feeds.
//!
//! Concrete topics are looked up directly; patterns with `+`, `#` or a
//! `{machine}` capture are matched level by level. A `{machine}` capture
//! picks the tag of the machine it names, among the machines the entry
//! lists; a machine it does not list has no tag, so the message is dropped
//! and reported, never guessed into a tag.

use std::collections::BTreeMap;

use rumqttc::QoS;

use crate::config::{LoadedConfig, Payload, TopicLevel, TopicPattern};
use crate::config::{MqttSource, TagId};

/// Where one config entry's messages go.
#[derive(Debug, Clone)]
pub struct Route {
    /// The subscription filter (`{machine}` written as `+`).
    pub filter: String,
    pub pattern: TopicPattern,
    pub target: Target,
    pub payload: Payload,
    pub scale: f64,
    pub offset: f64,
}

impl Route {
    /// The sample one decoded reading of this route gives for `tag`,
    /// received at `recv` (before the source bounds its clock skew): the
    /// route's scale and offset applied to a number, and a JSON `null` a
    /// bad sample (`null_value`).
    pub fn sample(
        &self,
        tag: crate::config::TagId,
        r: super::payload::Reading,
        recv: i64,
    ) -> crate::twin::Sample {
        use crate::twin::{Reason, Sample, Value};
        let source_time = r.time_ns.unwrap_or(recv);
        match r.value {
            Some(Value::Num(n)) => Sample::good(
                tag,
                Value::Num(crate::sources::apply_scale(n, self.scale, self.offset)),
                source_time,
                recv,
            ),
            Some(v) => Sample::good(tag, v, source_time, recv),
            // The publisher has no valid reading.
            None => Sample {
                source_time_ns: source_time,
                ..Sample::bad(tag, Reason::NullValue, recv)
            },
        }
    }
}

#[derive(Debug, Clone)]
pub enum Target {
    One(TagId),
    /// Machine id → its tag.
    PerMachine(BTreeMap<String, TagId>),
}

/// What a received topic resolved to, for one matching entry.
#[derive(Debug)]
pub enum Routed<'r, 't> {
    Tag(&'r Route, TagId),
    /// The topic matches, but names a machine the entry does not list.
    UnlistedMachine(&'r Route, &'t str),
}

/// All routes of one source.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
    /// Concrete topic → routes, for the common case.
    exact: BTreeMap<String, Vec<usize>>,
    patterns: Vec<usize>,
}

impl Router {
    pub fn new(cfg: &LoadedConfig, src: &MqttSource) -> Self {
        let mut r = Router::default();
        for t in &src.topics {
            let ids: Vec<(TagId, Option<&str>)> = t
                .tag_names()
                .into_iter()
                .filter_map(|(name, m)| Some((cfg.tags.id(&name)?, m)))
                .collect();
            let target = if t.pattern.captures_machine() {
                Target::PerMachine(
                    ids.into_iter()
                        .filter_map(|(id, m)| Some((m?.to_string(), id)))
                        .collect(),
                )
            } else {
                match ids.first() {
                    Some((id, _)) => Target::One(*id),
                    None => continue,
                }
            };
            let i = r.routes.len();
            if t.pattern.is_exact() {
                r.exact.entry(t.topic.value.clone()).or_default().push(i);
            } else {
                r.patterns.push(i);
            }
            r.routes.push(Route {
                filter: t.pattern.filter(),
                pattern: t.pattern.clone(),
                target,
                payload: t.payload.clone(),
                scale: t.scale,
                offset: t.offset,
            });
        }
        r
    }

    /// Every entry `topic` feeds, in config order.
    pub fn route<'r, 't>(&'r self, topic: &'t str) -> Vec<Routed<'r, 't>> {
        let mut hits: Vec<usize> = self.exact.get(topic).cloned().unwrap_or_default();
        hits.extend(
            self.patterns
                .iter()
                .copied()
                .filter(|&i| matches(&self.routes[i].pattern, topic).is_some()),
        );
        hits.sort_unstable();
        hits.into_iter()
            .filter_map(|i| {
                let route = &self.routes[i];
                match &route.target {
                    Target::One(id) => Some(Routed::Tag(route, *id)),
                    Target::PerMachine(by) => {
                        let machine = matches(&route.pattern, topic)??;
                        Some(match by.get(machine) {
                            Some(id) => Routed::Tag(route, *id),
                            None => Routed::UnlistedMachine(route, machine),
                        })
                    }
                }
            })
            .collect()
    }
}

/// The subscriptions for a source's entries: one per distinct filter, at
/// the highest QoS any entry sharing it asks for.
pub fn subscriptions(src: &MqttSource) -> Vec<(String, QoS)> {
    let mut by: BTreeMap<String, u8> = BTreeMap::new();
    for t in &src.topics {
        let q = by.entry(t.pattern.filter()).or_insert(0);
        *q = (*q).max(t.qos);
    }
    by.into_iter()
        .map(|(f, q)| {
            let qos = if q == 0 {
                QoS::AtMostOnce
            } else {
                QoS::AtLeastOnce
            };
            (f, qos)
        })
        .collect()
}

/// Whether `topic` matches `pattern` (MQTT 3.1.1, 4.7), and the level its
/// `{machine}` capture took, if it has one.
pub fn matches<'t>(pattern: &TopicPattern, topic: &'t str) -> Option<Option<&'t str>> {
    // Topics starting with `$` (broker internals such as $SYS) are not
    // matched by a filter that starts with a wildcard (4.7.2).
    if topic.starts_with('$') && !matches!(pattern.levels.first(), Some(TopicLevel::Exact(_))) {
        return None;
    }
    let mut capture = None;
    let mut levels = topic.split('/');
    for want in &pattern.levels {
        match want {
            // `#` also matches the parent level: "a/#" matches "a".
            TopicLevel::Rest => return Some(capture),
            TopicLevel::Exact(s) => {
                if levels.next()? != s {
                    return None;
                }
            }
            TopicLevel::Any => {
                levels.next()?;
            }
            TopicLevel::Machine => {
                let l = levels.next()?;
                if l.is_empty() {
                    return None;
                }
                capture = Some(l);
            }
        }
    }
    levels.next().is_none().then_some(capture)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> TopicPattern {
        TopicPattern {
            levels: s
                .split('/')
                .map(|l| match l {
                    "+" => TopicLevel::Any,
                    "#" => TopicLevel::Rest,
                    "{machine}" => TopicLevel::Machine,
                    s => TopicLevel::Exact(s.to_string()),
                })
                .collect(),
        }
    }

    #[test]
    fn wildcards_follow_the_mqtt_rules() {
        assert_eq!(matches(&pat("a/b"), "a/b"), Some(None));
        assert_eq!(matches(&pat("a/b"), "a/b/c"), None);
        assert_eq!(matches(&pat("a/+/c"), "a/x/c"), Some(None));
        assert_eq!(matches(&pat("a/+/c"), "a/x/y/c"), None);
        assert_eq!(matches(&pat("a/+"), "a/"), Some(None));
        assert_eq!(matches(&pat("a/#"), "a"), Some(None));
        assert_eq!(matches(&pat("a/#"), "a/b/c"), Some(None));
        assert_eq!(matches(&pat("#"), "x/y"), Some(None));
        assert_eq!(matches(&pat("#"), "$SYS/load"), None);
        assert_eq!(matches(&pat("+/load"), "$SYS/load"), None);
        assert_eq!(matches(&pat("$SYS/#"), "$SYS/load"), Some(None));
    }

    #[test]
    fn the_machine_capture_names_the_level() {
        let p = pat("plant/{machine}/vibration");
        assert_eq!(matches(&p, "plant/filler/vibration"), Some(Some("filler")));
        assert_eq!(matches(&p, "plant//vibration"), None);
        assert_eq!(matches(&p, "plant/filler/temp"), None);
        assert_eq!(
            matches(&pat("{machine}/#"), "press/a/b"),
            Some(Some("press"))
        );
        assert_eq!(pat("plant/{machine}/+/#").filter(), "plant/+/+/#");
    }
}
