//! `[[machines]]`: the plant's machines and the roles their tags play.

use super::decode::{Loc, Sink, Table};

#[derive(Debug, Clone)]
pub struct Machine {
    pub id: Loc<String>,
    pub kind: Loc<&'static str>,
    pub name: Option<String>,
    /// Role name → tag name, in file order.
    pub tags: Vec<(Loc<String>, Loc<String>)>,
}

pub const MACHINE_KINDS: &[&str] = &[
    "conveyor",
    "filler",
    "capper",
    "labeller",
    "inspector",
    "case_packer",
    "palletizer",
    "wrapper",
    "robot",
    "mixer",
    "pump",
    "oven",
    "press",
    "generic",
];

pub(super) fn decode_machine(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Machine> {
    let t_span = t.span();
    let id = t.req_str(sink, "id");
    let kind = t.req_enum(sink, "kind", MACHINE_KINDS, &[]);
    let name = t.opt_str(sink, "name").map(|n| n.value);
    let tags = t
        .opt_table(sink, "tags")
        .map(|tt| tt.str_entries(sink))
        .unwrap_or_default();
    t.finish(sink);
    // A bad `kind` is reported above; keep the machine anyway so that lines
    // and models naming it are not reported as unknown as well.
    let kind = kind.unwrap_or_else(|| Loc::new("generic", t_span));
    Some(Machine {
        id: id?,
        kind,
        name,
        tags,
    })
}
