//! `[[models]]`: ONNX models and the tags they read.

use super::decode::{Loc, Sink, Table};

/// An ONNX model and the tags it reads. Run by the ML stage (later issue).
#[derive(Debug, Clone)]
pub struct Model {
    pub id: Loc<String>,
    pub path: Loc<String>,
    pub machine: Option<Loc<String>>,
    pub inputs: Vec<Loc<String>>,
}

pub(super) fn decode_model(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Model> {
    let id = t.req_str(sink, "id");
    let path = t.req_str(sink, "path");
    let machine = t.opt_str(sink, "machine");
    let inputs = t.opt_str_array(sink, "inputs").unwrap_or_default();
    t.finish(sink);
    Some(Model {
        id: id?,
        path: path?,
        machine,
        inputs,
    })
}
