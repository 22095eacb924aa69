//! The operator page (`GET /`, docs/api.md "The page") in a real browser:
//! Debian's `chromium`, headless, against `twin demo --http 127.0.0.1:0`.
//! Products move between two loads of the page, a jam and a stuck eye show
//! on the drawing, and the page's files, `whoami` and the lines endpoints
//! answer as documented.
//!
//! The screenshots are kept under `target/test-artefacts/page/` to look
//! at (docs/img/page.png is one of them).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::{Proc, twin};

const ALICE: &str = "alice-operator-token-0123456789";
const BOB: &str = "bob-viewer-token-9876543210abc";

/// How long one chromium run may take before the test gives up on it.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the screenshots are kept: `target/test-artefacts/page/`.
fn artefacts() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp
        .parent()
        .unwrap_or(tmp)
        .join("test-artefacts")
        .join("page");
    std::fs::create_dir_all(&dir).expect("create the artefact directory");
    dir
}

/// The address from the `HTTP server listening.` line on stderr.
fn listening(proc: &mut Proc) -> String {
    for _ in 0..1500 {
        let err = proc.stderr();
        if let Some(line) = err.lines().find(|l| l.contains("HTTP server listening.")) {
            return line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("url=http://"))
                .unwrap_or_else(|| panic!("no url= in {line:?}"))
                .to_string();
        }
        assert!(proc.is_running(), "the twin exited: {err}");
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no HTTP server line: {}", proc.stderr());
}

/// One GET over a fresh connection: status, lower-case head, body.
fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the HTTP server");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send the request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Headless chromium on `url` with `what` (`--dump-dom`, or
/// `--screenshot=PATH`): its stdout. The page gets 3 s of virtual time to
/// load and poll; the run is killed after [`BROWSER_TIMEOUT`].
fn chromium(profile: &Path, what: &str, url: &str) -> String {
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1400,1000",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(what)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium (scripts/setup.sh installs Debian's chromium)");
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let end = twin::wallclock::monotonic() + BROWSER_TIMEOUT;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if twin::wallclock::monotonic() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium {what} {url} took longer than {BROWSER_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().expect("the reader thread")
}

/// Take a screenshot of `url` into `name` under the artefacts; check it is
/// a PNG of some substance.
fn screenshot(profile: &Path, url: &str, name: &str) -> PathBuf {
    let path = artefacts().join(name);
    let _ = std::fs::remove_file(&path);
    chromium(profile, &format!("--screenshot={}", path.display()), url);
    let png = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(
        png.len() > 20_000,
        "a near-empty screenshot: {} bytes",
        png.len()
    );
    path
}

/// The `data-x`/`data-y` of every product element in a dumped DOM.
fn products(dom: &str) -> Vec<(String, String)> {
    dom.split("<rect class=\"product\"")
        .skip(1)
        .filter_map(|r| {
            let tag = r.split('>').next()?;
            let attr = |name: &str| {
                let v = tag.split(&format!("{name}=\"")).nth(1)?;
                Some(v.split('"').next()?.to_string())
            };
            Some((attr("data-x")?, attr("data-y")?))
        })
        .collect()
}

/// Load the page until `cond` holds on its DOM, at most `tries` times.
fn dom_until(profile: &Path, url: &str, tries: usize, cond: impl Fn(&str) -> bool) -> String {
    let mut dom = String::new();
    for _ in 0..tries {
        dom = chromium(profile, "--dump-dom", url);
        if cond(&dom) {
            return dom;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    dom
}

#[test]
fn page_draws_the_line_with_products_that_move() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = twin();
    cmd.arg("demo")
        .args(["--http", "127.0.0.1:0", "--for", "90s", "--no-table"]);
    let mut proc = Proc::spawn(cmd);
    let url = format!("http://{}/", listening(&mut proc));
    let profile = dir.path().join("chromium");

    let first = dom_until(&profile, &url, 20, |d| !products(d).is_empty());
    let a = products(&first);
    assert!(!a.is_empty(), "no product on the drawing:\n{first}");
    // The page drew the line from the API, filled the tables and knows
    // its role.
    assert!(first.contains("id=\"line-line1\""), "{first}");
    assert_eq!(first.matches("<rect class=\"station").count(), 3, "{first}");
    for id in ["filler", "capper", "labeller"] {
        assert!(
            first.contains(&format!(">{id}</text>")),
            "station {id} not drawn"
        );
    }
    assert_eq!(first.matches("class=\"belt\"").count(), 3, "{first}");
    assert_eq!(first.matches("<line class=\"eye ").count(), 4, "{first}");
    assert!(first.contains("data-tag=\"outfeed.speed\""), "no tag table");
    assert!(first.contains("Packaging line 1"), "no plant name");
    assert!(first.contains("viewer · read-only"), "no role shown");
    assert!(first.contains("modbus:line_plc"), "no source health");
    let one = screenshot(&profile, &url, "products-1.png");

    let second = dom_until(&profile, &url, 20, |d| {
        let b = products(d);
        !b.is_empty() && b != a
    });
    let b = products(&second);
    assert!(
        !b.is_empty() && b != a,
        "the products did not move between two loads: {a:?} then {b:?}"
    );
    let two = screenshot(&profile, &url, "products-2.png");
    assert_ne!(
        std::fs::read(&one).expect("read"),
        std::fs::read(&two).expect("read"),
        "two screenshots of a moving line are the same picture"
    );

    // A link with `#trend=TAG` opens the tag's trend, drawn by uPlot.
    let trend_url = format!("{url}#trend=outfeed.motor_current");
    let dom = dom_until(&profile, &trend_url, 5, |d| d.contains("class=\"uplot"));
    assert!(
        dom.contains("class=\"uplot") && dom.contains("<canvas"),
        "no trend chart:\n{dom}"
    );
    assert!(
        dom.contains("<tr data-tag=\"outfeed.motor_current\" class=\"selected\""),
        "{dom}"
    );
    screenshot(&profile, &trend_url, "trend.png");
    drop(proc);
}

#[test]
fn page_shows_a_jam_and_a_stuck_eye_where_they_are() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The transfer jam and the entry eye stuck off of
    // plant-configs/scenarios/, both from the run's second second, so the
    // twin has called them within about fifteen.
    let scenario = dir.path().join("jam.toml");
    std::fs::write(
        &scenario,
        r#"version = 1
name = "Jam at the transfer, entry eye stuck off"

[[faults]]
kind = "jam"
line = "line1"
conveyor = "outfeed"
position = 0.35
at = "2s"
duration = "120s"

[[faults]]
kind = "eye_stuck_off"
eye = "eye_entry"
at = "2s"
duration = "120s"
"#,
    )
    .expect("write the scenario");
    let mut cmd = twin();
    cmd.arg("demo").arg("--scenario").arg(&scenario).args([
        "--http",
        "127.0.0.1:0",
        "--for",
        "90s",
        "--no-table",
    ]);
    let mut proc = Proc::spawn(cmd);
    let addr = listening(&mut proc);
    let url = format!("http://{addr}/");
    let profile = dir.path().join("chromium");

    // The API first (cheap to poll), then the page.
    let mut state = serde_json::Value::Null;
    for _ in 0..300 {
        let (code, _, body) = get(&addr, "/api/v1/lines/line1?only=state", &[]);
        if code == 503 {
            // Before the first tick.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        assert_eq!(code, 200, "{body}");
        state = json(&body)["line"]["state"].clone();
        let jammed = state["jams"].as_array().is_some_and(|j| !j.is_empty());
        let stuck = state["eyes"][0]["condition"] == "stuck_off";
        if jammed && stuck {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let jam = &state["jams"][0];
    assert_eq!(jam["after_eye"], "eye_transfer", "{state}");
    assert_eq!(jam["before_eye"], "eye_exit", "{state}");
    assert_eq!(jam["from"]["conveyor"], "outfeed", "{state}");
    assert_eq!(state["eyes"][0]["condition"], "stuck_off", "{state}");

    let dom = dom_until(&profile, &url, 10, |d| {
        d.contains("class=\"jam\"") && d.contains("eye stuck stuck_off")
    });
    assert!(
        dom.contains("<polyline class=\"jam\"") && dom.contains("data-after-eye=\"eye_transfer\""),
        "no jam on the drawing:\n{dom}"
    );
    assert!(dom.contains("JAM after eye_transfer"), "no jam label");
    assert!(
        dom.contains("eye-id stuck stuck_off") && dom.contains("eye_entry STUCK OFF"),
        "the stuck eye is not marked:\n{dom}"
    );
    screenshot(&profile, &url, "jam.png");
    drop(proc);
}

#[test]
fn page_files_whoami_and_the_lines_api() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("alice operator {ALICE}\nbob viewer {BOB}\n"),
    )
    .expect("write");
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut cmd = twin();
    cmd.arg("demo")
        .args(["--http", "127.0.0.1:0", "--http-tokens"])
        .arg(&tokens)
        .args(["--for", "60s", "--no-table"]);
    let mut proc = Proc::spawn(cmd);
    let addr = listening(&mut proc);
    let bearer = |t: &str| format!("Bearer {t}");

    // The page's files need no token (they hold no plant data) and say
    // what they are and how long to keep them.
    let (code, head, body) = get(&addr, "/", &[]);
    assert_eq!(code, 200);
    assert!(
        head.contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(head.contains("cache-control: no-cache"), "{head}");
    assert!(
        head.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    assert!(body.contains("/assets/app.js"), "{body}");
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("etag: "))
        .expect("an etag")
        .to_string();
    let (code, _, body) = get(&addr, "/", &[("If-None-Match", &etag)]);
    assert_eq!(
        (code, body.as_str()),
        (304, ""),
        "a revalidation is answered 304"
    );
    let (code, head, _) = get(&addr, "/assets/app.js", &[]);
    assert_eq!(code, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    let (code, head, body) = get(&addr, "/assets/vendor/uplot-1.6.32/uPlot.iife.min.js", &[]);
    assert_eq!(code, 200);
    assert!(head.contains("immutable"), "{head}");
    assert!(body.contains("uPlot"), "not uPlot");
    let (code, _, _) = get(&addr, "/assets/../Cargo.toml", &[]);
    assert_eq!(code, 404);

    // In a browser without a token, the page asks for one.
    let profile = dir.path().join("chromium");
    let dom = chromium(&profile, "--dump-dom", &format!("http://{addr}/"));
    assert!(
        dom.contains("<form id=\"login\">"),
        "no token form shown:\n{dom}"
    );

    // whoami: the role behind each token; none is 401.
    let (code, _, _) = get(&addr, "/api/v1/whoami", &[]);
    assert_eq!(code, 401);
    let (code, _, body) = get(
        &addr,
        "/api/v1/whoami",
        &[("Authorization", &bearer(ALICE))],
    );
    assert_eq!(code, 200);
    let me = json(&body);
    assert_eq!(
        (
            me["name"].as_str(),
            me["role"].as_str(),
            me["control"].as_bool()
        ),
        (Some("alice"), Some("operator"), Some(true)),
        "{me}"
    );
    let (_, _, body) = get(&addr, "/api/v1/whoami", &[("Authorization", &bearer(BOB))]);
    let me = json(&body);
    assert_eq!(
        (me["role"].as_str(), me["control"].as_bool()),
        (Some("viewer"), Some(false)),
        "{me}"
    );

    // The lines: geometry from the model and the config, state with
    // products once the line runs.
    let (code, _, _) = get(&addr, "/api/v1/lines", &[]);
    assert_eq!(code, 401);
    let mut lines = serde_json::Value::Null;
    for _ in 0..200 {
        let (code, _, body) = get(&addr, "/api/v1/lines", &[("Authorization", &bearer(BOB))]);
        assert_eq!(code, 200, "{body}");
        lines = json(&body);
        if lines["lines"][0]["state"]["products"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let line = &lines["lines"][0];
    assert_eq!(line["id"], "line1", "{lines}");
    let g = &line["geometry"];
    assert_eq!(g["segments"].as_array().map(Vec::len), Some(3), "{g}");
    assert_eq!(g["eyes"][3]["id"], "eye_exit", "{g}");
    assert_eq!(
        (g["eyes"][3]["x"].as_f64(), g["eyes"][3]["y"].as_f64()),
        (Some(7.0), Some(1.8))
    );
    assert_eq!(g["stations"].as_array().map(Vec::len), Some(3), "{g}");
    let p = &line["state"]["products"][0];
    assert!(
        p["x"].is_f64() && p["y"].is_f64() && p["heading"].is_f64(),
        "{p}"
    );
    let (code, _, body) = get(
        &addr,
        "/api/v1/lines/line1?only=state",
        &[("Authorization", &bearer(BOB))],
    );
    assert_eq!(code, 200);
    let one = json(&body);
    assert!(
        one["line"]["geometry"].is_null() && one["line"]["state"]["eyes"].is_array(),
        "{one}"
    );
    let (code, _, body) = get(
        &addr,
        "/api/v1/lines/line9",
        &[("Authorization", &bearer(BOB))],
    );
    assert_eq!(code, 404);
    assert!(body.contains("line1"), "the known lines are named: {body}");
    let (code, _, _) = get(
        &addr,
        "/api/v1/lines/line1?only=shapes",
        &[("Authorization", &bearer(BOB))],
    );
    assert_eq!(code, 400);
    let (code, _, body) = get(&addr, "/api/v1/sources", &[("Authorization", &bearer(BOB))]);
    assert_eq!(code, 200);
    assert!(
        json(&body)["sources"].as_array().is_some_and(|s| s
            .iter()
            .any(|x| x["name"] == "line_plc" && x["kind"] == "modbus")),
        "{body}"
    );
    drop(proc);
}

/// A headless chromium driven over the DevTools protocol on a pipe
/// (`--remote-debugging-pipe`: it reads commands on its fd 3 and writes
/// replies and events on its fd 4, each a JSON message ending in NUL), for
/// what a command line cannot do: put a token in the tab's
/// sessionStorage, as an operator typing it would, and click.
struct Browser {
    child: std::process::Child,
    commands: std::io::PipeWriter,
    messages: std::sync::mpsc::Receiver<serde_json::Value>,
    next: u64,
    session: Option<String>,
}

impl Browser {
    fn launch(profile: &Path) -> Browser {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let (cmd_r, cmd_w) = std::io::pipe().expect("a pipe");
        let (msg_r, msg_w) = std::io::pipe().expect("a pipe");
        let (r, w) = (cmd_r.as_raw_fd(), msg_w.as_raw_fd());
        let mut cmd = Command::new("chromium");
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1400,1000",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        unsafe extern "C" {
            fn dup2(old: i32, new: i32) -> i32;
        }
        // SAFETY: between fork and exec only dup2, which is
        // async-signal-safe, runs. The pipes are first copied above 4 so
        // that placing one on 3 cannot close the other; dup2 clears
        // close-on-exec on the copies chromium gets.
        unsafe {
            cmd.pre_exec(move || {
                for (from, to) in [(r, 100), (w, 101), (100, 3), (101, 4)] {
                    if dup2(from, to) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .expect("chromium (scripts/setup.sh installs Debian's chromium)");
        drop((cmd_r, msg_w));
        let (tx, messages) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut rd = std::io::BufReader::new(msg_r);
            loop {
                let mut buf = Vec::new();
                match std::io::BufRead::read_until(&mut rd, 0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                buf.pop();
                if let Ok(v) = serde_json::from_slice(&buf)
                    && tx.send(v).is_err()
                {
                    return;
                }
            }
        });
        let mut b = Browser {
            child,
            commands: cmd_w,
            messages,
            next: 0,
            session: None,
        };
        let target = b.call(
            "Target.createTarget",
            serde_json::json!({"url": "about:blank"}),
        );
        let attached = b.call(
            "Target.attachToTarget",
            serde_json::json!({"targetId": target["targetId"], "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().map(str::to_string);
        assert!(b.session.is_some(), "no session: {attached}");
        b
    }

    /// Send a command (to the page's session once there is one) and wait
    /// for its result.
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.next += 1;
        let id = self.next;
        let mut msg = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = serde_json::Value::String(s.clone());
        }
        let mut bytes = serde_json::to_vec(&msg).expect("encode");
        bytes.push(0);
        self.commands.write_all(&bytes).expect("send to chromium");
        let end = twin::wallclock::monotonic() + BROWSER_TIMEOUT;
        loop {
            let left = end.saturating_duration_since(twin::wallclock::monotonic());
            let m = self
                .messages
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if m["id"] == id {
                assert!(m["error"].is_null(), "{method}: {m}");
                return m["result"].clone();
            }
        }
    }

    /// Evaluate `js` in the page, its value.
    fn eval(&mut self, js: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        );
        r["result"]["value"].clone()
    }

    /// Evaluate `js` until it is true, at most 20 s.
    fn wait(&mut self, js: &str) {
        for _ in 0..200 {
            if self.eval(js) == serde_json::Value::Bool(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let body = self.eval("document.body.innerText");
        panic!("never true: {js}\n{body}");
    }

    /// Open `url` as the holder of `token` would: typed into the page's
    /// token form, which keeps it in sessionStorage.
    fn open_with_token(&mut self, url: &str, token: &str) {
        self.call("Page.enable", serde_json::json!({}));
        self.call("Page.navigate", serde_json::json!({"url": url}));
        self.wait("!document.getElementById('login').hidden");
        let js = format!(
            "document.getElementById('token').value = {}; document.querySelector('#login button').click(); true",
            serde_json::Value::String(token.to_string())
        );
        assert_eq!(self.eval(&js), serde_json::Value::Bool(true));
    }

    fn screenshot(&mut self, name: &str) {
        let shot = self.call(
            "Page.captureScreenshot",
            serde_json::json!({"format": "png"}),
        );
        let png = base64(shot["data"].as_str().expect("screenshot data"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        std::fs::write(artefacts().join(name), png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (what CDP sends screenshots in), without a crate for it.
fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().filter_map(val) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// `twin propose outfeed.speed VALUE` over the control socket: its id.
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

#[test]
fn page_operator_approves_with_a_token_and_a_viewer_cannot() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("plant.toml");
    std::fs::write(&cfg, crate::writeback::demo_with_outfeed("advisory")).expect("config");
    let tokens = dir.path().join("tokens");
    std::fs::write(
        &tokens,
        format!("alice operator {ALICE}\nbob viewer {BOB}\n"),
    )
    .expect("write");
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o600)).expect("chmod");
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
    let url = format!("http://{addr}/");
    for _ in 0..200 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // Propose once the twin mirrors the belt's speed as good, as an operator
    // would: before that the guard refuses a proposal on an input it has
    // not seen (on a loaded machine the first poll can come late).
    let auth = format!("Bearer {BOB}");
    let good = || {
        let (code, _, body) = get(
            &addr,
            "/api/v1/tags?machine=outfeed",
            &[("authorization", auth.as_str())],
        );
        code == 200
            && serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| {
                v["tags"].as_array().is_some_and(|t| {
                    t.iter()
                        .any(|r| r["tag"] == "outfeed.speed" && r["quality"] == "good")
                })
            })
    };
    for _ in 0..300 {
        if good() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(good(), "the twin never mirrored outfeed.speed as good");
    let id = propose(&sock, "0.62");
    let card = format!("document.querySelector('.proposal[data-id=\"{id}\"]')");

    // The viewer sees the proposal and the guard's word on it, and no
    // button to decide it.
    let mut viewer = Browser::launch(&dir.path().join("viewer"));
    viewer.open_with_token(&url, BOB);
    viewer.wait(&format!("{card} !== null"));
    assert_eq!(
        viewer.eval("document.getElementById('who').textContent"),
        "bob · viewer"
    );
    let text = viewer.eval(&format!("{card}.innerText"));
    assert!(
        text.as_str()
            .is_some_and(|t| t.contains("outfeed.speed") && t.contains("approval")),
        "{text}"
    );
    assert_eq!(
        viewer.eval(&format!("{card}.querySelector('button') === null")),
        serde_json::Value::Bool(true),
        "a viewer is shown a button"
    );
    viewer.screenshot("viewer.png");
    drop(viewer);

    // The operator approves it from the page.
    let mut op = Browser::launch(&dir.path().join("operator"));
    op.open_with_token(&url, ALICE);
    op.wait(&format!(
        "{card} !== null && {card}.querySelector('button.approve') !== null"
    ));
    assert_eq!(
        op.eval("document.getElementById('who').textContent"),
        "alice · operator"
    );
    op.screenshot("operator.png");
    assert_eq!(
        op.eval(&format!(
            "{card}.querySelector('button.approve').click(); true"
        )),
        serde_json::Value::Bool(true)
    );
    op.wait("document.getElementById('control-result').textContent.endsWith('done')");
    // The guard's decisions come back on the page's event stream (read
    // with fetch, as EventSource cannot send the token).
    op.wait("document.getElementById('events').innerText.includes('approved by alice')");
    op.wait(&format!("{card} === null"));
    op.screenshot("operator-approved.png");

    // The audit log names the token's holder.
    let approved = (0..100).any(|_| {
        let text = std::fs::read_to_string(&audit).unwrap_or_default();
        let found = text.lines().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_default();
            v["decision"] == "approved" && v["actor"]["name"] == "alice"
        });
        if !found {
            std::thread::sleep(Duration::from_millis(100));
        }
        found
    });
    assert!(approved, "no approval by alice in the audit log");
    drop(op);
    drop(proc);
}
