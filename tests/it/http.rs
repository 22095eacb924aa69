//! The HTTP surface (`--http`, docs/api.md) of a live demo: bearer-token
//! auth and roles, the read-only API, operator control ending in the
//! audit log under the token's name, and `/metrics` as Prometheus reads it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use twin::guard::audit::{AuditReader, Decision};

use crate::util::{Proc, twin};

const ALICE: &str = "alice-operator-token-0123456789";
const BOB: &str = "bob-viewer-token-9876543210abc";

/// One HTTP/1.1 exchange over a fresh connection: status, headers (lower
/// case), body. A tiny client: the server answers with a length or in
/// chunks, and closes on `Connection: close`.
fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the HTTP server");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("send the request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("a header block");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let head = head.to_ascii_lowercase();
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    (status, head, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The address from the `HTTP server listening.` line on stderr.
fn listening(proc: &mut Proc) -> String {
    for _ in 0..1500 {
        let err = proc.stderr();
        if let Some(line) = err.lines().find(|l| l.contains("HTTP server listening.")) {
            let url = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("url=http://"))
                .unwrap_or_else(|| panic!("no url= in {line:?}"));
            return url.to_string();
        }
        assert!(proc.is_running(), "the twin exited: {err}");
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no HTTP server line: {}", proc.stderr());
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// `twin propose TAG VALUE` over the control socket: the proposal's id.
fn propose(sock: &Path, value: &str) -> u64 {
    let out = twin()
        .args(["propose", "outfeed.speed", value, "--control"])
        .arg(sock)
        .output()
        .expect("run twin propose");
    let reply: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    reply["id"].as_u64().unwrap_or_else(|| {
        panic!(
            "no proposal id: {reply} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Wait until the API lists proposal `id` as pending (the snapshot is a
/// few ticks behind the guard).
fn wait_pending(addr: &str, id: u64) {
    for _ in 0..200 {
        let (code, _, body) = request(addr, "GET", "/api/v1/proposals", Some(BOB), None);
        assert_eq!(code, 200, "{body}");
        let v = json(&body);
        if v["pending"].as_array().is_some_and(|p| {
            p.iter()
                .any(|x| x["id"] == id && x["tag"] == "outfeed.speed")
        }) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("proposal {id} never listed as pending");
}

/// `promtool check metrics` on `text`: its exit code and output.
fn promtool(text: &str) -> (Option<i32>, String) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (scripts/setup.sh installs the prometheus package)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool ran");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), said)
}

#[test]
fn http_tokens_roles_and_operator_decisions_reach_the_audit_log() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("plant.toml");
    std::fs::write(&cfg, crate::writeback::demo_with_outfeed("advisory")).expect("config");
    let tokens = dir.path().join("tokens");
    write_private(
        &tokens,
        &format!("# who may act\nalice operator {ALICE}\nbob viewer {BOB}\n"),
    );
    let audit = dir.path().join("audit.jsonl");
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir).expect("mkdir");
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let sock = run_dir.join("twin.sock");

    let mut cmd = twin();
    cmd.arg("demo")
        .arg("--config")
        .arg(&cfg)
        .arg("--audit")
        .arg(&audit)
        .arg("--control")
        .arg(&sock)
        .args(["--http", "127.0.0.1:0", "--http-tokens"])
        .arg(&tokens)
        .args(["--for", "90s", "--no-table"]);
    let mut proc = Proc::spawn(cmd);
    let addr = listening(&mut proc);

    // Liveness needs no token; everything else does.
    let (code, _, body) = request(&addr, "GET", "/healthz", None, None);
    assert_eq!(
        (code, json(&body)["ok"].clone()),
        (200, serde_json::json!(true))
    );
    let (code, head, _) = request(&addr, "GET", "/api/v1/tags", None, None);
    assert_eq!(code, 401);
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    let (code, _, _) = request(
        &addr,
        "GET",
        "/api/v1/tags",
        Some("not-a-token-of-this-file"),
        None,
    );
    assert_eq!(code, 401);
    let (code, _, _) = request(&addr, "GET", "/metrics", None, None);
    assert_eq!(code, 401);
    let (code, _, _) = request(&addr, "GET", "/api/v1/events?type=tag", None, None);
    assert_eq!(code, 401, "the event stream needs a token too");
    // No CORS: a browser page elsewhere gets nothing it may read.
    assert!(!head.contains("access-control-allow-origin"), "{head}");

    // The demo's tags, with their quality, once the sources have polled.
    let mut tags = serde_json::Value::Null;
    for _ in 0..200 {
        let (code, _, body) = request(&addr, "GET", "/api/v1/tags", Some(BOB), None);
        assert_eq!(code, 200, "{body}");
        tags = json(&body);
        let good = tags["tags"].as_array().is_some_and(|t| {
            t.iter().any(|r| {
                r["tag"] == "outfeed.speed" && r["quality"] == "good" && r["value"].is_f64()
            })
        });
        if good {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let rows = tags["tags"].as_array().expect("a tag list");
    let speed = rows
        .iter()
        .find(|r| r["tag"] == "outfeed.speed")
        .unwrap_or_else(|| panic!("outfeed.speed in {tags}"));
    assert_eq!(speed["quality"], "good", "{speed}");
    assert_eq!(
        (speed["machine"].as_str(), speed["unit"].as_str()),
        (Some("outfeed"), Some("m/s"))
    );
    assert!(rows.iter().any(|r| r["tag"] == "filler.speed"), "{tags}");
    assert!(rows.iter().all(|r| r["quality"].is_string()), "{tags}");
    let (code, _, body) = request(&addr, "GET", "/api/v1/tags?machine=filler", Some(BOB), None);
    assert_eq!(code, 200);
    let filler = json(&body);
    assert!(
        filler["tags"]
            .as_array()
            .is_some_and(|t| !t.is_empty() && t.iter().all(|r| r["machine"] == "filler")),
        "{filler}"
    );
    let (code, _, _) = request(&addr, "GET", "/api/v1/tags?colour=red", None, None);
    assert_eq!(code, 401, "the token is checked first");
    let (code, _, body) = request(&addr, "GET", "/api/v1/tags?colour=red", Some(BOB), None);
    assert_eq!(code, 400, "{body}");
    // A misspelt machine was an empty list, as if it had no tags.
    let (code, _, body) = request(&addr, "GET", "/api/v1/tags?machine=filer", Some(BOB), None);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("no machine `filer`; did you mean `filler`?"),
        "{body}"
    );
    let (code, _, body) = request(&addr, "GET", "/api/v1/plant", Some(BOB), None);
    assert_eq!(code, 200);
    let plant = json(&body);
    assert!(
        plant["plant"]["setpoints"].as_array().is_some_and(|s| s
            .iter()
            .any(|x| x["tag"] == "outfeed.speed" && x["mode"] == "advisory")),
        "{plant}"
    );
    for path in ["/api/v1/alarms", "/api/v1/metering"] {
        let (code, _, body) = request(&addr, "GET", path, Some(BOB), None);
        assert_eq!(code, 200, "{path}: {body}");
        assert!(json(&body)["tick"].is_u64(), "{path}: {body}");
    }

    // A proposal over the socket; the viewer may see it, not decide it.
    let first = propose(&sock, "0.62");
    wait_pending(&addr, first);
    let approve = format!("/api/v1/proposals/{first}/approve");
    let reject = format!("/api/v1/proposals/{first}/reject");
    let (code, _, body) = request(&addr, "POST", &approve, Some(BOB), None);
    assert_eq!(code, 403, "{body}");
    let (code, _, _) = request(&addr, "POST", &approve, None, None);
    assert_eq!(code, 401);
    let (code, _, body) = request(&addr, "POST", &reject, Some(ALICE), None);
    assert_eq!(
        (code, json(&body)["ok"].clone()),
        (200, serde_json::json!(true)),
        "{body}"
    );
    // Decided already: the guard refuses, and says so.
    let (code, _, body) = request(&addr, "POST", &reject, Some(ALICE), None);
    assert_eq!(
        (code, json(&body)["ok"].clone()),
        (409, serde_json::json!(false)),
        "{body}"
    );

    let second = propose(&sock, "0.63");
    wait_pending(&addr, second);
    let (code, _, body) = request(
        &addr,
        "POST",
        &format!("/api/v1/proposals/{second}/approve"),
        Some(ALICE),
        None,
    );
    assert_eq!(
        (code, json(&body)["ok"].clone()),
        (200, serde_json::json!(true)),
        "{body}"
    );

    // A read-back lock's reset: operators only, and only of a locked
    // setpoint (none is locked here, which the guard says).
    let reset = "/api/v1/setpoints/outfeed.speed/reset";
    let (code, _, _) = request(&addr, "POST", reset, Some(BOB), None);
    assert_eq!(code, 403);
    let (code, _, body) = request(&addr, "POST", reset, Some(ALICE), None);
    assert_eq!(
        (code, json(&body)["ok"].clone()),
        (409, serde_json::json!(false)),
        "{body}"
    );

    // The kill switch, on and off; a body that is not the expected one is
    // refused before it reaches the twin.
    let (code, _, body) = request(
        &addr,
        "POST",
        "/api/v1/kill",
        Some(ALICE),
        Some("{\"on\":true}"),
    );
    assert_eq!(
        (code, json(&body)["kill"].clone()),
        (200, serde_json::json!(true)),
        "{body}"
    );
    let (code, _, _) = request(
        &addr,
        "POST",
        "/api/v1/kill",
        Some(ALICE),
        Some("{\"on\":1}"),
    );
    assert_eq!(code, 400);
    let big = format!("{{\"on\":false,\"pad\":\"{}\"}}", "x".repeat(32 * 1024));
    let (code, _, _) = request(&addr, "POST", "/api/v1/kill", Some(ALICE), Some(&big));
    assert_eq!(code, 413);
    let (code, _, body) = request(
        &addr,
        "POST",
        "/api/v1/kill",
        Some(ALICE),
        Some("{\"on\":false}"),
    );
    assert_eq!(
        (code, json(&body)["kill"].clone()),
        (200, serde_json::json!(false)),
        "{body}"
    );

    // /metrics: what promtool accepts, with what we expect in it, once the
    // snapshot has the approval (it trails the guard by a few ticks).
    let (mut code, mut head, mut text) = (0, String::new(), String::new());
    for _ in 0..200 {
        (code, head, text) = request(&addr, "GET", "/metrics", Some(BOB), None);
        if text.contains("twin_guard_decisions_total{decision=\"approved\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(code, 200, "{text}");
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    let (status, said) = promtool(&text);
    assert_eq!(status, Some(0), "promtool check metrics: {said}\n{text}");
    let samples: Vec<(&str, f64)> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l:?}"));
            (name, value.parse().unwrap_or_else(|_| panic!("{l:?}")))
        })
        .collect();
    let count = samples
        .iter()
        .find(|(n, _)| *n == "twin_tick_duration_seconds_count")
        .map(|(_, v)| *v);
    assert!(count.is_some_and(|c| c > 0.0), "{text}");
    assert!(
        samples
            .iter()
            .any(|(n, _)| *n == "twin_tick_duration_seconds_bucket{le=\"+Inf\"}"),
        "{text}"
    );
    let speed = samples.iter().find(|(n, _)| {
        n.starts_with("twin_tag_value{")
            && n.contains("tag=\"outfeed.speed\"")
            && n.contains("machine=\"outfeed\"")
            && n.contains("unit=\"m/s\"")
    });
    assert!(speed.is_some_and(|(_, v)| (0.0..1.0).contains(v)), "{text}");
    assert!(
        samples
            .iter()
            .any(|(n, v)| n.starts_with("twin_events_total{type=\"tag\"}") && *v > 0.0),
        "{text}"
    );
    assert!(
        samples
            .iter()
            .any(|(n, v)| n.starts_with("twin_source_polls_total{") && *v > 0.0),
        "{text}"
    );
    assert!(
        samples.iter().any(|(n, v)| n
            .starts_with("twin_guard_decisions_total{decision=\"approved\"")
            && *v >= 1.0),
        "{text}"
    );

    proc.terminate();
    assert_eq!(
        proc.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        proc.stderr()
    );
    let mut r = AuditReader::open(&audit).expect("open the audit log");
    let mut decided = Vec::new();
    while let Some(e) = r.next_entry().expect("a valid entry") {
        if matches!(
            e.decision,
            Decision::Approved | Decision::Rejected | Decision::KillOn | Decision::KillOff
        ) {
            decided.push((e.decision, e.actor.name().to_string()));
        }
    }
    // Every control action, under the token's name; the kill switch has
    // one entry per setpoint that can be decided.
    decided.dedup();
    let alice = |d| (d, "alice".to_string());
    assert_eq!(
        decided,
        vec![
            alice(Decision::Rejected),
            alice(Decision::Approved),
            alice(Decision::KillOn),
            alice(Decision::KillOff)
        ]
    );
}

#[test]
fn http_without_tokens_is_loopback_only_and_read_only() {
    use std::os::unix::fs::PermissionsExt;
    // Not on loopback without a token: a usage error saying how to fix it.
    let out = twin()
        .args(["demo", "--http", "0.0.0.0:0", "--for", "5s", "--no-table"])
        .env_remove("TWIN_HTTP_TOKENS_FILE")
        .output()
        .expect("run twin");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--http-tokens FILE") && err.contains("127.0.0.1:0"),
        "{err}"
    );

    // A token file others can read is refused, like ssh's keys.
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("alice operator {ALICE}\n")).expect("write");
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = twin()
        .args(["demo", "--http", "127.0.0.1:0", "--for", "5s", "--no-table"])
        .env("TWIN_HTTP_TOKENS_FILE", &tokens)
        .output()
        .expect("run twin");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("chmod 600"), "{err}");

    let mut cmd = twin();
    cmd.args([
        "demo",
        "--http",
        "127.0.0.1:0",
        "--for",
        "60s",
        "--no-table",
    ])
    .env_remove("TWIN_HTTP_TOKENS_FILE");
    let mut proc = Proc::spawn(cmd);
    let addr = listening(&mut proc);
    assert!(proc.stderr().contains("read-only"), "{}", proc.stderr());
    let (code, _, body) = request(&addr, "GET", "/api/v1/tags", None, None);
    assert_eq!(code, 200, "{body}");
    assert!(
        json(&body)["tags"]
            .as_array()
            .is_some_and(|t| !t.is_empty()),
        "{body}"
    );
    let (code, _, body) = request(&addr, "POST", "/api/v1/kill", None, Some("{\"on\":true}"));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");
    let (code, _, body) = request(
        &addr,
        "POST",
        "/api/v1/proposals/1/approve",
        Some(ALICE),
        None,
    );
    assert_eq!(code, 403, "{body}");
    let (code, _, text) = request(&addr, "GET", "/metrics", None, None);
    assert_eq!(code, 200);
    assert!(text.contains("twin_tick_duration_seconds_bucket"), "{text}");
    proc.terminate();
    assert_eq!(
        proc.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        proc.stderr()
    );
}

#[test]
fn http_on_a_replay_is_read_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    write_private(&tokens, &format!("alice operator {ALICE}\n"));
    let mut cmd = twin();
    // Slowed down so that the server outlives the requests (the 2 s
    // recording takes 20 s at 0.1x; the test ends it sooner).
    cmd.arg("replay")
        .arg(crate::util::root().join("tests/fixtures/recording-v1-demo-2s.mcap"))
        .args(["--speed", "0.1x", "--http", "127.0.0.1:0", "--http-tokens"])
        .arg(&tokens);
    let mut proc = Proc::spawn(cmd);
    let addr = listening(&mut proc);
    let (code, _, body) = request(
        &addr,
        "POST",
        "/api/v1/kill",
        Some(ALICE),
        Some("{\"on\":true}"),
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains("no operator commands"), "{body}");
    let (code, _, body) = request(&addr, "GET", "/api/v1/tags", Some(ALICE), None);
    assert_eq!(code, 200, "{body}");
    assert!(
        json(&body)["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|r| r["tag"] == "infeed.speed")),
        "{body}"
    );
    proc.terminate();
    assert!(
        proc.wait(Duration::from_secs(20)).is_some(),
        "{}",
        proc.stderr()
    );
}

/// A client of `GET /api/v1/events` reading until the stream ends or
/// `want` `data:` lines came: those lines' JSON, and the whole text.
fn stream_events(addr: &str, query: &str, want: usize) -> (Vec<serde_json::Value>, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the HTTP server");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let req = format!("GET /api/v1/events{query} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send the request");
    let mut text = String::new();
    let mut buf = [0u8; 8192];
    let mut events = Vec::new();
    while events.len() < want {
        let n = match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => panic!("no more events ({e}) after: {text}"),
        };
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        // A read may end inside a line: a `data:` line is whole once its
        // newline is in.
        let whole = text.rfind('\n').map_or("", |i| &text[..i]);
        events = whole
            .split('\n')
            // Event lines are JSON objects; `end` and `dropped` say why in
            // words.
            .filter_map(|l| l.strip_prefix("data: ").filter(|d| d.starts_with('{')))
            .map(|l| json(l.trim_end_matches('\r')))
            .collect();
    }
    (events, text)
}

#[test]
fn http_streams_the_live_events_filtered() {
    let mut cmd = twin();
    cmd.args(["demo", "--http", "127.0.0.1:0", "--for", "6s", "--no-table"])
        .env_remove("TWIN_HTTP_TOKENS_FILE");
    let mut proc = Proc::spawn(cmd);
    let addr = listening(&mut proc);

    let (code, _, body) = request(&addr, "GET", "/api/v1/events?kind=tag", None, None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("type="), "{body}");
    // A misspelt type or machine would stream nothing: refused, with the
    // word meant.
    let (code, _, body) = request(&addr, "GET", "/api/v1/events?type=tag,alrm", None, None);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("`alrm`") && body.contains("`alarm`"),
        "{body}"
    );
    let (code, _, body) = request(&addr, "GET", "/api/v1/events?machine=filer", None, None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("`filler`"), "{body}");

    let a = addr.clone();
    let tags = std::thread::spawn(move || stream_events(&a, "?type=tag", 5));
    // The second client reads to the run's end.
    let (infeed, text) = stream_events(&addr, "?machine=infeed", usize::MAX);
    let (tags, head) = tags.join().expect("the tag client");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/event-stream"),
        "{head}"
    );
    assert!(tags.len() >= 5, "{head}");
    for e in &tags {
        assert_eq!(e["type"], "tag", "{e}");
    }
    assert!(!infeed.is_empty(), "{text}");
    for e in &infeed {
        assert_eq!(e["machine"], "infeed", "{e}");
    }
    assert!(
        infeed.iter().any(|e| e["type"] == "tag"),
        "the infeed's tags: {text}"
    );
    assert!(
        text.contains("event: end"),
        "the stream says the run ended: {text}"
    );
    assert_eq!(
        proc.wait(Duration::from_secs(20)),
        Some(0),
        "{}",
        proc.stderr()
    );
}
