//! Machine learning in the loop (issue 11): the core's inference stage reads
//! tags and physics outputs, turns them into feature rows
//! ([`features`]), runs ONNX models on them and raises alarms from their
//! risks and scores ([`alarm`]). Like the rest of the core it does no I/O and
//! reads no clock, so a replay gives the same predictions and alarms.

pub mod alarm;
pub mod features;
