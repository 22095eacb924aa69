//! `twin approve | reject | reset | kill | pending | propose`: an operator's
//! commands to a running twin over its control socket (`--control PATH` on
//! `twin run` / `twin demo`; docs/guard.md, "Operator control").
//!
//! One JSON request line out, one JSON reply line back, printed on stdout.
//! Exit 0 when the twin took the command, 1 when it refused it or could
//! not be reached.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use super::EXIT_FAILURE;
use super::output::{Stdout, error};

/// Where the running twin listens.
#[derive(Debug, Clone, Args)]
pub struct SocketArg {
    /// The running twin's control socket (its --control PATH).
    #[arg(long, env = "TWIN_CONTROL", value_name = "PATH")]
    pub control: PathBuf,
}

#[derive(Debug, Args)]
pub struct IdArgs {
    /// The pending proposal's id (`twin pending` lists them).
    pub id: u64,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// The locked setpoint's tag.
    pub tag: String,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Lift the CLI's kill switch instead (the config's and the kill tag's
    /// still apply).
    #[arg(long)]
    pub off: bool,
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct PendingArgs {
    #[command(flatten)]
    pub socket: SocketArg,
}

#[derive(Debug, Args)]
pub struct ProposeArgs {
    /// The setpoint's tag.
    pub tag: String,
    /// The value, in engineering units.
    #[arg(allow_negative_numbers = true)]
    pub value: f64,
    #[command(flatten)]
    pub socket: SocketArg,
}

/// Send `request` and print the reply; the exit code says whether the twin
/// took it.
pub fn send(socket: &SocketArg, request: Value) -> i32 {
    match exchange(&socket.control, &request) {
        Ok(reply) => {
            let mut out = Stdout::new();
            out.line(&reply);
            let code = if reply["ok"] == true { 0 } else { EXIT_FAILURE };
            out.exit_code(code)
        }
        Err(msg) => {
            error(msg);
            EXIT_FAILURE
        }
    }
}

pub fn approve(a: &IdArgs) -> i32 {
    send(&a.socket, json!({"op": "approve", "id": a.id}))
}

pub fn reject(a: &IdArgs) -> i32 {
    send(&a.socket, json!({"op": "reject", "id": a.id}))
}

pub fn reset(a: &ResetArgs) -> i32 {
    send(&a.socket, json!({"op": "reset", "tag": a.tag}))
}

pub fn kill(a: &KillArgs) -> i32 {
    send(&a.socket, json!({"op": "kill", "on": !a.off}))
}

pub fn pending(a: &PendingArgs) -> i32 {
    send(&a.socket, json!({"op": "pending"}))
}

pub fn propose(a: &ProposeArgs) -> i32 {
    if !a.value.is_finite() {
        error(format!("{} is not a finite number", a.value));
        return EXIT_FAILURE;
    }
    send(
        &a.socket,
        json!({"op": "propose", "tag": a.tag, "value": a.value}),
    )
}

/// One request, one reply. A socket that others could reach (any group or
/// other permission bit) is refused before connecting: the twin creates it
/// 0600, so such a socket is not one it made, or was tampered with.
fn exchange(path: &Path, request: &Value) -> Result<Value, String> {
    let shown = path.display();
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        format!("control socket {shown}: {e} (is the twin running with --control {shown}?)")
    })?;
    if !meta.file_type().is_socket() {
        return Err(format!("control socket {shown}: not a socket"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "control socket {shown}: mode {mode:o} lets other users connect; refusing it (the twin creates it 0600)"
        ));
    }
    let mut stream =
        UnixStream::connect(path).map_err(|e| format!("control socket {shown}: {e}"))?;
    let timeout = Some(Duration::from_secs(10));
    stream
        .set_read_timeout(timeout)
        .and_then(|()| stream.set_write_timeout(timeout))
        .map_err(|e| format!("control socket {shown}: {e}"))?;
    let mut line = request.to_string();
    line.push('\n');
    stream
        .write_all(line.as_bytes())
        .map_err(|e| format!("control socket {shown}: sending the request: {e}"))?;
    let mut reply = String::new();
    // One reply line, at most 1 MiB.
    BufReader::new((&stream).take(1 << 20))
        .read_line(&mut reply)
        .map_err(|e| format!("control socket {shown}: reading the reply: {e}"))?;
    serde_json::from_str(reply.trim())
        .map_err(|e| format!("control socket {shown}: the reply is not JSON ({e}): {reply}"))
}
