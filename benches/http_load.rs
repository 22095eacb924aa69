//! The HTTP surface under load (issue 13: "200 WebSocket clients on
//! loopback for 60 s. The twin's tick p99 stays within its budget, RSS
//! stays bounded, and a stalled client is dropped"; we stream server-sent
//! events, docs/api.md).
//!
//! The twin is the bench-profile `twin` binary, `twin demo --http
//! 127.0.0.1:0 --no-table`, a process of its own, so that its RSS and CPU
//! are its own and not the clients'. This process holds the clients, on a
//! two-worker tokio runtime, and reads the twin from outside: `/proc/PID`
//! for RSS (`VmRSS`, `VmHWM`) and CPU (`utime + stime`), `/metrics` for the
//! tick-time histogram (`twin_tick_duration_seconds`, per phase by
//! difference; its percentiles interpolated in the bucket, as Prometheus'
//! `histogram_quantile` does) and the open and dropped event streams.
//!
//! Phases, one after the other on one twin:
//! - `start`: RSS as soon as `/healthz` answers;
//! - `idle`: no client;
//! - `viewer`: what one open page costs, one event stream and a
//!   `GET /api/v1/tags` a second;
//! - `load`: a stalled client (an event stream with a 4 KiB receive
//!   buffer, never read) and then `HTTP_LOAD_CLIENTS` (200) event streams,
//!   for `HTTP_LOAD_SECS` (60) once all are open.
//!
//! Event to client latency: each event line carries its tick's time `t`
//! (the run clock: the system's wall clock at the twin's start, advanced
//! by the monotonic clock; docs/events.md), and the tick starts on that
//! time when the pacer is on time. The latency is the system wall clock
//! when a client's read returns the line, minus `t`: the tick's work,
//! the sink, the fan-out, the socket and this process's scheduling. Both
//! ends read one machine's clock; `t` is in whole ms (so the figure is
//! late by 0.5 ms on average), and a clock step during the run would show
//! (none is expected on a bench machine).
//!
//! The stalled client: the twin closes it when its queue (4,096 lines) is
//! full or when its writes have made no progress for the write timeout
//! (30 s), whichever comes first; at the demo's ~70 lines/s the write
//! timeout does. The bench watches the open-stream gauge each second to
//! see when it goes, then reads the stalled socket to its end.
//!
//! Run: `cargo bench --bench http_load` (60 s, 200 clients; it builds the
//! release binary); `HTTP_LOAD_SECS=15` for a short run; `HTTP_LOAD_TLS=1`
//! serves and reads everything over HTTPS (a self-signed certificate made
//! with the openssl CLI). The summary is
//! printed and written to `target/criterion/http_load/summary.txt`. Without
//! `--bench` (`cargo test --benches`) it runs for 2 s with 5 clients, to
//! check that it works, and keeps no summary.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use twin::sources::mqtt::payload::parse_rfc3339;
use twin::wallclock;

/// What to run: full with `--bench`, a check without.
struct Opts {
    /// `--bench`: a measurement (its summary is kept), not a check.
    bench: bool,
    /// `HTTP_LOAD_TLS=1`: HTTPS.
    tls: bool,
    clients: usize,
    load_secs: u64,
    warm_secs: u64,
    phase_secs: u64,
}

impl Opts {
    fn from_env() -> Opts {
        let bench = std::env::args().any(|a| a == "--bench");
        let env = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let tls = env("HTTP_LOAD_TLS", 0) == 1;
        if bench {
            Opts {
                bench,
                tls,
                clients: usize::try_from(env("HTTP_LOAD_CLIENTS", 200)).unwrap_or(200),
                load_secs: env("HTTP_LOAD_SECS", 60),
                warm_secs: 5,
                phase_secs: 10,
            }
        } else {
            Opts {
                bench,
                tls,
                clients: 5,
                load_secs: 2,
                warm_secs: 1,
                phase_secs: 1,
            }
        }
    }
}

fn main() {
    let opts = Opts::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("clients")
        .enable_all()
        .build()
        .expect("runtime");
    let certs = tempfile::tempdir().expect("a folder for the certificate");
    let tls_files = opts.tls.then(|| self_signed(certs.path()));
    let _ = TLS.set(tls_files.as_ref().map(|(cert, _)| connector(cert)));
    let (mut child, addr) = start_twin(tls_files.as_ref());
    let lines = rt.block_on(run(&opts, addr, child.id()));
    // The demo runs until stopped.
    let _ = child.kill();
    let _ = child.wait();
    if !opts.bench {
        // A check's figures would overwrite the last measurement's.
        return;
    }

    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target"),
        std::path::PathBuf::from,
    );
    let dir = target.join("criterion/http_load");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("summary.txt"), lines.join("\n") + "\n"));
    if let Err(e) = written {
        eprintln!("could not write the summary: {e}");
    }
}

/// Start `twin demo` and wait for its HTTP address in the log; the log is
/// drained on a thread from then on (a full pipe would stall the twin).
fn start_twin(tls: Option<&(std::path::PathBuf, std::path::PathBuf)>) -> (Child, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_twin"));
    cmd.args(["demo", "--http", "127.0.0.1:0", "--no-table"]);
    if let Some((cert, key)) = tls {
        cmd.arg("--http-tls-cert")
            .arg(cert)
            .arg("--http-tls-key")
            .arg(key);
    }
    let mut child = cmd
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start twin demo");
    let stderr = child.stderr.take().expect("the twin's log");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if line.contains("HTTP server listening.")
                && let Some(url) = line.split_whitespace().find_map(|w| w.strip_prefix("url="))
                && let Some(tx) = tx.take()
            {
                let addr = url
                    .trim_start_matches("https://")
                    .trim_start_matches("http://");
                let _ = tx.send(addr.to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the twin logs its HTTP address");
    (child, url.parse().expect("a socket address"))
}

/// One phase's figures.
struct Phase {
    name: &'static str,
    secs: f64,
    cpu_pct: f64,
    rss_kib: u64,
    hwm_kib: u64,
    ticks: Ticks,
}

async fn run(opts: &Opts, addr: SocketAddr, pid: u32) -> Vec<String> {
    let clk_tck = clock_ticks_per_second();
    for _ in 0..100 {
        if get(addr, "/healthz").await.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (rss_start, _) = memory(pid);
    tokio::time::sleep(Duration::from_secs(opts.warm_secs)).await;

    let mut phases = Vec::new();
    let measure = |name, secs: u64| {
        let opts_secs = Duration::from_secs(secs);
        async move {
            let t0 = wallclock::monotonic();
            let cpu0 = cpu_ticks(pid);
            let h0 = metrics(addr).await.unwrap_or_default();
            tokio::time::sleep(opts_secs).await;
            let h1 = metrics(addr).await.unwrap_or_default();
            let cpu1 = cpu_ticks(pid);
            let secs = wallclock::since(t0).as_secs_f64();
            let (rss_kib, hwm_kib) = memory(pid);
            Phase {
                name,
                secs,
                cpu_pct: (cpu1 - cpu0) as f64 / clk_tck / secs * 100.0,
                rss_kib,
                hwm_kib,
                ticks: h1.ticks.since(&h0.ticks),
            }
        }
    };

    phases.push(measure("idle", opts.phase_secs).await);

    // One viewer: an event stream and the tags once a second.
    let stop = CancellationToken::new();
    let record = Arc::new(AtomicBool::new(false));
    let viewer = tokio::spawn(sse_client(addr, stop.clone(), record.clone()));
    let poller = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                let _ = get(addr, "/api/v1/tags").await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    record.store(true, Ordering::Relaxed);
    phases.push(measure("viewer", opts.phase_secs).await);
    stop.cancel();
    let mut viewer_latencies = viewer.await.map(|s| s.latencies_us).unwrap_or_default();
    let _ = poller.await;

    // The load: the stalled client first, then the streams.
    let stalled = stalled_client(addr).await;
    let stalled_at = wallclock::monotonic();
    let stop = CancellationToken::new();
    let record = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..opts.clients)
        .map(|_| tokio::spawn(sse_client(addr, stop.clone(), record.clone())))
        .collect();
    let want = opts.clients as u64 + 1;
    let mut open = 0;
    for _ in 0..200 {
        open = metrics(addr).await.map_or(0, |m| m.event_clients);
        if open >= want {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_open = open >= want;
    record.store(true, Ordering::Relaxed);
    // The open streams each second, to see the stalled one go.
    let watch = {
        let stop = stop.clone();
        let opened = opts.clients as u64;
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                // The streams close as the bench stops: not the twin's doing.
                if stop.is_cancelled() {
                    break;
                }
                let Some(m) = metrics(addr).await else {
                    continue;
                };
                if m.event_clients <= opened {
                    let gone_after = wallclock::since(stalled_at);
                    // Read it at once: the kernel gives up a closed
                    // connection's unsent bytes to a peer that reads none
                    // after a while, without telling the peer.
                    return (Some(gone_after), drain_until_closed(stalled).await);
                }
            }
            (None, drain_until_closed(stalled).await)
        })
    };
    let load = measure("load", opts.load_secs).await;
    let dropped_total = metrics(addr).await.map_or(0, |m| m.dropped_total);
    stop.cancel();
    let (gone_after, stalled_closed) = watch.await.unwrap_or((None, false));
    let mut latencies = Vec::new();
    let mut ended_early = 0;
    let mut lines_total = 0u64;
    for c in clients {
        if let Ok(r) = c.await {
            latencies.extend(r.latencies_us);
            ended_early += usize::from(r.ended_early);
            lines_total += r.lines;
        }
    }
    phases.push(load);

    let mut out = vec![format!(
        "http_load: twin demo (pid {pid}), {} event streams + 1 stalled, {} s under load, over {}",
        opts.clients,
        opts.load_secs,
        if opts.tls { "HTTPS" } else { "HTTP" }
    )];
    out.push(format!("start: RSS {:.1} MiB", rss_start as f64 / 1024.0));
    out.push(
        "phase    secs  CPU%   RSS MiB  HWM MiB  ticks  tick mean ms  p50 ms  p99 ms  max bucket"
            .into(),
    );
    for p in &phases {
        out.push(format!(
            "{:<7} {:>5.1} {:>5.1} {:>9.1} {:>8.1} {:>6} {:>13.3} {:>7.3} {:>7.3}  <= {}",
            p.name,
            p.secs,
            p.cpu_pct,
            p.rss_kib as f64 / 1024.0,
            p.hwm_kib as f64 / 1024.0,
            p.ticks.count,
            p.ticks.mean_ms(),
            p.ticks.quantile_ms(0.5),
            p.ticks.quantile_ms(0.99),
            p.ticks.max_bucket(),
        ));
    }
    for (name, l) in [
        ("viewer, one stream", &mut viewer_latencies),
        ("load, all streams", &mut latencies),
    ] {
        l.sort_unstable();
        let q = |f: f64| {
            l.get(((l.len() as f64 - 1.0) * f).round() as usize)
                .map_or(f64::NAN, |&us| us as f64 / 1000.0)
        };
        out.push(format!(
            "event -> client ({name}): n {}, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
            l.len(),
            q(0.5),
            q(0.99),
            q(0.999),
            q(1.0)
        ));
    }
    out.push(format!("event lines received under load: {lines_total}"));
    out.push(format!(
        "streams: all {want} open before measuring: {all_open}; ended early: {ended_early}"
    ));
    out.push(format!(
        "stalled client: {}; closed by the twin: {stalled_closed}; dropped by queue (twin_http_event_clients_dropped_total): {dropped_total}",
        match gone_after {
            Some(d) => format!("its stream gone {:.0} s after it connected", d.as_secs_f64()),
            None => "its stream still open at the end".into(),
        }
    ));
    for l in &out {
        println!("{l}");
    }
    out
}

/// What an event-stream client saw.
#[derive(Default)]
struct Seen {
    latencies_us: Vec<u32>,
    lines: u64,
    /// The stream ended before the bench stopped it.
    ended_early: bool,
}

/// An event stream read until `stop`, each line's latency recorded while
/// `record` is set. HTTP/1.0: the body runs to the close, unchunked.
async fn sse_client(addr: SocketAddr, stop: CancellationToken, record: Arc<AtomicBool>) -> Seen {
    let mut seen = Seen::default();
    let Ok(mut s) = dial(addr, None).await else {
        seen.ended_early = true;
        return seen;
    };
    if s.write_all(b"GET /api/v1/events HTTP/1.0\r\nHost: t\r\n\r\n")
        .await
        .is_err()
    {
        seen.ended_early = true;
        return seen;
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = tokio::select! {
            _ = stop.cancelled() => return seen,
            r = s.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    seen.ended_early = !stop.is_cancelled();
                    return seen;
                }
                Ok(n) => n,
            },
        };
        // One clock read per read: its lines arrived together.
        let now_ns = wallclock::system_now_ns();
        pending.extend_from_slice(&buf[..n]);
        let mut start = 0;
        while let Some(end) = memchr(b'\n', &pending[start..]) {
            let line = &pending[start..start + end];
            start += end + 1;
            let Some(json) = line.strip_prefix(b"data: ") else {
                continue;
            };
            seen.lines += 1;
            if record.load(Ordering::Relaxed)
                && let Some(t_ns) = tick_time(json)
            {
                let us = (now_ns - t_ns).max(0) / 1000;
                seen.latencies_us
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
        }
        pending.drain(..start);
    }
}

fn memchr(b: u8, s: &[u8]) -> Option<usize> {
    s.iter().position(|&c| c == b)
}

/// The `t` of an event line, in ns since the epoch.
fn tick_time(json: &[u8]) -> Option<i64> {
    const KEY: &[u8] = b"\"t\":\"";
    let at = json.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = json[at..].iter().position(|&c| c == b'"')?;
    parse_rfc3339(std::str::from_utf8(&json[at..at + len]).ok()?)
}

/// An event stream that is never read, with a small receive buffer so the
/// twin's writes stall soon.
async fn stalled_client(addr: SocketAddr) -> Box<dyn Io> {
    let mut s = dial(addr, Some(4096))
        .await
        .expect("connect the stalled client");
    s.write_all(b"GET /api/v1/events HTTP/1.0\r\nHost: t\r\n\r\n")
        .await
        .expect("send");
    s
}

/// Whether the twin closed the stalled client: its socket reads to its end
/// (the bytes it took before stalling) in a few seconds.
async fn drain_until_closed(mut s: Box<dyn Io>) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A GET over HTTP/1.0: the body if the answer is 200.
async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = dial(addr, None).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: t\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // To the close; over TLS the server may close without a close_notify,
    // which reads as an error after the whole answer.
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(n) = s.read(&mut buf).await
            && n > 0
        {
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .ok()?;
    let text = String::from_utf8(got).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    (head.split(' ').nth(1) == Some("200")).then(|| body.to_string())
}

/// What the bench reads from `/metrics`.
#[derive(Default)]
struct Scrape {
    ticks: Ticks,
    event_clients: u64,
    dropped_total: u64,
}

/// The tick-time histogram, cumulative per bucket as Prometheus has it.
#[derive(Default, Clone)]
struct Ticks {
    /// (upper edge in s, cumulative count), `+Inf` as infinity.
    buckets: Vec<(f64, u64)>,
    sum: f64,
    count: u64,
}

impl Ticks {
    fn since(&self, before: &Ticks) -> Ticks {
        Ticks {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, n)| {
                    let was = before.buckets.iter().find(|b| b.0 == le).map_or(0, |b| b.1);
                    (le, n.saturating_sub(was))
                })
                .collect(),
            sum: self.sum - before.sum,
            count: self.count.saturating_sub(before.count),
        }
    }

    fn mean_ms(&self) -> f64 {
        self.sum / self.count.max(1) as f64 * 1000.0
    }

    /// Linear in the bucket the rank falls in, as `histogram_quantile`.
    fn quantile_ms(&self, q: f64) -> f64 {
        let rank = q * self.count as f64;
        let mut lower = (0.0, 0u64);
        for &(le, n) in &self.buckets {
            if n as f64 >= rank && n > lower.1 {
                if le.is_infinite() {
                    return lower.0 * 1000.0;
                }
                let within = (rank - lower.1 as f64) / (n - lower.1) as f64;
                return (lower.0 + (le - lower.0) * within) * 1000.0;
            }
            lower = (le, n);
        }
        f64::NAN
    }

    /// The upper edge of the highest bucket with a tick in it.
    fn max_bucket(&self) -> String {
        let mut below = 0;
        for &(le, n) in &self.buckets {
            if n == self.count {
                return if le.is_infinite() {
                    "+Inf".into()
                } else {
                    format!("{} ms", le * 1000.0)
                };
            }
            below = n;
        }
        format!("? ({below} of {})", self.count)
    }
}

async fn metrics(addr: SocketAddr) -> Option<Scrape> {
    let text = get(addr, "/metrics").await?;
    let mut s = Scrape::default();
    for line in text.lines() {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let v: f64 = value.parse().unwrap_or(f64::NAN);
        if let Some(le) = name
            .strip_prefix("twin_tick_duration_seconds_bucket{le=\"")
            .and_then(|r| r.strip_suffix("\"}"))
        {
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::NAN)
            };
            s.ticks.buckets.push((le, v as u64));
        } else if name == "twin_tick_duration_seconds_sum" {
            s.ticks.sum = v;
        } else if name == "twin_tick_duration_seconds_count" {
            s.ticks.count = v as u64;
        } else if name == "twin_http_event_clients" {
            s.event_clients = v as u64;
        } else if name == "twin_http_event_clients_dropped_total" {
            s.dropped_total = v as u64;
        }
    }
    Some(s)
}

/// VmRSS and VmHWM of `pid`, in KiB.
fn memory(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after its
    // closing parenthesis start at field 3, so utime (14) is the 12th.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// A connection the clients read and write, over TLS or not.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The clients' TLS (`HTTP_LOAD_TLS=1`), set once before they start.
static TLS: OnceLock<Option<tokio_rustls::TlsConnector>> = OnceLock::new();

/// A connection to the twin, with a receive buffer of `rcvbuf` bytes if
/// given.
async fn dial(addr: SocketAddr, rcvbuf: Option<u32>) -> std::io::Result<Box<dyn Io>> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    if let Some(n) = rcvbuf {
        socket.set_recv_buffer_size(n)?;
    }
    let tcp = socket.connect(addr).await?;
    match TLS.get().and_then(Option::as_ref) {
        None => Ok(Box::new(tcp)),
        Some(c) => {
            let name = ServerName::IpAddress(addr.ip().into());
            Ok(Box::new(c.connect(name, tcp).await?))
        }
    }
}

/// A self-signed certificate for 127.0.0.1 and its key, in `dir`.
fn self_signed(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=http_load"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl req: {out:?}");
    (cert, key)
}

/// A TLS client trusting `cert` alone.
fn connector(cert: &Path) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).expect("read the certificate") {
        roots.add(c.expect("a certificate")).expect("a root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}
