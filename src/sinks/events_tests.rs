use super::*;

/// A writer into shared memory that, while `held`, blocks like a pipe
/// nobody reads.
#[derive(Clone, Default)]
struct Pipe {
    data: Arc<Mutex<Vec<u8>>>,
    held: Arc<(Mutex<bool>, Condvar)>,
}

impl Pipe {
    fn hold(&self, held: bool) {
        *self.held.0.lock().expect("lock") = held;
        self.held.1.notify_all();
    }

    fn text(&self) -> String {
        String::from_utf8(self.data.lock().expect("lock").clone()).expect("utf-8")
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut held = self.held.0.lock().expect("lock");
        while *held {
            held = self.held.1.wait(held).expect("lock");
        }
        self.data.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Tick 0's time in these tests (2026-12-04T10:00:00Z); ticks are 100 ms.
const T0: i64 = 1_796_378_400_000_000_000;

fn t_ns(i: u64) -> i64 {
    T0 + i as i64 * 100_000_000
}

/// One tick's lines as the encoder writes them.
fn tick(i: u64, events: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let t = rfc3339(t_ns(i));
    for e in 0..events {
        out.extend_from_slice(
            format!(
                r#"{{"v":1,"type":"tag","t":"{t}","tag":"t{e}","machine":null,"value":{i}.0,"quality":"good"}}"#,
            )
            .as_bytes(),
        );
        out.push(b'\n');
    }
    out
}

fn parse_all(text: &str) -> Vec<serde_json::Value> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "ends mid-line: {text:?}"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn small(overflow: Overflow) -> EventOptions {
    EventOptions {
        overflow,
        buffer_bytes: 2_000,
    }
}

#[test]
fn r9_a_stalled_reader_never_blocks_write_batch_and_gets_a_gap_line() {
    let pipe = Pipe::default();
    pipe.hold(true);
    let mut s =
        EventStream::from_writer_with(Box::new(pipe.clone()), "pipe", small(Overflow::Drop));
    // Far more than the buffer while the reader takes nothing: each call
    // returns (a blocking sink would hang this test) and the excess is dropped.
    for i in 0..100 {
        s.write_batch_at(t_ns(i), &tick(i, 3))
            .expect("drop policy never fails");
    }
    let dropped = s.dropped();
    assert!(dropped.ticks > 50, "{dropped:?}");
    assert_eq!(dropped.events, dropped.ticks * 3);
    // The reader catches up; the gap line goes out before the next tick.
    pipe.hold(false);
    s.flush().expect("flush");
    s.write_batch_at(t_ns(100), &tick(100, 3))
        .expect("write after catch-up");
    s.flush().expect("flush");
    assert_eq!(s.dropped(), dropped);

    let ev = parse_all(&pipe.text());
    let gaps: Vec<_> = ev.iter().filter(|e| e["type"] == "gap").collect();
    assert_eq!(gaps.len(), 1, "one gap line for one run of drops");
    let gap = gaps[0];
    assert_eq!(gap["v"], 1);
    assert_eq!(gap["ticks"], dropped.ticks);
    assert_eq!(gap["events"], dropped.events);
    // Whole ticks: every tick seen is complete, and the gap sits where the
    // dropped ticks would have been, named by their first and last times.
    let tag_ticks: Vec<&str> = ev
        .iter()
        .filter(|e| e["type"] == "tag")
        .map(|e| e["t"].as_str().expect("t"))
        .collect();
    assert_eq!(tag_ticks.len() as u64 + dropped.events, 101 * 3);
    for t in &tag_ticks {
        assert_eq!(
            tag_ticks.iter().filter(|x| *x == t).count(),
            3,
            "tick {t} split"
        );
    }
    let at = ev.iter().position(|e| e["type"] == "gap").expect("gap");
    let before = ev[at - 1]["t"].as_str().expect("t");
    let after = ev[at + 1]["t"].as_str().expect("t");
    let (first, until) = (
        gap["t"].as_str().expect("t"),
        gap["until"].as_str().expect("until"),
    );
    assert!(
        before < first && first <= until && until < after,
        "{before} {first} {until} {after}"
    );
    assert_eq!(s.lines, ev.len() as u64);
}

#[test]
fn r9_overflow_fail_stops_with_an_error_instead_of_waiting() {
    let pipe = Pipe::default();
    pipe.hold(true);
    let mut s =
        EventStream::from_writer_with(Box::new(pipe.clone()), "pipe", small(Overflow::Fail));
    let err = (0..100)
        .find_map(|i| s.write_batch(&tick(i, 3)).err())
        .expect("a full buffer fails the stream");
    assert!(err.to_string().contains("fell behind"), "{err}");
    assert_eq!(s.dropped(), Dropped::default());
    pipe.hold(false);
}

#[test]
fn r9_flush_gives_up_on_a_reader_that_takes_nothing() {
    let pipe = Pipe::default();
    pipe.hold(true);
    let mut s = EventStream::from_writer(Box::new(pipe.clone()), "pipe");
    s.write_batch(&tick(0, 3)).expect("write");
    let err = s.flush().expect_err("a stalled reader cannot be flushed");
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    pipe.hold(false);
}

/// A disk that fills after `room` bytes: the write that crosses it is short,
/// the next one fails, as write(2) does on ENOSPC.
struct FullDisk {
    data: Arc<Mutex<Vec<u8>>>,
    room: usize,
}

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut d = self.data.lock().expect("lock");
        let n = buf.len().min(self.room.saturating_sub(d.len()));
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        d.extend_from_slice(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl RewindableWrite for FullDisk {
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.data.lock().expect("lock").truncate(len as usize);
        Ok(())
    }
}

#[test]
fn r9_a_full_disk_leaves_only_whole_lines() {
    let data = Arc::new(Mutex::new(Vec::new()));
    let disk = FullDisk {
        data: data.clone(),
        room: 1_000,
    };
    let mut s = EventStream::start(
        Opening::Ready(Output::Rewindable(Box::new(disk))),
        "disk",
        EventOptions::default(),
    );
    let mut failed = None;
    for i in 0..50 {
        // Wait for each tick so the failure lands inside a batch, mid-line.
        if let Err(e) = s.write_batch(&tick(i, 2)).and_then(|()| s.flush()) {
            failed = Some(e);
            break;
        }
    }
    let err = failed.expect("the disk fills");
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    let text = String::from_utf8(data.lock().expect("lock").clone()).expect("utf-8");
    assert!(text.len() > 100, "some ticks got out: {text:?}");
    let ev = parse_all(&text);
    assert_eq!(
        ev.len() % 2,
        0,
        "whole ticks too, as written batch by batch"
    );
    // Later writes report the failure instead of writing after the cut.
    let again = s.write_batch(&tick(99, 1)).expect_err("still failed");
    assert_eq!(again.kind(), io::ErrorKind::StorageFull);
}

#[test]
fn lines_arrive_in_order_and_flush_waits_for_them() {
    let pipe = Pipe::default();
    let mut s = EventStream::from_writer(Box::new(pipe.clone()), "pipe");
    for i in 0..20 {
        s.write_batch(&tick(i, 2)).expect("write");
    }
    s.flush().expect("flush");
    let ev = parse_all(&pipe.text());
    assert_eq!(ev.len(), 40);
    assert!(
        ev.windows(2)
            .all(|w| w[0]["t"].as_str() <= w[1]["t"].as_str())
    );
    assert_eq!(s.lines, 40);
    assert!(!ev.iter().any(|e| e["type"] == "gap"));
}

#[test]
fn a_gap_line_without_tick_times_is_still_valid_json() {
    let gap = Gap {
        ticks: 2,
        events: 5,
        first_t_ns: None,
        last_t_ns: Some(T0),
    };
    let v: serde_json::Value = serde_json::from_slice(&gap.line()).expect("json");
    assert_eq!(v["type"], "gap");
    assert_eq!(v["ticks"], 2);
    assert!(v.get("t").is_none());
}

/// A writer that counts its write calls.
#[derive(Clone, Default)]
struct Counting {
    data: Arc<Mutex<Vec<u8>>>,
    writes: Arc<Mutex<u64>>,
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        *self.writes.lock().expect("lock") += 1;
        self.data.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn r10_a_fast_replay_hands_over_many_ticks_at_once_and_loses_none() {
    // Under `Overflow::Wait` (replay) ticks that come faster than the
    // writer needs them are gathered: one wake-up and write per tick was a
    // third of a replay's time. Every line still arrives, in order, by the
    // flush; and a tick after a pause is handed over at once.
    let out = Counting::default();
    let opts = EventOptions {
        overflow: Overflow::Wait,
        ..EventOptions::default()
    };
    let mut s = EventStream::from_writer_with(Box::new(out.clone()), "test", opts);
    let mut want = Vec::new();
    for i in 0..10_000 {
        let b = tick(i, 2);
        s.write_batch_at(t_ns(i), &b).expect("accepted");
        want.extend_from_slice(&b);
    }
    s.flush().expect("flushed");
    assert_eq!(
        *out.data.lock().expect("lock"),
        want,
        "every line, in order"
    );
    let writes = *out.writes.lock().expect("lock");
    assert!(writes < 2_000, "10,000 ticks in {writes} writes");
    assert_eq!(s.lines, 20_000);
    // After a pause longer than the gathering age, a tick goes out at once.
    std::thread::sleep(COALESCE_AGE * 2);
    let last = tick(10_000, 1);
    s.write_batch_at(t_ns(10_000), &last).expect("accepted");
    let deadline = wallclock::monotonic() + Duration::from_secs(10);
    while out.data.lock().expect("lock").len() < want.len() + last.len() {
        assert!(
            wallclock::monotonic() < deadline,
            "the tick after a pause was held back"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}
