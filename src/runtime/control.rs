//! Operator commands to a running twin: propose, approve, reject, reset,
//! kill, list pending (docs/guard.md, "Operator control").
//!
//! A command travels as a [`ControlRequest`] on a channel to the live
//! loop, which applies it between ticks on the tick thread (the guard's
//! API queues it for the next tick) and answers with one JSON reply. The
//! Unix socket (`twin run --control PATH`) is one sender of such requests;
//! a test can be another. Who the operator is comes with the request: the
//! socket takes it from the peer's uid, never from what the peer says.

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

use crate::guard::{self, GuardError};
use crate::twin::TwinCore;

/// What an operator asks. The JSON form is one line:
/// `{"op":"approve","id":3}`, `{"op":"reject","id":3}`,
/// `{"op":"reset","tag":"line1.speed"}`, `{"op":"kill","on":true}`,
/// `{"op":"pending"}`, `{"op":"propose","tag":"line1.speed","value":0.5}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ControlOp {
    Propose { tag: String, value: f64 },
    Approve { id: u64 },
    Reject { id: u64 },
    Reset { tag: String },
    Kill { on: bool },
    Pending,
}

/// One command and where its reply goes.
#[derive(Debug)]
pub struct ControlRequest {
    pub op: ControlOp,
    pub operator: String,
    pub reply: oneshot::Sender<Value>,
}

pub type ControlTx = mpsc::Sender<ControlRequest>;
pub type ControlRx = mpsc::Receiver<ControlRequest>;

/// A channel for control requests (a few in flight at most: an operator's
/// pace).
pub fn channel() -> (ControlTx, ControlRx) {
    mpsc::channel(16)
}

/// Apply `op` to the core's guard; the reply is `{"ok":true,...}` or
/// `{"ok":false,"error":"..."}`.
pub fn apply(core: &mut TwinCore, op: &ControlOp, operator: &str) -> Value {
    let Some(mut st) = guard::state_mut(core) else {
        return json!({"ok": false, "error": "this twin has no guard: every [[setpoints]] entry is off"});
    };
    let done = |r: Result<Value, GuardError>| match r {
        Ok(v) => v,
        Err(e) => json!({"ok": false, "error": e.to_string()}),
    };
    match op {
        ControlOp::Propose { tag, value } => done(
            st.propose_operator(tag, *value, operator)
                .map(|id| json!({"ok": true, "id": id})),
        ),
        ControlOp::Approve { id } => done(st.approve(*id, operator).map(|()| json!({"ok": true}))),
        ControlOp::Reject { id } => done(st.reject(*id, operator).map(|()| json!({"ok": true}))),
        ControlOp::Reset { tag } => done(st.reset(tag, operator).map(|()| json!({"ok": true}))),
        ControlOp::Kill { on } => done(
            st.kill(*on, operator)
                .map(|()| json!({"ok": true, "kill": on})),
        ),
        ControlOp::Pending => {
            let pending: Vec<Value> = st
                .pending()
                .iter()
                .map(|p| {
                    json!({
                        "id": p.proposal.id,
                        "tag": st.setpoint_name(p.setpoint),
                        "value": p.value,
                        "expires": crate::twin::events::rfc3339(p.expires_ns),
                    })
                })
                .collect();
            let locked: Vec<Value> = st
                .locked()
                .into_iter()
                .map(|(t, why)| json!({"tag": t, "why": why}))
                .collect();
            json!({"ok": true, "pending": pending, "locked": locked})
        }
    }
}

/// The longest request line taken; a longer one is refused.
pub const MAX_REQUEST: usize = 4096;

/// Why the control socket cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("control socket {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "control socket {path}: its directory {dir} {why}; put the socket in a directory only you can write (e.g. $XDG_RUNTIME_DIR)"
    )]
    UnsafeDir {
        path: std::path::PathBuf,
        dir: std::path::PathBuf,
        why: &'static str,
    },
    #[error("control socket {path}: another process is serving it")]
    InUse { path: std::path::PathBuf },
    #[error("control socket {path}: it exists and is not a socket; refusing to replace it")]
    NotASocket { path: std::path::PathBuf },
}

/// Serve the control socket at `path` until `shutdown`: one JSON request
/// line per connection, one JSON reply line, sent to the live loop on `tx`.
///
/// Permissions (docs/guard.md, "Operator control"): the socket is mode
/// 0600 in a directory that no one else can write; only a peer whose uid
/// (SO_PEERCRED) is the socket's owner, or root, is served. The operator
/// named in the audit log is that uid's user name.
pub fn serve(
    path: &std::path::Path,
    tx: ControlTx,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), SocketError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let io = |source| SocketError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let dir_meta = std::fs::metadata(&dir).map_err(io)?;
    // A directory others can write lets them swap the socket for their own
    // (unless sticky, where only owners may remove entries).
    if dir_meta.mode() & 0o022 != 0 && dir_meta.mode() & 0o1000 == 0 {
        return Err(SocketError::UnsafeDir {
            path: path.to_path_buf(),
            dir,
            why: "can be written by other users",
        });
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse {
                    path: path.to_path_buf(),
                });
            }
            // A socket left by a twin that did not stop cleanly.
            std::fs::remove_file(path).map_err(io)?;
        }
        Ok(_) => {
            return Err(SocketError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Err(_) => {}
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    let owner = std::fs::metadata(path).map_err(io)?.uid();
    if dir_meta.uid() != owner && dir_meta.uid() != 0 {
        let _ = std::fs::remove_file(path);
        return Err(SocketError::UnsafeDir {
            path: path.to_path_buf(),
            dir,
            why: "belongs to another user",
        });
    }
    tracing::info!(path = %path.display(), "Control socket listening (mode 0600; owner and root only).");
    let path = path.to_path_buf();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                conn = listener.accept() => match conn {
                    Ok((stream, _)) => {
                        tokio::spawn(handle(stream, owner, tx.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Control socket accept failed.");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                },
            }
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

/// One connection: check the peer, read a line, answer a line.
async fn handle(stream: tokio::net::UnixStream, owner: u32, tx: ControlTx) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let uid = stream.peer_cred().map(|c| c.uid()).ok();
    let (read, mut write) = stream.into_split();
    let reply = match uid {
        Some(uid) if uid == owner || uid == 0 => {
            let mut line = String::new();
            let mut r = BufReader::new(read).take(MAX_REQUEST as u64 + 1);
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(10), r.read_line(&mut line))
                    .await;
            match read {
                Ok(Ok(n)) if n > MAX_REQUEST => {
                    json!({"ok": false, "error": format!("request longer than {MAX_REQUEST} bytes")})
                }
                Ok(Ok(_)) => match serde_json::from_str::<ControlOp>(line.trim()) {
                    Ok(op) => {
                        let operator = user_name(uid);
                        tracing::info!(%operator, ?op, "Control request.");
                        let (reply, rx) = oneshot::channel();
                        let req = ControlRequest {
                            op,
                            operator,
                            reply,
                        };
                        match tx.send(req).await {
                            Ok(()) => rx.await.unwrap_or_else(
                                |_| json!({"ok": false, "error": "the twin is stopping"}),
                            ),
                            Err(_) => json!({"ok": false, "error": "the twin is stopping"}),
                        }
                    }
                    Err(e) => json!({"ok": false, "error": format!("bad request: {e}")}),
                },
                Ok(Err(e)) => {
                    json!({"ok": false, "error": format!("cannot read the request: {e}")})
                }
                Err(_) => json!({"ok": false, "error": "no request line within 10 s"}),
            }
        }
        other => {
            tracing::warn!(uid = ?other, owner, "Control socket: refused a peer that is not the socket's owner or root.");
            json!({"ok": false, "error": "permission denied: only the socket's owner or root may control this twin"})
        }
    };
    let mut line = reply.to_string();
    line.push('\n');
    let _ = write.write_all(line.as_bytes()).await;
    let _ = write.shutdown().await;
}

/// The user name of `uid` from /etc/passwd, else `uid:N`: the operator's
/// name in the audit log comes from the kernel's word on the peer, never
/// from the request.
pub fn user_name(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let mut f = l.split(':');
                let name = f.next()?;
                let id: u32 = f.nth(1)?.parse().ok()?;
                (id == uid && !name.is_empty()).then(|| name.to_string())
            })
        })
        .unwrap_or_else(|| format!("uid:{uid}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_as_documented_and_nothing_else() {
        let p = |s: &str| serde_json::from_str::<ControlOp>(s);
        assert_eq!(
            p(r#"{"op":"approve","id":3}"#).ok(),
            Some(ControlOp::Approve { id: 3 })
        );
        assert_eq!(
            p(r#"{"op":"kill","on":false}"#).ok(),
            Some(ControlOp::Kill { on: false })
        );
        assert_eq!(p(r#"{"op":"pending"}"#).ok(), Some(ControlOp::Pending));
        assert_eq!(
            p(r#"{"op":"propose","tag":"a.b","value":-1.5}"#).ok(),
            Some(ControlOp::Propose {
                tag: "a.b".into(),
                value: -1.5
            })
        );
        // The operator is never the request's to say.
        assert!(p(r#"{"op":"approve","id":3,"operator":"root"}"#).is_err());
        assert!(p(r#"{"op":"approve","id":-1}"#).is_err());
        assert!(p(r#"{"op":"write","tag":"a"}"#).is_err());
    }

    #[test]
    fn user_names_fall_back_to_the_uid() {
        assert_eq!(user_name(u32::MAX - 7), format!("uid:{}", u32::MAX - 7));
    }
}
