//! The guard's rules: their stable ids and the fixed order they are
//! evaluated in (docs/guard.md, "Rules"). An id is public: it is the `rule`
//! of `setpoint` events and of audit entries, so a rule is never renamed,
//! only added.

use std::fmt;

/// One rule of the guard, in evaluation order ([`RuleId::ORDER`]). The
/// first rule that does not pass decides; a later one is not evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    /// The setpoint's mode is `off`: the proposal is not considered (first,
    /// so that an `off` setpoint never has an event, whatever else holds).
    ModeOff,
    /// `[guard].kill_switch`, the CLI's kill, the kill tag true or not
    /// good, or an audit log that can no longer be appended to.
    KillSwitch,
    /// The setpoint is locked after a read-back mismatch, until an
    /// operator resets it.
    Locked,
    /// A write to this setpoint still awaits its read-back.
    ReadbackPending,
    /// The requested value is NaN or infinite.
    NonFinite,
    /// The proposal is older than `max_proposal_age`.
    ProposalAge,
    /// An input the proposal used is not `good` (stale, bad, uncertain, or
    /// without a value).
    InputQuality,
    /// An input the proposal used is older than `max_input_age`.
    InputAge,
    /// An interlock fails or cannot be evaluated.
    Interlock,
    /// Outside `min..=max` (`out_of_range = "reject"`; `clamp` clamps and
    /// goes on).
    Bounds,
    /// Further than `max_step` from the setpoint's current value.
    MaxStep,
    /// Faster than `max_rate` since the last write.
    MaxRate,
    /// Sooner than `min_interval` after the last write.
    MinInterval,
    /// A change smaller than `deadband` (or none): not written, `skipped`.
    Deadband,
    /// The device (link) the setpoint is written through is down.
    LinkDown,
    /// The physics lookahead forecasts lost product or a jam risk above
    /// the limit (closed loop, and approvals).
    Lookahead,
    /// Another setpoint of the same optimiser proposal was blocked: the
    /// forecast vetted them together (closed loop).
    Group,
    /// The device refused the write (a Modbus exception, say).
    DeviceRefused,
    /// The write could not be carried out or its result is unknown (a
    /// transport failure).
    WriteFailed,
    /// The write was never sent: its audit record could not be appended
    /// (or no writer took it).
    NotSent,
    /// Read-back: the value read back differs from the one written, or
    /// none came within `readback_timeout`.
    Readback,
}

impl RuleId {
    /// The decision rules, in the order they are evaluated on a proposal.
    /// The last four are about carrying a write out, not deciding one.
    pub const ORDER: [RuleId; 17] = [
        RuleId::ModeOff,
        RuleId::KillSwitch,
        RuleId::Locked,
        RuleId::ReadbackPending,
        RuleId::NonFinite,
        RuleId::ProposalAge,
        RuleId::InputQuality,
        RuleId::InputAge,
        RuleId::Interlock,
        RuleId::Bounds,
        RuleId::MaxStep,
        RuleId::MaxRate,
        RuleId::MinInterval,
        RuleId::Deadband,
        RuleId::LinkDown,
        RuleId::Lookahead,
        RuleId::Group,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::KillSwitch => "kill_switch",
            RuleId::ModeOff => "mode_off",
            RuleId::Locked => "locked",
            RuleId::ReadbackPending => "readback_pending",
            RuleId::NonFinite => "non_finite",
            RuleId::ProposalAge => "proposal_age",
            RuleId::InputQuality => "input_quality",
            RuleId::InputAge => "input_age",
            RuleId::Interlock => "interlock",
            RuleId::Bounds => "bounds",
            RuleId::MaxStep => "max_step",
            RuleId::MaxRate => "max_rate",
            RuleId::MinInterval => "min_interval",
            RuleId::Deadband => "deadband",
            RuleId::LinkDown => "link_down",
            RuleId::Lookahead => "lookahead",
            RuleId::Group => "group",
            RuleId::DeviceRefused => "device_refused",
            RuleId::WriteFailed => "write_failed",
            RuleId::NotSent => "not_sent",
            RuleId::Readback => "readback",
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
