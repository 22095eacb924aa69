//! The root of a plant file: `version`, `[plant]`, and the walk over every
//! section, each decoded next to its types (`modbus`, `mqtt`, `sparkplug`,
//! `machine`, `line`, `model` with `[ml]`, `setpoint` with `[guard]`,
//! `upstream` for `[[sinks.mqtt]]`).
//!
//! Decoding checks each value where it stands (types, ranges, enumerations,
//! unknown keys); [`super::validate`] then checks how values relate to each
//! other (duplicates, overlaps, references).

use std::time::Duration;

use toml::de::DeTable;

use super::decode::{HOUR, MS, Sink, Table};
use super::diagnostics::Diagnostic;
use super::line::{Line, decode_line};
use super::machine::{Machine, decode_machine};
use super::modbus::{ModbusDevice, decode_modbus};
use super::model::{MlSection, ModelDecl, decode_ml, decode_model};
use super::mqtt::{MqttSource, decode_mqtt};
use super::setpoint::{GuardDecl, Setpoint, decode_guard, decode_setpoint};

/// Current schema version. Files may omit `version`; it then means 1.
pub const SCHEMA_VERSION: i64 = 1;

#[derive(Debug, Clone)]
pub struct PlantConfig {
    pub version: i64,
    pub plant: Plant,
    pub modbus: Vec<ModbusDevice>,
    pub mqtt: Vec<MqttSource>,
    pub sparkplug: Vec<super::sparkplug::SparkplugSource>,
    /// Tags only recordings provide (`[[sources.recorded]]`).
    pub recorded: Vec<super::recorded::RecordedSource>,
    pub machines: Vec<Machine>,
    pub lines: Vec<Line>,
    /// `[ml]`; all defaults when absent.
    pub ml: MlSection,
    /// `[[models]]` as written; `LoadedConfig::ml` has them resolved.
    pub models: Vec<ModelDecl>,
    pub setpoints: Vec<Setpoint>,
    /// `[guard]`; all defaults when absent. `LoadedConfig::guard` has it
    /// resolved with the setpoints.
    pub guard: GuardDecl,
    /// `[[sinks.mqtt]]`: upstream MQTT publishers of the twin's outputs.
    pub upstream: Vec<super::upstream::UpstreamMqtt>,
    /// `[[sinks.sparkplug]]`: the twin as a Sparkplug B edge node.
    pub sparkplug_nodes: Vec<super::upstream::UpstreamSparkplug>,
}

#[derive(Debug, Clone)]
pub struct Plant {
    pub name: String,
    /// Period of the twin's fixed tick.
    pub tick: Duration,
    /// Default age after which a tag without fresh data turns stale.
    pub stale_after: Duration,
}

pub(super) fn decode_file(
    sink: &mut Sink,
    root: &DeTable<'_>,
    root_span: std::ops::Range<usize>,
) -> Option<PlantConfig> {
    let mut t = Table::new(root, root_span.clone(), "");
    // Any integer is taken here and judged below: "2 is out of range,
    // expected an integer in 1..=1" did not tell the user that the file is
    // written for another twin.
    let version = match t.opt_int(sink, "version", i64::MIN, i64::MAX) {
        Some(v) if (1..=SCHEMA_VERSION).contains(&v.value) => v.value,
        Some(v) => {
            let (message, help) = if v.value > SCHEMA_VERSION {
                (
                    format!("schema version {} is newer than this twin reads", v.value),
                    "the file was written for a newer twin: run that one, or rewrite the file for this twin's schema (plant-configs/reference.toml)",
                )
            } else {
                (
                    format!("there is no schema version {}", v.value),
                    "versions start at 1; leave `version` out for the current one",
                )
            };
            sink.push(
                Diagnostic::error(v.span, "version", message)
                    .expected(format!("version = {SCHEMA_VERSION}"))
                    .help(help),
            );
            SCHEMA_VERSION
        }
        None => SCHEMA_VERSION,
    };

    let plant = match t.opt_table(sink, "plant") {
        Some(p) => decode_plant(sink, p),
        None => {
            if t.key_span("plant").is_none() {
                sink.push(
                    Diagnostic::error(0..0, "plant", "missing required section `[plant]`")
                        .expected("a `[plant]` table with at least `name`")
                        .help("add `[plant]` with `name = \"...\"` and `tick = \"100ms\"`"),
                );
            }
            None
        }
    };

    let mut modbus = Vec::new();
    let mut mqtt = Vec::new();
    let mut sparkplug = Vec::new();
    let mut recorded = Vec::new();
    if let Some(mut sources) = t.opt_table(sink, "sources") {
        for dev in sources.opt_table_array(sink, "modbus") {
            modbus.extend(decode_modbus(sink, dev));
        }
        for src in sources.opt_table_array(sink, "mqtt") {
            mqtt.extend(decode_mqtt(sink, src));
        }
        for src in sources.opt_table_array(sink, "sparkplug") {
            sparkplug.extend(super::sparkplug::decode(sink, src));
        }
        for src in sources.opt_table_array(sink, "recorded") {
            recorded.extend(super::recorded::decode(sink, src));
        }
        sources.finish(sink);
    }

    let machines = t
        .opt_table_array(sink, "machines")
        .into_iter()
        .filter_map(|m| decode_machine(sink, m))
        .collect();
    let lines: Vec<Line> = t
        .opt_table_array(sink, "lines")
        .into_iter()
        .filter_map(|l| decode_line(sink, l))
        .collect();
    let ml = t
        .opt_table(sink, "ml")
        .map(|m| decode_ml(sink, m))
        .unwrap_or_default();
    let models = t
        .opt_table_array(sink, "models")
        .into_iter()
        .filter_map(|m| decode_model(sink, m))
        .collect();
    let setpoints = t
        .opt_table_array(sink, "setpoints")
        .into_iter()
        .filter_map(|s| decode_setpoint(sink, s))
        .collect();
    let guard = t
        .opt_table(sink, "guard")
        .map(|g| decode_guard(sink, g))
        .unwrap_or_default();
    let mut upstream = Vec::new();
    let mut nodes = Vec::new();
    if let Some(mut sinks) = t.opt_table(sink, "sinks") {
        for s in sinks.opt_table_array(sink, "mqtt") {
            upstream.extend(super::upstream::decode(sink, s));
        }
        for s in sinks.opt_table_array(sink, "sparkplug") {
            nodes.extend(super::upstream::decode_sparkplug(sink, s));
        }
        sinks.finish(sink);
    }
    t.finish(sink);
    let upstream = super::upstream::resolve(sink, upstream, plant.as_ref(), &lines);
    let sparkplug_nodes = super::upstream::resolve_sparkplug(sink, nodes, plant.as_ref(), &lines);

    Some(PlantConfig {
        version,
        plant: plant?,
        modbus,
        mqtt,
        sparkplug,
        recorded,
        machines,
        lines,
        ml,
        models,
        setpoints,
        guard,
        upstream,
        sparkplug_nodes,
    })
}

fn decode_plant(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Plant> {
    let name = t.req_str(sink, "name");
    let tick = t
        .opt_duration(sink, "tick", MS, Duration::from_secs(60))
        .map(|d| d.value)
        .unwrap_or(Duration::from_millis(100));
    let stale_after = t
        .opt_duration(sink, "stale_after", MS, HOUR)
        .map(|d| d.value)
        .unwrap_or(Duration::from_secs(5));
    t.finish(sink);
    Some(Plant {
        name: name?.value,
        tick,
        stale_after,
    })
}
