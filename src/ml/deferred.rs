//! Work that runs off the tick thread and lands at a set later tick.
//!
//! Some of the core's work costs more than a tick: a physics lookahead
//! over a minute of the line, or a large model's `run()`. Running it on the
//! tick thread would overrun the tick; running it "whenever it finishes"
//! would make the result land on a tick that depends on the machine's load,
//! and a replay would not reproduce the run.
//!
//! So a job is handed to a worker thread at tick `t` with a due tick
//! `t + k` fixed when it is submitted. Its result is applied at exactly
//! that tick: if the worker has not finished by then, the tick waits for
//! it. The job reads nothing but what it was given, so its result, and the
//! tick it lands on, are a function of the inputs alone: live and replay
//! agree byte for byte, and only the wall time differs. This is the same
//! contract as a PLC's asynchronous function block with a fixed latency.
//!
//! One worker thread per [`Deferred`]: jobs finish in the order they were
//! submitted, so results come back in submission order with no sorting. A
//! job that panics is reported as [`JobFailed`] for its own ticket and the
//! worker goes on with the next one.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

type Job<R> = Box<dyn FnOnce() -> R + Send + 'static>;

/// A job that did not give a result: it panicked, or the worker is gone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a deferred job failed: {0}")]
pub struct JobFailed(pub String);

/// A worker thread with a queue of jobs, each due at a tick.
pub struct Deferred<R: Send + 'static> {
    name: &'static str,
    tx: Option<Sender<Job<R>>>,
    rx: Option<Mutex<Receiver<Result<R, JobFailed>>>>,
    thread: Option<JoinHandle<()>>,
    /// Due ticks of the jobs handed over and not yet taken, in submission
    /// order (never decreasing: see [`Deferred::submit`]).
    due: VecDeque<u64>,
}

impl<R: Send + 'static> Deferred<R> {
    /// A worker named `name` (the thread's name, for `top -H` and
    /// profilers). The thread starts with the first job.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            tx: None,
            rx: None,
            thread: None,
            due: VecDeque::new(),
        }
    }

    /// Hands `job` to the worker; its result is due at tick `due`. A due
    /// tick earlier than one already queued is moved up to it, so results
    /// are always taken in the order they were submitted.
    pub fn submit(&mut self, due: u64, job: impl FnOnce() -> R + Send + 'static) {
        let due = self.due.back().map_or(due, |&last| due.max(last));
        self.ensure_started();
        let sent = match &self.tx {
            Some(tx) => tx.send(Box::new(job)).is_ok(),
            None => false,
        };
        self.due.push_back(due);
        if !sent {
            // The worker is gone (it cannot be while `tx` lives, but a
            // result must still come for this ticket): `take_due` reports it.
            tracing::error!(worker = self.name, "The deferred worker is gone.");
        }
    }

    /// The results of every job due at or before `tick`, in submission
    /// order. Waits for any of them that is still running.
    pub fn take_due(&mut self, tick: u64) -> Vec<Result<R, JobFailed>> {
        let mut out = Vec::new();
        while self.due.front().is_some_and(|&d| d <= tick) {
            self.due.pop_front();
            out.push(self.recv());
        }
        out
    }

    /// Every result still pending, waiting for all of them (the end of a
    /// run: the last ticks' work is not dropped).
    pub fn drain(&mut self) -> Vec<Result<R, JobFailed>> {
        let n = self.due.len();
        self.due.clear();
        (0..n).map(|_| self.recv()).collect()
    }

    /// Jobs handed over and not yet taken.
    pub fn pending(&self) -> usize {
        self.due.len()
    }

    fn recv(&self) -> Result<R, JobFailed> {
        let Some(rx) = &self.rx else {
            return Err(JobFailed("the worker was never started".into()));
        };
        let rx = match rx.lock() {
            Ok(rx) => rx,
            Err(poisoned) => poisoned.into_inner(),
        };
        rx.recv()
            .unwrap_or_else(|_| Err(JobFailed("the worker thread ended".into())))
    }

    fn ensure_started(&mut self) {
        if self.tx.is_some() {
            return;
        }
        let (job_tx, job_rx) = channel::<Job<R>>();
        let (res_tx, res_rx) = channel::<Result<R, JobFailed>>();
        let spawned = std::thread::Builder::new()
            .name(self.name.to_string())
            .spawn(move || {
                for job in job_rx {
                    let r = catch_unwind(AssertUnwindSafe(job)).map_err(|p| {
                        let what = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic".to_string());
                        JobFailed(what)
                    });
                    if res_tx.send(r).is_err() {
                        break;
                    }
                }
            });
        match spawned {
            Ok(handle) => {
                self.thread = Some(handle);
                self.tx = Some(job_tx);
                self.rx = Some(Mutex::new(res_rx));
            }
            Err(e) => {
                // No thread to be had (resource limits): run nothing, and
                // every ticket reports why.
                tracing::error!(worker = self.name, error = %e, "Could not start a worker thread.");
                let (tx, rx) = channel();
                drop(tx);
                self.rx = Some(Mutex::new(rx));
            }
        }
    }
}

impl<R: Send + 'static> Drop for Deferred<R> {
    fn drop(&mut self) {
        // Closing the job channel ends the worker's loop once the jobs
        // already handed over are done.
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn a_result_lands_at_its_due_tick_and_not_before() {
        let mut d = Deferred::new("test-deferred");
        d.submit(3, || 7_u32);
        assert!(d.take_due(1).is_empty());
        assert!(d.take_due(2).is_empty());
        assert_eq!(d.take_due(3), vec![Ok(7)]);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn the_due_tick_waits_for_a_slow_job() {
        let mut d = Deferred::new("test-deferred");
        let release = Arc::new(AtomicBool::new(false));
        let r = release.clone();
        d.submit(1, move || {
            while !r.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            5_u32
        });
        let opener = {
            let r = release.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                r.store(true, Ordering::Release);
            })
        };
        // Blocks until the job is released: the result is never skipped.
        assert_eq!(d.take_due(1), vec![Ok(5)]);
        opener.join().expect("opener");
    }

    #[test]
    fn results_come_in_submission_order_and_an_earlier_due_is_moved_up() {
        let mut d = Deferred::new("test-deferred");
        d.submit(5, || 1_u32);
        d.submit(2, || 2_u32); // cannot overtake the first
        assert!(d.take_due(4).is_empty());
        assert_eq!(d.take_due(5), vec![Ok(1), Ok(2)]);
    }

    #[test]
    fn a_panicking_job_fails_alone() {
        let mut d = Deferred::new("test-deferred");
        d.submit(1, || -> u32 { panic!("bad input") });
        d.submit(1, || 9_u32);
        let r = d.take_due(1);
        assert_eq!(r.len(), 2);
        assert!(matches!(&r[0], Err(JobFailed(m)) if m.contains("bad input")));
        assert_eq!(r[1], Ok(9));
    }

    #[test]
    fn drain_returns_every_pending_result() {
        let mut d = Deferred::new("test-deferred");
        for i in 0..10_u32 {
            d.submit(100 + u64::from(i), move || i * 2);
        }
        let all: Vec<u32> = d.drain().into_iter().map(|r| r.expect("ok")).collect();
        assert_eq!(all, (0..10).map(|i| i * 2).collect::<Vec<_>>());
    }
}
