//! Setpoints: one per tag, on a tag the twin could write.

use std::collections::BTreeMap;

use super::{Cx, Refs};
use crate::config::decode::Sink;
use crate::config::diagnostics::Diagnostic;
use crate::config::{PlantConfig, TagSource};

pub(super) fn check(sink: &mut Sink, cx: &Cx<'_>, cfg: &PlantConfig, refs: &Refs<'_>) {
    let mut setpoint_tags = BTreeMap::new();
    for (i, sp) in cfg.setpoints.iter().enumerate() {
        let path = format!("setpoints[{i}].tag");
        cx.dup(
            sink,
            &mut setpoint_tags,
            "setpoint for tag",
            path.clone(),
            &sp.tag,
        );
        if let Some(on) = &sp.enabled
            && on.value
        {
            sink.push(
                Diagnostic::warning(
                    on.span.clone(),
                    format!("setpoints[{i}].enabled"),
                    "write-back is not available in this version; this setpoint is validated but never written",
                )
                .help("leave `enabled = false` until your twin version supports guarded write-back"),
            );
        }
        let Some(id) = refs.tags.id(&sp.tag.value) else {
            let _ = refs.unknown.report(sink, path, &sp.tag);
            continue;
        };
        // Say where the tag comes from: that is what makes it read-only.
        let read_only_from = match refs.tags.get(id).source {
            TagSource::Modbus { device, register } => {
                let d = &cfg.modbus[device];
                let r = &d.registers[register];
                (!r.table.is_writable()).then(|| {
                    format!(
                        "{} {} of device \"{}\"",
                        r.table.noun(),
                        r.address.value,
                        d.name.value
                    )
                })
            }
            TagSource::Mqtt { source, .. } => Some(format!(
                "MQTT source \"{}\", which the twin only subscribes to",
                cfg.mqtt[source].name.value
            )),
            TagSource::Sparkplug { source, .. } => Some(format!(
                "Sparkplug source \"{}\"; Sparkplug writes (DCMD/NCMD metrics) are not supported yet",
                cfg.sparkplug[source].name.value
            )),
            TagSource::Recorded { source, .. } => Some(format!(
                "recorded source \"{}\", which only recordings provide",
                cfg.recorded[source].name.value
            )),
        };
        if let Some(from) = read_only_from {
            sink.push(
                Diagnostic::error(
                    sp.tag.span.clone(),
                    path,
                    format!("tag \"{}\" is read-only: it comes from {from}", sp.tag.value),
                )
                .expected("a tag read from a Modbus holding register or coil")
                .help("map the holding register (or coil) the PLC takes this value from, if it has one"),
            );
        }
    }
}
