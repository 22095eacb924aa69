//! The routes: the read-only JSON API, `/metrics`, `/healthz`, and the
//! operators' control endpoints (docs/api.md).
//!
//! Reads come from the published snapshot only. A control request goes to
//! the live loop over the same channel as the Unix socket's
//! (`runtime::control`), with the token's name as the operator, so the
//! audit log names who acted. Every handler authenticates before it reads
//! a body, so an unauthenticated client learns nothing from parse errors.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::auth::{Role, Tokens};
use super::snapshot::Shared;
use crate::config::diagnostics::did_you_mean;
use crate::qa::expect::EVENT_TYPES;
use crate::runtime::control::{ControlOp, ControlRequest, ControlTx};

/// The largest request body taken (`413` above it): control bodies are a
/// few bytes.
pub const MAX_BODY: usize = 16 * 1024;

/// How long a control request waits for the tick loop's answer.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub shared: Shared,
    pub tokens: Arc<Tokens>,
    /// `None`: no control (a replay, or no token configured).
    pub control: Option<ControlTx>,
}

/// The server's routes over `state`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/", get(super::page::index))
        .route("/assets/*path", get(super::page::asset))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/plant", get(plant))
        .route("/api/v1/lines", get(lines))
        .route("/api/v1/lines/:id", get(line))
        .route("/api/v1/sources", get(sources))
        .route("/api/v1/tags", get(tags))
        .route("/api/v1/alarms", get(alarms))
        .route("/api/v1/proposals", get(proposals))
        .route("/api/v1/metering", get(metering))
        .route("/api/v1/events", get(events))
        .route("/api/v1/proposals/:id/approve", post(approve))
        .route("/api/v1/proposals/:id/reject", post(reject))
        .route("/api/v1/setpoints/:tag/reset", post(reset))
        .route("/api/v1/kill", post(kill))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({"ok": false, "error": msg.into()})),
    )
        .into_response()
}

/// Why a request was refused before it was looked at.
#[derive(Debug)]
enum Denied {
    /// No token is configured, and this is not a read.
    ReadOnly,
    /// No token, or one the file does not have.
    Unauthenticated,
    /// A token whose role is short of what the endpoint needs.
    Forbidden { name: String, role: Role },
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::ReadOnly => error(
                StatusCode::FORBIDDEN,
                "this server is read-only: no token is configured (--http-tokens FILE)",
            ),
            Denied::Unauthenticated => {
                let mut r = error(
                    StatusCode::UNAUTHORIZED,
                    "missing or unknown bearer token (Authorization: Bearer TOKEN)",
                );
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"twin\""),
                );
                r
            }
            Denied::Forbidden { name, role } => error(
                StatusCode::FORBIDDEN,
                format!(
                    "the token of {name:?} is a {} token; this needs an operator token",
                    role.as_str()
                ),
            ),
        }
    }
}

/// Who is asking and with which role; with no token configured, the
/// anonymous viewer.
fn identify(state: &AppState, headers: &HeaderMap) -> Result<(String, Role), Denied> {
    if state.tokens.is_empty() {
        return Ok(("anonymous".to_string(), Role::Viewer));
    }
    // The scheme's name is case-insensitive (RFC 9110 §11.1).
    let presented = headers.get(header::AUTHORIZATION).and_then(|v| {
        let v = v.as_bytes();
        (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")).then(|| &v[7..])
    });
    match presented.and_then(|p| state.tokens.find(p)) {
        Some(t) => Ok((t.name.clone(), t.role)),
        None => Err(Denied::Unauthenticated),
    }
}

/// Who is asking, if they may do what needs `need`. Without a token
/// configured every read is open (the server is on loopback) and nothing
/// else is.
fn authorize(state: &AppState, headers: &HeaderMap, need: Role) -> Result<String, Denied> {
    if state.tokens.is_empty() && need > Role::Viewer {
        return Err(Denied::ReadOnly);
    }
    let (name, role) = identify(state, headers)?;
    if role < need {
        tracing::warn!(actor = %name, role = role.as_str(), "HTTP: a token was refused a control action its role does not allow.");
        return Err(Denied::Forbidden { name, role });
    }
    Ok(name)
}

/// `GET /api/v1/whoami`: the token's name and role, and whether this run
/// takes operator actions at all, so the page shows the buttons it may.
async fn whoami(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match identify(&s, &headers) {
        Ok((name, role)) => axum::Json(json!({
            "name": name,
            "role": role.as_str(),
            "control": s.control.is_some() && role == Role::Operator,
            "read_only": s.control.is_none(),
        }))
        .into_response(),
        Err(r) => r.into_response(),
    }
}

/// `?only=state` leaves out each line's fixed geometry (the page takes it
/// once, then polls the state).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LineQuery {
    only: Option<String>,
}

fn line_json(v: &super::lines::LineView, state_only: bool) -> Value {
    if state_only {
        json!({"id": &*v.geometry.id, "state": &v.state})
    } else {
        json!({"id": &*v.geometry.id, "geometry": &*v.geometry, "state": &v.state})
    }
}

/// Whether `?only=state` was asked; `Err`: why the query is refused.
fn state_only(query: Result<Query<LineQuery>, QueryRejection>) -> Result<bool, String> {
    const TAKES: &str = "the query takes only=state";
    match query {
        Ok(Query(LineQuery { only: None })) => Ok(false),
        Ok(Query(LineQuery { only: Some(o) })) if o == "state" => Ok(true),
        Ok(Query(LineQuery { only: Some(o) })) => Err(format!("only={o:?} is not known; {TAKES}")),
        Err(e) => Err(format!("{}; {TAKES}", e.body_text())),
    }
}

/// `GET /api/v1/lines`: every modelled line.
async fn lines(
    State(s): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<LineQuery>, QueryRejection>,
) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Viewer) {
        return r.into_response();
    }
    let only = match state_only(query) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let snap = s.shared.get();
    let lines: Vec<Value> = snap.lines.iter().map(|l| line_json(l, only)).collect();
    axum::Json(json!({"tick": snap.tick, "t": time(snap.t_ns), "lines": lines})).into_response()
}

/// `GET /api/v1/lines/{id}`: one line.
async fn line(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<LineQuery>, QueryRejection>,
) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Viewer) {
        return r.into_response();
    }
    let only = match state_only(query) {
        Ok(o) => o,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let snap = s.shared.get();
    let Some(v) = snap.lines.iter().find(|l| *l.geometry.id == *id) else {
        if !snap.lines_ready && s.shared.plant.lines.iter().any(|l| l.id == id) {
            // Before the run's first tick: the models are not built yet.
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the run has not ticked yet; try again in a moment",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return r;
        }
        let known: Vec<&str> = snap.lines.iter().map(|l| &*l.geometry.id).collect();
        let msg = if known.is_empty() {
            format!("no modelled line {id:?}; this plant has no line with conveyors")
        } else {
            format!(
                "no modelled line {id:?}; the lines with conveyors are: {}",
                known.join(", ")
            )
        };
        return error(StatusCode::NOT_FOUND, msg);
    };
    axum::Json(json!({"tick": snap.tick, "t": time(snap.t_ns), "line": line_json(v, only)}))
        .into_response()
}

/// `GET /api/v1/sources`: each source's health.
async fn sources(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Viewer) {
        return r.into_response();
    }
    let rows: Vec<Value> = s
        .shared
        .health
        .snapshot()
        .into_iter()
        .map(|(name, h)| {
            json!({
                "name": name,
                "kind": h.kind,
                "up": h.up,
                "reason": h.reason.map(|r| r.as_str()),
                // Wall time of the last change; 0 before any.
                "since": (h.since_ns != 0).then(|| time(h.since_ns)),
                "ok": h.ok,
                "failures": h.failures,
                "rejected": h.rejected,
                "recoveries": h.recoveries,
                "clock_skew": h.clock_skew,
            })
        })
        .collect();
    axum::Json(json!({"sources": rows})).into_response()
}

async fn healthz(State(s): State<AppState>) -> Response {
    let snap = s.shared.get();
    axum::Json(json!({"ok": true, "tick": snap.tick, "finished": snap.finished})).into_response()
}

async fn metrics(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Viewer) {
        return r.into_response();
    }
    // Encoding every tag's series takes a while on a large plant: off the
    // runtime's one worker thread, which the sources' polls share.
    let shared = s.shared.clone();
    match tokio::task::spawn_blocking(move || super::metrics::render(&shared)).await {
        Ok(Ok(text)) => {
            ([(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)], text).into_response()
        }
        Ok(Err(_)) | Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        ),
    }
}

async fn plant(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Viewer) {
        return r.into_response();
    }
    axum::Json(json!({"plant": &*s.shared.plant})).into_response()
}

/// `?machine=ID` keeps one machine's tags, `?tag=PREFIX` those whose name
/// starts with it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TagQuery {
    machine: Option<String>,
    tag: Option<String>,
}

async fn tags(
    State(s): State<AppState>,
    headers: HeaderMap,
    // Taken as a result so that a bad query is answered after the token
    // check, like every other input.
    query: Result<Query<TagQuery>, QueryRejection>,
) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Viewer) {
        return r.into_response();
    }
    let q = match query {
        Ok(Query(q)) => q,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "{}; the query takes machine=ID and tag=PREFIX",
                    e.body_text()
                ),
            );
        }
    };
    // As for /events: a misspelt machine would answer an empty list, which
    // reads as "no tags" rather than "no such machine".
    if let Some(m) = q.machine.as_deref()
        && !s.shared.plant.machines.iter().any(|pm| pm.id == m)
    {
        let ids = s.shared.plant.machines.iter().map(|pm| pm.id.as_str());
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "{}; the query takes machine=ID and tag=PREFIX",
                unknown("machine", m, ids)
            ),
        );
    }
    let snap = s.shared.get();
    let rows: Vec<&super::snapshot::TagRow> = snap
        .tags
        .iter()
        .filter(|r| {
            q.machine
                .as_deref()
                .is_none_or(|m| r.machine.as_deref() == Some(m))
        })
        .filter(|r| q.tag.as_deref().is_none_or(|p| r.tag.starts_with(p)))
        .collect();
    axum::Json(json!({"tick": snap.tick, "t": time(snap.t_ns), "tags": rows})).into_response()
}

fn time(t_ns: i64) -> String {
    crate::twin::events::rfc3339(t_ns)
}

async fn alarms(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Viewer) {
        return r.into_response();
    }
    let snap = s.shared.get();
    axum::Json(json!({
        "tick": snap.tick,
        "t": time(snap.t_ns),
        "alarms": snap.alarms,
        "predictions": snap.predictions,
    }))
    .into_response()
}

async fn proposals(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Viewer) {
        return r.into_response();
    }
    let snap = s.shared.get();
    let guard = snap.guard.clone().unwrap_or_default();
    axum::Json(json!({
        "tick": snap.tick,
        "t": time(snap.t_ns),
        "guard": snap.guard.is_some(),
        "pending": guard.pending,
        "locked": guard.locked,
        "kill": guard.kill,
    }))
    .into_response()
}

async fn metering(State(s): State<AppState>, headers: HeaderMap) -> Response {
    if let Err(r) = authorize(&s, &headers, Role::Viewer) {
        return r.into_response();
    }
    let snap = s.shared.get();
    axum::Json(json!({"tick": snap.tick, "t": time(snap.t_ns), "models": snap.metering}))
        .into_response()
}

/// `?type=`, `?machine=`, `?tag=`: comma lists; an event passes if it
/// matches every one given.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    machine: Option<String>,
    tag: Option<String>,
}

impl EventQuery {
    fn filter(self, plant: &super::snapshot::Plant) -> Result<super::events::Filter, String> {
        fn list(key: &str, v: Option<String>) -> Result<Option<Vec<String>>, String> {
            let Some(v) = v else { return Ok(None) };
            let items: Vec<String> = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            if items.is_empty() {
                return Err(format!("{key}= needs at least one value, as in {key}=a,b"));
            }
            Ok(Some(items))
        }
        let types = list("type", self.kind)?;
        let machines = list("machine", self.machine)?;
        // A misspelt type or machine would stream nothing, silently, for
        // as long as the client waits: refuse it and say what was meant.
        for t in types.iter().flatten() {
            if !EVENT_TYPES.contains(&t.as_str()) {
                return Err(unknown("event type", t, EVENT_TYPES.iter().copied()));
            }
        }
        for m in machines.iter().flatten() {
            if !plant.machines.iter().any(|pm| pm.id == *m) {
                let ids = plant.machines.iter().map(|pm| pm.id.as_str());
                return Err(unknown("machine", m, ids));
            }
        }
        Ok(super::events::Filter {
            types,
            machines,
            tags: list("tag", self.tag)?,
        })
    }
}

/// "no event type `x`; did you mean `y`? (known: a, b, …)".
fn unknown<'a>(what: &str, got: &str, known: impl Iterator<Item = &'a str> + Clone) -> String {
    let hint = did_you_mean(got, known.clone())
        .map(|d| format!("; {d}"))
        .unwrap_or_default();
    let known: Vec<&str> = known.collect();
    format!("no {what} `{got}`{hint} (known: {})", known.join(", "))
}

/// The live event lines as server-sent events, one `data:` line an event
/// (`src/http/events.rs` has the queue and drop policy).
async fn events(
    State(s): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<EventQuery>, QueryRejection>,
) -> Response {
    use super::events::{Item, KEEP_ALIVE_SECS, Subscription};
    use axum::response::sse::{Event, KeepAlive, Sse};

    if let Err(r) = authorize(&s, &headers, Role::Viewer) {
        return r.into_response();
    }
    const TAKES: &str = "the query takes type=, machine= and tag=, each a comma list";
    let filter = match query {
        Ok(Query(q)) => match q.filter(&s.shared.plant) {
            Ok(f) => f,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("{e}; {TAKES}")),
        },
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("{}; {TAKES}", e.body_text()),
            );
        }
    };
    let sub = match s.shared.events.subscribe(filter) {
        Ok(sub) => sub,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    if s.shared.get().finished {
        // Nothing will come: say so instead of holding the stream open.
        s.shared.events.close();
    }
    let stream = futures_util::stream::unfold(
        Some(sub),
        |state: Option<Subscription>| async move {
            let mut sub = state?;
            let ev = match sub.rx.recv().await {
            Some(Item::Line(l)) => return Some((Ok::<_, std::convert::Infallible>(Event::default().data(&*l)), Some(sub))),
            Some(Item::End) => Event::default().event("end").data("the run has ended"),
            None if sub.was_dropped() => Event::default().event("dropped").data(format!(
                "this client fell {} events behind the run and was dropped; reconnect to follow it again",
                super::events::QUEUE_LINES
            )),
            None => return None,
        };
            Some((Ok(ev), None))
        },
    );
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(KEEP_ALIVE_SECS)))
        .into_response()
}

async fn approve(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    decide(&s, &headers, &id, |id| ControlOp::Approve { id }).await
}

async fn reject(State(s): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    decide(&s, &headers, &id, |id| ControlOp::Reject { id }).await
}

/// An operator's decision on proposal `id` (from the path), as `op`.
async fn decide(s: &AppState, headers: &HeaderMap, id: &str, op: fn(u64) -> ControlOp) -> Response {
    let who = match authorize(s, headers, Role::Operator) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    match id.parse() {
        Ok(id) => control(s, who, op(id)).await,
        Err(_) => error(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not a proposal id"),
        ),
    }
}

async fn reset(State(s): State<AppState>, headers: HeaderMap, Path(tag): Path<String>) -> Response {
    let who = match authorize(&s, &headers, Role::Operator) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    control(&s, who, ControlOp::Reset { tag }).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KillBody {
    on: bool,
}

async fn kill(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let who = match authorize(&s, &headers, Role::Operator) {
        Ok(w) => w,
        Err(r) => return r.into_response(),
    };
    match serde_json::from_slice::<KillBody>(&body) {
        Ok(k) => control(&s, who, ControlOp::Kill { on: k.on }).await,
        Err(e) => error(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"on\": true}} or {{\"on\": false}}: {e}"),
        ),
    }
}

/// Send `op` to the tick loop as `operator`; its reply, with 200 when it
/// was taken and 409 when the guard refused it.
async fn control(s: &AppState, operator: String, op: ControlOp) -> Response {
    let Some(tx) = &s.control else {
        return error(
            StatusCode::CONFLICT,
            "this run takes no operator commands (a replay has no plant to act on)",
        );
    };
    tracing::info!(%operator, ?op, "HTTP control request.");
    let (reply, rx) = oneshot::channel();
    let req = ControlRequest {
        op,
        operator,
        reply,
    };
    if tx.send(req).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "the twin is stopping");
    }
    let reply: Value = match tokio::time::timeout(CONTROL_TIMEOUT, rx).await {
        Ok(Ok(v)) => v,
        Ok(Err(_)) => return error(StatusCode::SERVICE_UNAVAILABLE, "the twin is stopping"),
        Err(_) => {
            return error(
                StatusCode::GATEWAY_TIMEOUT,
                "the tick loop did not answer within 10 s",
            );
        }
    };
    let status = if reply["ok"] == json!(true) {
        StatusCode::OK
    } else {
        StatusCode::CONFLICT
    };
    (status, axum::Json(reply)).into_response()
}

pub(super) async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint (docs/api.md)")
}
