//! Models: unique ids, and the machine and input tags they name exist.

use std::collections::BTreeMap;

use super::{Cx, Refs};
use crate::config::PlantConfig;
use crate::config::decode::Sink;

pub(super) fn check(sink: &mut Sink, cx: &Cx<'_>, cfg: &PlantConfig, refs: &Refs<'_>) {
    let mut model_ids = BTreeMap::new();
    for (i, model) in cfg.models.iter().enumerate() {
        cx.dup(
            sink,
            &mut model_ids,
            "model id",
            format!("models[{i}].id"),
            &model.id,
        );
        if let Some(m) = &model.machine {
            refs.machine(sink, format!("models[{i}].machine"), m);
        }
        for (j, tag) in model.inputs.iter().enumerate() {
            refs.tag(sink, format!("models[{i}].inputs[{j}]"), tag);
        }
    }
}
