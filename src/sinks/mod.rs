//! Sinks: where the core's output goes. Data only flows in here.
//!
//! Every output implements [`Sink`] and the driver (`runtime::Driver`) fans
//! each tick out to all of them, so a new output (the recorder, the audit
//! log, the HTTP surface) plugs in by being added to the run's list, without
//! touching the driver.
//!
//! - [`events`]: the JSONL event stream (file or stdout), a public interface.
//! - [`table`]: the live terminal view of machines and tags.
//! - `crate::http::HttpSink`: the HTTP surface's snapshot of the core.
//! - [`mqtt`]: the upstream MQTT publisher (`[[sinks.mqtt]]`), the event
//!   lines per plant, line and machine topic, through a bounded queue.
//!
//! Writers to the plant (Modbus writer, MQTT publisher) join here with the
//! write-back issue, behind their own capability.

pub mod events;
pub mod mqtt;
pub mod recorder;
pub mod table;

use crate::guard::GuardInput;
use crate::twin::{Sample, TwinCore, TwinEvent};

/// What one tick produced, as every sink sees it.
pub struct TickOutput<'a> {
    /// The tick's number and time (`TickClock`).
    pub tick: u64,
    pub t_ns: i64,
    /// The tick's events, in stream order.
    pub events: &'a [TwinEvent],
    /// The same events encoded as JSON lines (docs/events.md), encoded once
    /// for every sink that writes them.
    pub jsonl: &'a [u8],
    /// The core after the tick, for sinks that show more than the events
    /// (the live table's line summaries). Read-only.
    pub core: &'a TwinCore,
    /// Wall time the tick took on the tick thread (the core and the guard's
    /// I/O), for `/metrics`; zero for the closing events. It differs from
    /// run to run, so nothing may decide on it or write it into an event.
    pub tick_time: std::time::Duration,
}

/// An output of the run.
///
/// A sink is called on the tick loop, so it must never stall it: anything
/// that can block (a slow reader, a network peer, a disk) goes through a
/// bounded buffer behind the sink, with a documented policy for when it
/// fills. A sink that fails is dropped from the run's fan-out and its error
/// handed to the runner, which decides whether the run stops.
pub trait Sink: Send {
    /// The run starts: its clock, before any sample or tick. An error here
    /// keeps the sink out of the run (and the run decides whether to go on).
    fn start(&mut self, clock: &crate::twin::TickClock) -> Result<(), SinkError> {
        let _ = clock;
        Ok(())
    }

    /// Called once per tick, in tick order, with that tick's output (also
    /// for ticks without events).
    fn write_tick(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError>;

    /// The run's closing events (the ML stage's end-of-run `metering`),
    /// after the last tick and before [`Sink::finish`]; `out.tick` is the
    /// last tick's. A sink that keeps ticks (a recorder) ignores them: they
    /// are the same in a replay, which makes its own.
    fn write_end(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        let _ = out;
        Ok(())
    }

    /// The run is over: flush what is buffered. Called once, after the last
    /// tick.
    fn finish(&mut self) -> Result<(), SinkError>;

    /// Whether the sink wants every sample pushed into the core
    /// ([`Sink::write_samples`]); asked once, when it is added.
    fn wants_samples(&self) -> bool {
        false
    }

    /// Samples as the core received them (after the receive-time clamp), in
    /// push order, pushed while `tick` was the last tick that had run. Only
    /// called if [`Sink::wants_samples`] said so. Same rules as
    /// [`Sink::write_tick`]: never block.
    fn write_samples(&mut self, tick: u64, samples: &[Sample]) -> Result<(), SinkError> {
        let _ = (tick, samples);
        Ok(())
    }

    /// The guard's inputs from outside the core (operators' commands, write
    /// outcomes, link flags, the kill switch; `guard::inputs`), in the order
    /// they were taken in, while `tick` was the last tick that had run.
    /// Given to the sinks that want samples, before the tick that takes them.
    fn write_guard_inputs(&mut self, tick: u64, inputs: &[GuardInput]) -> Result<(), SinkError> {
        let _ = (tick, inputs);
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The output stopped, and the run goes on without it (a recording on a
    /// full disk: the twin keeps mirroring). The driver drops the sink and
    /// writes an `error` event saying so.
    #[error("the {sink} at {target} stopped: {detail}")]
    Stopped {
        sink: &'static str,
        target: String,
        detail: String,
    },
    /// The consumer went away (a closed pipe): nobody is left to write for.
    #[error("the reader of the {sink} at {target} went away")]
    Closed { sink: &'static str, target: String },
    #[error("cannot write the {sink} to {target}: {source}")]
    Io {
        sink: &'static str,
        target: String,
        #[source]
        source: std::io::Error,
    },
}

impl SinkError {
    fn from_io(sink: &'static str, target: &str, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::BrokenPipe {
            SinkError::Closed {
                sink,
                target: target.to_string(),
            }
        } else {
            SinkError::Io {
                sink,
                target: target.to_string(),
                source,
            }
        }
    }
}

impl Sink for events::EventStream {
    fn write_tick(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        self.write_batch_at(out.t_ns, out.jsonl)
            .map_err(|e| SinkError::from_io("event stream", self.target(), e))
    }

    fn write_end(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        self.write_tick(out)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        self.flush()
            .map_err(|e| SinkError::from_io("event stream", self.target(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{self, Write};

    /// A writer whose reader has gone away.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer on a full disk.
    struct Full;

    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from_raw_os_error(28))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn output_of<R>(jsonl: &[u8], f: impl FnOnce(&TickOutput<'_>) -> R) -> R {
        let cfg = crate::config::load_str(
            std::path::Path::new("sink-test.toml"),
            "[plant]\nname = \"p\"\n",
        )
        .expect("a minimal config is valid");
        let core = TwinCore::new(
            &cfg,
            crate::twin::TickClock::new(0, std::time::Duration::from_millis(100)),
        );
        f(&TickOutput {
            tick: 1,
            t_ns: 100,
            events: &[],
            jsonl,
            core: &core,
            tick_time: std::time::Duration::ZERO,
        })
    }

    /// The stream writes on its own thread, so a write error shows on a
    /// later call: at the latest on `finish`, which waits for the writer.
    fn write_then_finish(stream: &mut events::EventStream) -> Result<(), SinkError> {
        output_of(b"{}\n", |o| stream.write_tick(o))?;
        stream.finish()
    }

    #[test]
    fn the_event_stream_sink_tells_a_gone_reader_from_a_failed_write() {
        let mut gone = events::EventStream::from_writer(Box::new(ClosedPipe), "-");
        let e = write_then_finish(&mut gone);
        assert!(matches!(e, Err(SinkError::Closed { .. })), "{e:?}");
        let mut full = events::EventStream::from_writer(Box::new(Full), "ev.jsonl");
        let e = write_then_finish(&mut full);
        assert!(
            matches!(&e, Err(SinkError::Io { target, .. }) if target == "ev.jsonl"),
            "{e:?}"
        );
    }
}
