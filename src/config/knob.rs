//! Which physics knob a setpoint turns: the one mapping from a setpoint's
//! name to what it drives in a line's model.
//!
//! `twin whatif --set NAME=VALUE` and the setpoint optimiser
//! (`ml::optimise`) both ask it, and config validation asks it of every
//! tag an optimised setpoint model proposes, so a name means the same knob
//! everywhere. A conveyor's speed tag (or `conveyor:ID`) is that belt's
//! drive speed in m/s; a station's cycle-time tag (or `station:ID`) is its
//! cycle time in seconds. Other tags (a filler's speed in bottles per
//! minute, say) turn no knob the physics model has.

use super::line::{Line, StationCycle};

/// A setpoint resolved to what it drives in a line's model (indices in the
/// line's config order, which is the model's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Knob {
    /// A conveyor's drive speed, m/s.
    Belt(usize),
    /// A station's cycle time, s.
    Station(usize),
}

impl Knob {
    /// The unit of the knob's value.
    pub fn unit(self) -> &'static str {
        match self {
            Knob::Belt(_) => "m/s",
            Knob::Station(_) => "s",
        }
    }
}

/// The knob `name` turns on `line`: a conveyor's speed tag or
/// `conveyor:ID`, a station's cycle-time tag or `station:ID`.
pub fn knob_of(line: &Line, name: &str) -> Option<Knob> {
    let belt = line.conveyors.iter().position(|c| {
        c.speed_tag.value == name || name.strip_prefix("conveyor:") == Some(c.id.value.as_str())
    });
    if let Some(i) = belt {
        return Some(Knob::Belt(i));
    }
    line.stations
        .iter()
        .position(|s| {
            name.strip_prefix("station:") == Some(s.id.value.as_str())
                || matches!(&s.cycle, StationCycle::Tag(t) if t.value == name)
        })
        .map(Knob::Station)
}

/// The tag that turns `knob` on `line`: a belt's speed tag, a station's
/// cycle-time tag; `None` for a station with a fixed cycle time (only
/// `twin whatif` turns it, as `station:ID`) or an index not on the line.
pub fn tag_of(line: &Line, knob: Knob) -> Option<&str> {
    match knob {
        Knob::Belt(i) => Some(line.conveyors.get(i)?.speed_tag.value.as_str()),
        Knob::Station(i) => match &line.stations.get(i)?.cycle {
            StationCycle::Tag(t) => Some(t.value.as_str()),
            StationCycle::Fixed(_) => None,
        },
    }
}

/// The names of `line`'s knobs, as messages list them: each belt's speed
/// tag, and each station's cycle-time tag (`station:ID` for a station with
/// a fixed cycle time, which only `twin whatif` can turn).
pub fn knob_names(line: &Line) -> Vec<String> {
    let belts = (0..line.conveyors.len()).map(Knob::Belt);
    let stations = (0..line.stations.len()).map(Knob::Station);
    belts
        .chain(stations)
        .map(|k| match (tag_of(line, k), k) {
            (Some(tag), _) => tag.to_string(),
            (None, Knob::Station(i)) => format!("station:{}", line.stations[i].id.value),
            (None, Knob::Belt(i)) => format!("conveyor:{}", line.conveyors[i].id.value),
        })
        .collect()
}

/// The first line with geometry on which `tag` turns a knob, with its
/// index among `lines`.
pub fn find_knob<'l>(lines: &'l [Line], tag: &str) -> Option<(usize, &'l Line, Knob)> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| !l.conveyors.is_empty())
        .find_map(|(i, l)| knob_of(l, tag).map(|k| (i, l, k)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use std::path::Path;

    #[test]
    fn r11_belt_and_station_names_map_to_one_knob_each() {
        let cfg = load_str(
            Path::new("demo.toml"),
            include_str!("../../plant-configs/packaging-line.toml"),
        )
        .expect("the demo config is valid");
        let line = &cfg.config.lines[0];
        assert_eq!(knob_of(line, "infeed.speed"), Some(Knob::Belt(0)));
        assert_eq!(knob_of(line, "conveyor:outfeed"), Some(Knob::Belt(1)));
        assert_eq!(knob_of(line, "station:capper"), Some(Knob::Station(1)));
        // The filler's cycle comes from its setpoint tag: both names work.
        assert_eq!(knob_of(line, "filler.cycle_sp"), Some(Knob::Station(0)));
        assert_eq!(knob_of(line, "station:filler"), Some(Knob::Station(0)));
        // The filler's speed is in bottles per minute: no knob of the model.
        assert_eq!(knob_of(line, "filler.speed"), None);
        assert_eq!(
            find_knob(&cfg.config.lines, "outfeed.speed").map(|(i, _, k)| (i, k)),
            Some((0, Knob::Belt(1)))
        );
        assert_eq!(
            knob_names(line),
            [
                "infeed.speed",
                "outfeed.speed",
                "filler.cycle_sp",
                "station:capper",
                "station:labeller"
            ]
        );
    }
}
