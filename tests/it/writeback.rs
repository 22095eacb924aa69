//! Guarded write-back end to end (issue 12): the library's live run
//! (`runtime::run_live`) with an audit log and operator commands, against a
//! tokio-modbus server on 127.0.0.1 that keeps every write it gets and can
//! go silent (a device that is down). What the server received must be
//! exactly what the audit log says was written, and the log must verify.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_modbus::prelude::{ExceptionCode, Request, Response, SlaveRequest};
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_util::sync::CancellationToken;
use twin::guard::audit::{AuditReader, Decision, Entry};
use twin::runtime::control::{self, ControlOp, ControlRequest, ControlTx};
use twin::runtime::{RunOptions, run_live};
use twin::sources::health::HealthBoard;

use crate::util::{run_ok, twin};

/// A device's holding registers, the writes it took, and whether it is
/// "down" (it answers nothing, so the link times out).
#[derive(Default)]
struct Plc {
    words: HashMap<u16, u16>,
    /// (address, value) of every write, in order.
    writes: Vec<(u16, u16)>,
    down: bool,
    /// Echo writes as if stored, store nothing (a PLC in local mode).
    ignore_writes: bool,
    /// Every request it got, reads included.
    requests: u64,
}

#[derive(Clone)]
struct PlcService(Arc<Mutex<Plc>>);

type Reply = Result<Option<Response>, ExceptionCode>;

impl Service for PlcService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let mut p = self.0.lock().expect("not poisoned");
        p.requests += 1;
        let reply = if p.down {
            Ok(None)
        } else {
            match req.request {
                Request::ReadHoldingRegisters(a, n) => Ok(Some(Response::ReadHoldingRegisters(
                    (a..a + n)
                        .map(|i| p.words.get(&i).copied().unwrap_or(0))
                        .collect(),
                ))),
                Request::WriteSingleRegister(a, v) => {
                    if !p.ignore_writes {
                        p.words.insert(a, v);
                    }
                    p.writes.push((a, v));
                    Ok(Some(Response::WriteSingleRegister(a, v)))
                }
                _ => Err(ExceptionCode::IllegalFunction),
            }
        };
        Box::pin(async move { reply })
    }
}

async fn start_plc(stop: &CancellationToken) -> (SocketAddr, Arc<Mutex<Plc>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let plc = Arc::new(Mutex::new(Plc {
        words: HashMap::from([(10, 111)]),
        ..Plc::default()
    }));
    let service = PlcService(plc.clone());
    let stop = stop.clone();
    tokio::spawn(async move {
        let server = Server::new(listener);
        let on_connected = |stream, peer| {
            let service = service.clone();
            async move { accept_tcp_connection(stream, peer, move |_| Ok(Some(service.clone()))) }
        };
        let _ = server
            .serve_until(&on_connected, |_| {}, async move { stop.cancelled().await })
            .await;
    });
    (addr, plc)
}

/// One advisory setpoint on a holding register (0.1 units per count),
/// read back through its own tag.
pub(crate) fn config(addr: SocketAddr) -> String {
    format!(
        r#"
[plant]
name = "writeback"
tick = "50ms"
stale_after = "1s"

[[sources.modbus]]
name = "plc"
address = "{addr}"
unit_id = 1
poll_interval = "100ms"
timeout = "200ms"
registers = [
  {{ tag = "speed", table = "holding", address = 10, type = "u16", scale = 0.1 }},
]

[[setpoints]]
tag = "speed"
min = 0
max = 100
max_step = 50
mode = "advisory"
"#
    )
}

async fn ask(tx: &ControlTx, op: ControlOp) -> serde_json::Value {
    let (reply, rx) = tokio::sync::oneshot::channel();
    tx.send(ControlRequest {
        op,
        operator: "ana".into(),
        reply,
    })
    .await
    .expect("the run takes requests");
    rx.await.expect("the run answers")
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..400 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

fn link_up(h: &HealthBoard) -> bool {
    h.snapshot().iter().any(|(n, s)| n == "plc" && s.up)
}

fn entries(path: &Path) -> Vec<Entry> {
    let mut r = AuditReader::open(path).expect("open audit log");
    let mut out = Vec::new();
    while let Some(e) = r.next_entry().expect("a valid entry") {
        out.push(e);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_operator_writes_reach_the_plc_exactly_as_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let (addr, plc) = start_plc(&stop).await;
    let cfg_path = dir.path().join("plant.toml");
    std::fs::write(&cfg_path, config(addr)).expect("write config");
    let cfg = twin::config::load_str(&cfg_path, &config(addr))
        .unwrap_or_else(|r| panic!("valid config: {:?}", r.errors().collect::<Vec<_>>()));
    let audit = dir.path().join("audit.jsonl");

    // Without an audit log, a writing setpoint does not run at all.
    let refused = run_live(
        &cfg,
        &Default::default(),
        RunOptions::new(None),
        CancellationToken::new(),
    )
    .await;
    assert!(
        matches!(refused, Err(twin::runtime::RunError::AuditRequired(ref m)) if m.contains("--audit") && m.contains("SR 2.8")),
        "{refused:?}"
    );
    assert!(plc.lock().expect("lock").writes.is_empty());

    let (tx, rx) = control::channel();
    let health = HealthBoard::default();
    let mut opts = RunOptions::new(None);
    opts.audit = Some(audit.clone());
    opts.control = Some(rx);
    opts.health = health.clone();
    let rec = dir.path().join("run.mcap");
    opts.sinks
        .push(Box::new(twin::sinks::recorder::Recorder::new(
            &cfg,
            twin::sinks::recorder::RecorderOptions::new(&rec),
        )));
    let run_stop = CancellationToken::new();
    let run = {
        let cfg = cfg.clone();
        let run_stop = run_stop.clone();
        tokio::spawn(async move { run_live(&cfg, &Default::default(), opts, run_stop).await })
    };
    until("the PLC link to come up", || link_up(&health)).await;
    // A poll or two after the link is up, the tag is good.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Propose, see it pending, approve: written, and read back.
    let r = ask(
        &tx,
        ControlOp::Propose {
            tag: "speed".into(),
            value: 20.0,
        },
    )
    .await;
    let id = r["id"].as_u64().unwrap_or_else(|| panic!("{r}"));
    let mut listed = serde_json::Value::Null;
    for _ in 0..100 {
        listed = ask(&tx, ControlOp::Pending).await;
        if listed["pending"].as_array().is_some_and(|p| !p.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(listed["pending"][0]["id"], id, "{listed}");
    assert_eq!(listed["pending"][0]["tag"], "speed", "{listed}");
    let r = ask(&tx, ControlOp::Approve { id }).await;
    assert_eq!(r["ok"], true, "{r}");
    until("the PLC to receive the write", || {
        plc.lock().expect("lock").writes == vec![(10, 200)]
    })
    .await;
    // The poll reads the new value back: verified, and the setpoint free
    // for the next proposal.
    until("the read-back", || {
        std::fs::read_to_string(&audit).is_ok_and(|t| t.contains("\"readback_ok\""))
    })
    .await;

    // NaN is blocked, whoever proposes it.
    let r = ask(
        &tx,
        ControlOp::Propose {
            tag: "speed".into(),
            value: f64::NAN,
        },
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");

    // The device goes down: a proposal then is blocked (nothing pends), and
    // nothing is written after it comes back.
    plc.lock().expect("lock").down = true;
    until("the PLC link to go down", || !link_up(&health)).await;
    let r = ask(
        &tx,
        ControlOp::Propose {
            tag: "speed".into(),
            value: 30.0,
        },
    )
    .await;
    let down_id = r["id"].as_u64().unwrap_or_else(|| panic!("{r}"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let listed = ask(&tx, ControlOp::Pending).await;
    assert_eq!(listed["pending"], serde_json::json!([]), "{listed}");
    assert_eq!(
        ask(&tx, ControlOp::Approve { id: down_id }).await["ok"],
        false
    );
    plc.lock().expect("lock").down = false;
    until("the PLC link to come back", || link_up(&health)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    run_stop.cancel();
    run.await.expect("run task").expect("run ok");

    // A replay of the recording decides without a writer: it opens no
    // connection (the device sees no request at all) and writes nothing.
    // The operator's commands, the write's outcome and the link's flags are
    // in the recording (`/twin/guard`), so it decides exactly as the run
    // did: `--verify` compares every tick with the recorded events.
    let before = plc.lock().expect("lock").requests;
    let replayed = dir.path().join("replay.jsonl");
    let text = String::from_utf8(crate::util::replay_verified(&rec, &replayed)).expect("utf-8");
    for decision in ["pending", "approved", "written", "readback_ok", "blocked"] {
        assert!(
            text.contains(&format!("\"decision\":\"{decision}\"")),
            "the replay decides {decision} as the run did"
        );
    }
    assert_eq!(plc.lock().expect("lock").requests, before);
    stop.cancel();

    let writes = plc.lock().expect("lock").writes.clone();
    assert_eq!(
        writes,
        vec![(10, 200)],
        "only the approved value was written"
    );
    let log = entries(&audit);
    let decided = |d: Decision| log.iter().filter(|e| e.decision == d).collect::<Vec<_>>();
    let written = decided(Decision::Written);
    assert_eq!(written.len(), writes.len(), "{log:#?}");
    assert_eq!(written[0].written.map(|n| n.0), Some(20.0));
    assert_eq!(written[0].actor.name(), "ana");
    assert_eq!(decided(Decision::Approved).len(), 1);
    assert_eq!(decided(Decision::ReadbackOk).len(), 1, "{log:#?}");
    let blocked = decided(Decision::Blocked);
    let rule_of = |requested: f64| {
        blocked
            .iter()
            .find(|e| {
                e.requested
                    .is_some_and(|n| n.0 == requested || (n.0.is_nan() && requested.is_nan()))
            })
            .and_then(|e| e.rule.clone())
    };
    assert_eq!(rule_of(f64::NAN).as_deref(), Some("non_finite"), "{log:#?}");
    // With the device down its tag goes bad first (rule 7); the link's own
    // rule (15) would block it as well.
    let down_rule = rule_of(30.0);
    assert!(
        matches!(down_rule.as_deref(), Some("input_quality" | "link_down")),
        "{down_rule:?}"
    );

    let out = run_ok(twin().args(["audit", "verify"]).arg(&audit));
    assert!(out.status.success());
}

#[test]
fn r12_twin_run_refuses_a_writing_setpoint_without_audit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("plant.toml");
    // Never contacted: the run stops before it builds a source.
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    std::fs::write(&cfg, config(addr)).expect("write config");
    let out = twin()
        .arg("run")
        .arg(&cfg)
        .args(["--for", "1s", "--no-table"])
        .output()
        .expect("run twin");
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--audit PATH") && err.contains("SR 2.8") && err.contains("speed"),
        "{err}"
    );
}

/// `twin CMD ARGS --control SOCK`: its exit code and its reply line.
fn ctl(sock: &Path, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = twin()
        .args(args)
        .arg("--control")
        .arg(sock)
        .output()
        .expect("run twin");
    let reply = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    (
        out.status.code(),
        reply,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_operators_approve_and_reject_over_the_control_socket() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let (addr, plc) = start_plc(&stop).await;
    let cfg = dir.path().join("plant.toml");
    std::fs::write(&cfg, config(addr)).expect("write config");
    let audit = dir.path().join("audit.jsonl");
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).expect("mkdir");
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let sock = run_dir.join("twin.sock");

    // A directory others can write is refused: they could swap the socket.
    let open_dir = dir.path().join("open");
    std::fs::create_dir(&open_dir).expect("mkdir");
    std::fs::set_permissions(&open_dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let out = twin()
        .arg("run")
        .arg(&cfg)
        .arg("--audit")
        .arg(dir.path().join("other-audit.jsonl"))
        .arg("--control")
        .arg(open_dir.join("twin.sock"))
        .args(["--for", "30s", "--no-table"])
        .output()
        .expect("run twin");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("can be written by other users"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut cmd = twin();
    cmd.arg("run")
        .arg(&cfg)
        .arg("--audit")
        .arg(&audit)
        .arg("--control")
        .arg(&sock)
        .args(["--for", "60s", "--no-table"]);
    let mut proc = crate::util::Proc::spawn(cmd);
    let mut up = false;
    for _ in 0..300 {
        // Pending answers once the socket is up; the tag is good once the
        // first polls came in (a proposal before that is blocked).
        if sock.exists() && plc.lock().expect("lock").requests > 3 {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "the twin started: {}", proc.stderr());
    let mode = std::fs::metadata(&sock)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);

    // Propose, reject: nothing written.
    let (code, r, err) = ctl(&sock, &["propose", "speed", "40"]);
    assert_eq!(code, Some(0), "{r} {err}");
    let first = r["id"].as_u64().unwrap_or_else(|| panic!("{r}"));
    let wait_pending = |id: u64| {
        for _ in 0..100 {
            let (_, r, _) = ctl(&sock, &["pending"]);
            if r["pending"]
                .as_array()
                .is_some_and(|p| p.iter().any(|x| x["id"] == id))
            {
                return r;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        panic!("proposal {id} never pending");
    };
    wait_pending(first);
    let (code, r, _) = ctl(&sock, &["reject", &first.to_string()]);
    assert_eq!((code, r["ok"].clone()), (Some(0), serde_json::json!(true)));
    // Rejecting it again: it is no longer pending (or its rejection is
    // queued), so the twin refuses and the command exits 1.
    let (code, r, _) = ctl(&sock, &["reject", &first.to_string()]);
    assert_eq!(code, Some(1), "{r}");

    // Propose, approve: written, by the operator the kernel names.
    let (_, r, _) = ctl(&sock, &["propose", "speed", "25"]);
    let second = r["id"].as_u64().unwrap_or_else(|| panic!("{r}"));
    wait_pending(second);
    let (code, r, _) = ctl(&sock, &["approve", &second.to_string()]);
    assert_eq!(code, Some(0), "{r}");
    until("the PLC to receive the write", || {
        plc.lock().expect("lock").writes == vec![(10, 250)]
    })
    .await;

    // The kill switch blocks the next proposal (rule 2, before anything
    // else about the setpoint); lifting it is a command too.
    let (code, r, _) = ctl(&sock, &["kill"]);
    assert_eq!(
        (code, r["kill"].clone()),
        (Some(0), serde_json::json!(true))
    );
    let (code, r, _) = ctl(&sock, &["propose", "speed", "30"]);
    assert_eq!(code, Some(0), "{r}");
    until("the kill switch's block", || {
        std::fs::read_to_string(&audit).is_ok_and(|t| t.contains("\"kill_switch\""))
    })
    .await;
    let (code, r, _) = ctl(&sock, &["kill", "--off"]);
    assert_eq!(
        (code, r["kill"].clone()),
        (Some(0), serde_json::json!(false))
    );
    // Taken on the next tick, like every command: decided and audited.
    until("the kill switch lifted", || {
        std::fs::read_to_string(&audit).is_ok_and(|t| t.contains("\"kill_off\""))
    })
    .await;

    // A socket others could reach is refused by the client.
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let (code, _, err) = ctl(&sock, &["pending"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("lets other users connect"), "{err}");

    proc.terminate();
    assert_eq!(
        proc.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        proc.stderr()
    );
    stop.cancel();
    assert!(!sock.exists(), "the socket is removed at shutdown");
    let log = entries(&audit);
    let by = |d: Decision| {
        log.iter()
            .filter(|e| e.decision == d)
            .map(|e| e.actor.name().to_string())
            .collect::<Vec<_>>()
    };
    let me = twin::runtime::control::user_name(std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(&audit).expect("audit"),
    ));
    assert_eq!(by(Decision::Rejected), vec![me.clone()]);
    assert_eq!(by(Decision::Approved), vec![me.clone()]);
    assert_eq!(by(Decision::Written), vec![me.clone()]);
    // The kill switch's own decisions, by the operator the kernel names.
    assert_eq!(by(Decision::KillOn), vec![me.clone()]);
    assert_eq!(by(Decision::KillOff), vec![me]);
    assert_eq!(plc.lock().expect("lock").writes, vec![(10, 250)]);
    let killed = log
        .iter()
        .find(|e| e.rule.as_deref() == Some("kill_switch"))
        .expect("a kill_switch block");
    assert_eq!(killed.requested.map(|n| n.0), Some(30.0));
    assert!(killed.reason.contains("twin kill by"), "{}", killed.reason);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_the_watchdog_beats_from_the_tick_and_stops_with_the_twin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let (addr, plc) = start_plc(&stop).await;
    let cfg = dir.path().join("plant.toml");
    // Shadow only: the heartbeat needs no audit log.
    let text = config(addr).replace("mode = \"advisory\"", "mode = \"shadow\"")
        + "\n[guard]\nwatchdog = { device = \"plc\", table = \"holding\", address = 99, every = \"100ms\" }\n";
    std::fs::write(&cfg, text).expect("write config");
    let mut cmd = twin();
    cmd.arg("run")
        .arg(&cfg)
        .args(["--for", "60s", "--no-table"]);
    let mut proc = crate::util::Proc::spawn(cmd);
    let beats = || {
        plc.lock()
            .expect("lock")
            .writes
            .iter()
            .filter(|(a, _)| *a == 99)
            .map(|(_, v)| *v)
            .collect::<Vec<_>>()
    };
    until("five heartbeats", || beats().len() >= 5).await;
    // A counter, one step per beat, from 1.
    let seen = beats();
    assert_eq!(seen[..5], [1, 2, 3, 4, 5], "{seen:?} {}", proc.stderr());
    assert!(proc.is_running());
    // kill -9: nothing is left to beat.
    let _ = proc.child.kill();
    let _ = proc.child.wait();
    // A beat the kernel already had on the wire may still land: let it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_kill = beats().len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        beats().len(),
        after_kill,
        "no heartbeat after the twin died"
    );
    // Only the heartbeat register was written: shadow mode writes nothing.
    assert!(
        plc.lock()
            .expect("lock")
            .writes
            .iter()
            .all(|(a, _)| *a == 99)
    );
    stop.cancel();
}

/// The demo's outfeed belt-speed setpoint in `mode`, whatever the demo
/// sets it to (its block is the lines after its `tag` up to a blank line).
pub(crate) fn demo_with_outfeed(mode: &str) -> String {
    let base = crate::ml_stage::demo_without_models();
    let head = "[[setpoints]]\ntag = \"outfeed.speed\"\n";
    let at = base
        .find(head)
        .expect("the demo has an outfeed.speed setpoint")
        + head.len();
    let end = base[at..].find("\n\n").map_or(base.len(), |e| at + e);
    let block: Vec<&str> = base[at..end]
        .lines()
        .filter(|l| !l.starts_with("enabled") && !l.starts_with("mode"))
        .collect();
    format!(
        "{}{}\nmode = \"{mode}\"{}",
        &base[..at],
        block.join("\n"),
        &base[end..]
    )
}

#[test]
fn r12_a_nan_model_in_closed_loop_writes_nothing_live() {
    // nan.onnx: one NaN column out, for the outfeed belt, every 2 s, on the
    // live demo (its virtual plant serving Modbus on loopback).
    let dir = tempfile::tempdir().expect("tempdir");
    let model = crate::util::root().join("tests/models/nan.onnx");
    let models = format!(
        r#"
[[models]]
id = "belt_speeds"
path = "{}"
task = "setpoint"
every = "2s"
  [[models.features]]
  tag = "infeed.speed"
  [[models.features]]
  tag = "outfeed.speed"
  [[models.features]]
  physics = "wip"
  line = "line1"
  [[models.features]]
  physics = "throughput"
  line = "line1"
  [models.output]
  setpoints = ["outfeed.speed"]
  [models.optimise]
  horizon = "10s"
"#,
        model.display()
    );
    let cfg = dir.path().join("plant.toml");
    std::fs::write(
        &cfg,
        format!("{}\n{models}", demo_with_outfeed("closed_loop")),
    )
    .expect("write config");
    let (audit, events) = (dir.path().join("audit.jsonl"), dir.path().join("e.jsonl"));
    run_ok(
        twin()
            .args(["demo", "--no-table", "--for", "7s", "--config"])
            .arg(&cfg)
            .arg("--audit")
            .arg(&audit)
            .arg("--events")
            .arg(&events),
    );
    let text = std::fs::read_to_string(&events).expect("events");
    let all: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let nan_errors = all
        .iter()
        .filter(|e| e["type"] == "error" && e["target"] == "belt_speeds")
        .filter(|e| e["error"].as_str().is_some_and(|s| s.contains("NaN")))
        .count();
    assert!(nan_errors >= 2, "the model ran and gave NaN: {nan_errors}");
    assert!(!all.iter().any(|e| e["type"] == "proposal"));
    let log = entries(&audit);
    assert!(
        !log.iter().any(|e| e.decision == Decision::Written),
        "{log:#?}"
    );
    assert_eq!(log[0].decision, Decision::Opened);
    run_ok(twin().args(["audit", "verify"]).arg(&audit));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r12_a_register_read_back_mismatch_locks_until_an_operator_resets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let (addr, plc) = start_plc(&stop).await;
    plc.lock().expect("lock").ignore_writes = true;
    // Written to holding 20, a register no tag reads: the writer reads it
    // back itself (Readback::Target).
    let text = config(addr).replace(
        "mode = \"advisory\"",
        "mode = \"advisory\"\ntarget = { table = \"holding\", address = 20, type = \"u16\", scale = 0.1 }",
    );
    let cfg_path = dir.path().join("plant.toml");
    let cfg = twin::config::load_str(&cfg_path, &text)
        .unwrap_or_else(|r| panic!("valid config: {:?}", r.errors().collect::<Vec<_>>()));
    let audit = dir.path().join("audit.jsonl");
    let (tx, rx) = control::channel();
    let health = HealthBoard::default();
    let mut opts = RunOptions::new(None);
    opts.audit = Some(audit.clone());
    opts.control = Some(rx);
    opts.health = health.clone();
    let rec = dir.path().join("run.mcap");
    opts.sinks
        .push(Box::new(twin::sinks::recorder::Recorder::new(
            &cfg,
            twin::sinks::recorder::RecorderOptions::new(&rec),
        )));
    let run_stop = CancellationToken::new();
    let run = {
        let (cfg, run_stop) = (cfg.clone(), run_stop.clone());
        tokio::spawn(async move { run_live(&cfg, &Default::default(), opts, run_stop).await })
    };
    until("the PLC link to come up", || link_up(&health)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = ask(
        &tx,
        ControlOp::Propose {
            tag: "speed".into(),
            value: 20.0,
        },
    )
    .await;
    let id = r["id"].as_u64().unwrap_or_else(|| panic!("{r}"));
    for _ in 0..100 {
        if ask(&tx, ControlOp::Approve { id }).await["ok"] == true {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until("the lock", || {
        std::fs::read_to_string(&audit).is_ok_and(|t| t.contains("\"locked\""))
    })
    .await;
    let listed = ask(&tx, ControlOp::Pending).await;
    assert_eq!(listed["locked"][0]["tag"], "speed", "{listed}");
    // Locked: a new proposal is blocked; a reset unlocks.
    let r = ask(
        &tx,
        ControlOp::Reset {
            tag: "speed".into(),
        },
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    until("the reset", || {
        std::fs::read_to_string(&audit).is_ok_and(|t| t.contains("\"reset\""))
    })
    .await;
    run_stop.cancel();
    run.await.expect("run task").expect("run ok");
    stop.cancel();

    assert_eq!(plc.lock().expect("lock").writes, vec![(20, 200)]);
    let log = entries(&audit);
    let decisions: Vec<Decision> = log
        .iter()
        .filter(|e| e.decision != Decision::Opened && e.decision != Decision::Proposed)
        .map(|e| e.decision)
        .collect();
    assert_eq!(
        decisions,
        [
            Decision::Approved,
            Decision::Written,
            Decision::ReadbackMismatch,
            Decision::Locked,
            Decision::Reset
        ],
        "{log:#?}"
    );
    let mismatch = log
        .iter()
        .find(|e| e.decision == Decision::ReadbackMismatch)
        .expect("a mismatch");
    assert!(
        mismatch.reason.contains("read back 0"),
        "{}",
        mismatch.reason
    );
    run_ok(twin().args(["audit", "verify"]).arg(&audit));

    // The replay has no writer and no device, yet the register's read-back
    // (0, from the device that ignored the write) is in the recording: it
    // waits for it, locks and takes the reset as the run did, tick for tick.
    let replayed = dir.path().join("replay.jsonl");
    let text = String::from_utf8(crate::util::replay_verified(&rec, &replayed)).expect("utf-8");
    for decision in ["readback_mismatch", "locked", "reset"] {
        assert!(
            text.contains(&format!("\"decision\":\"{decision}\"")),
            "the replay decides {decision} as the run did"
        );
    }
}
