//! The checker as an output of a run: `twin replay --expect` adds an
//! [`ExpectSink`] to the driver's sinks, and the checker sees each tick's
//! events as the event stream does, without a file in between.

use std::sync::{Arc, Mutex};

use super::expect::{Checker, Report};
use crate::sinks::{Sink, SinkError, TickOutput};

/// Where the report appears once the run has finished the sink.
#[derive(Debug, Clone, Default)]
pub struct ReportSlot(Arc<Mutex<Option<Report>>>);

impl ReportSlot {
    /// The report, once the driver has finished the sink (`Driver::finish`).
    pub fn take(&self) -> Option<Report> {
        self.0.lock().ok().and_then(|mut r| r.take())
    }
}

/// A [`Sink`] that feeds every tick's encoded events to a [`Checker`].
pub struct ExpectSink {
    checker: Option<Checker>,
    slot: ReportSlot,
}

impl ExpectSink {
    pub fn new(checker: Checker) -> (ExpectSink, ReportSlot) {
        let slot = ReportSlot::default();
        let sink = ExpectSink {
            checker: Some(checker),
            slot: slot.clone(),
        };
        (sink, slot)
    }
}

impl Sink for ExpectSink {
    fn write_tick(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        if let Some(c) = &mut self.checker
            && let Err(e) = c.feed_lines(out.jsonl)
        {
            // The core's own encoding cannot be unreadable; if it ever is,
            // the events that did parse are still checked.
            tracing::warn!(line = e.line, error = %e.message, "The expectations checker could not read an event line.");
        }
        Ok(())
    }

    /// The run's closing events are lines of the event stream too (the ML
    /// stage's `metering` and `optimiser` with `scope: "run"`): left out,
    /// `twin replay --expect` failed assertions on them that `twin expect`
    /// on the same replay's stream passed.
    fn write_end(&mut self, out: &TickOutput<'_>) -> Result<(), SinkError> {
        self.write_tick(out)
    }

    fn finish(&mut self) -> Result<(), SinkError> {
        if let Some(c) = self.checker.take()
            && let Ok(mut slot) = self.slot.0.lock()
        {
            *slot = Some(c.finish());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::qa::Expectations;
    use crate::runtime::Driver;

    #[test]
    fn a_driver_run_is_checked_through_the_sink_without_a_file() {
        let cfg = crate::config::load_str(
            Path::new("packaging-line.toml"),
            crate::cli::demo::DEMO_CONFIG,
        )
        .unwrap_or_else(|r| panic!("{r}"));
        let e = Expectations::parse(
            Path::new("x.toml"),
            "[[event]]\ntype = \"tag\"\ntag = \"infeed.speed\"\nreason = \"no_data\"\nat_least = 1\nat_most = 1\n\
             [[event]]\ntype = \"jam\"\nhappens = false\n",
        )
        .unwrap_or_else(|r| panic!("{r}"));
        let (sink, slot) = ExpectSink::new(e.checker());
        let mut driver = Driver::new(&cfg, 1_800_000_000_000_000_000);
        driver.add_sink(Box::new(sink)).expect("the checker starts");
        for _ in 0..30 {
            driver.step();
        }
        assert!(slot.take().is_none(), "no report before the run ends");
        assert!(driver.finish().is_empty());
        let report = slot.take().expect("a report after finish");
        // The first tick reports every tag, none with data yet.
        assert!(report.events >= cfg.tags.len() as u64, "{report:?}");
        assert!(report.passed(), "{}", report.render());
    }
}
