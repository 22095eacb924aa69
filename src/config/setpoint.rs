//! `[[setpoints]]`: tags the twin may write back, with their hard bounds.

use super::decode::{Loc, Sink, Table};
use super::diagnostics::Diagnostic;

/// A tag the twin may write back, with its hard bounds. Write-back itself
/// (guard, modes, audit) is a later issue; the bounds are checked now.
#[derive(Debug, Clone)]
pub struct Setpoint {
    pub tag: Loc<String>,
    pub min: Loc<f64>,
    pub max: Loc<f64>,
    pub max_step: Option<Loc<f64>>,
    pub enabled: Option<Loc<bool>>,
}

pub(super) fn decode_setpoint(sink: &mut Sink, mut t: Table<'_, '_>) -> Option<Setpoint> {
    let tag = t.req_str(sink, "tag");
    let min = t.req_f64(sink, "min");
    let max = t.req_f64(sink, "max");
    let max_step = t.opt_f64(sink, "max_step");
    let enabled = t.opt_bool(sink, "enabled");
    if let (Some(lo), Some(hi)) = (&min, &max)
        && lo.value >= hi.value
    {
        sink.push(
            Diagnostic::error(
                hi.span.clone(),
                t.key_path("max"),
                format!("max ({}) must be greater than min ({})", hi.value, lo.value),
            )
            .expected("min < max")
            .maybe_help((lo.value > hi.value).then(|| "the bounds look swapped".to_string())),
        );
    }
    if let Some(s) = &max_step
        && s.value <= 0.0
    {
        sink.push(
            Diagnostic::error(
                s.span.clone(),
                t.key_path("max_step"),
                "max_step must be positive",
            )
            .expected("a number > 0"),
        );
    }
    t.finish(sink);
    Some(Setpoint {
        tag: tag?,
        min: min?,
        max: max?,
        max_step,
        enabled,
    })
}
