//! The driver's side of the guard: what carries its decisions out, outside
//! the core. The core hands over audit records and write intents
//! ([`GuardOutputs`]); [`carry_out`] appends the records to the audit log
//! and only then gives the intents to a [`SetpointWriter`], reporting each
//! outcome back into the core. That is docs/audit.md's ordering contract:
//! a `written` entry is durable before its write is sent, and a failed
//! append means no write.
//!
//! A replay never constructs a writer: it decides, and writes nothing.

use super::audit::{AuditError, AuditLog};
use super::state::{GuardOutputs, GuardState, WriteIntent, WriteOutcome};

/// Carries write intents to the plant (the Modbus, MQTT or Sparkplug
/// writer). Implemented by the sinks side; the core never sees one.
pub trait SetpointWriter {
    /// Sends `intent` once (never retried). Returns [`WriteOutcome::Sent`]
    /// when the device acknowledged it, `Refused` for a device's refusal
    /// (the Modbus exception named), `Failed` when the transport failed. A
    /// register read-back (`Readback::Target`) is reported later through
    /// [`GuardState::report_outcome`] as [`WriteOutcome::ReadBack`].
    fn write(&mut self, intent: &WriteIntent) -> WriteOutcome;
}

/// What one [`carry_out`] did.
#[derive(Debug, Default)]
pub struct Carried {
    /// Records appended.
    pub appended: usize,
    /// Intents handed to the writer.
    pub sent: usize,
    /// The append that failed; nothing of this batch was written then.
    pub audit_error: Option<AuditError>,
}

/// Takes the guard's outputs of the last tick and carries them out: every
/// record appended (durably, in order, in one group commit), then every intent written, each
/// outcome reported back into `state` (decided on the next tick). If an
/// append fails, no intent of the batch is written (each is reported
/// `NotSent`) and the guard is told the audit log failed, which blocks
/// every later write.
pub fn carry_out(
    state: &mut GuardState,
    log: &mut AuditLog,
    writer: Option<&mut dyn SetpointWriter>,
) -> Carried {
    let GuardOutputs { records, intents } = state.take_outputs();
    let mut done = Carried::default();
    // One group commit for the tick's records (`AuditLog::append_all`):
    // one device flush on the way to the writes, not one per record.
    match log.append_all(&records) {
        Ok(appended) => done.appended = appended.len(),
        Err(e) => {
            tracing::error!(error = %e, "The audit log refused an entry; no setpoint is written until it works again.");
            state.audit_failed(e.to_string());
            done.audit_error = Some(e);
        }
    }
    match (writer, &done.audit_error) {
        (Some(w), None) => {
            for i in &intents {
                let outcome = w.write(i);
                done.sent += 1;
                state.report_outcome(i.id, outcome);
            }
        }
        (_, Some(e)) => {
            for i in &intents {
                state.report_outcome(
                    i.id,
                    WriteOutcome::NotSent(format!("the audit log failed: {e}")),
                );
            }
        }
        (None, None) => {
            for i in &intents {
                state.report_outcome(i.id, WriteOutcome::NotSent("no writer in this run".into()));
            }
        }
    }
    done
}
