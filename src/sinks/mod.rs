//! Sinks: where the core's output goes. Data only flows in here.
//!
//! - [`events`]: the JSONL event stream (file or stdout), a public interface.
//! - [`table`]: the live terminal view of machines and tags.
//!
//! Writers to the plant (Modbus writer, MQTT publisher) join here with the
//! write-back issue, behind their own capability.

pub mod events;
pub mod table;
