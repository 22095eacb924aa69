//! Who may use the HTTP surface: bearer tokens from a file, two roles.
//!
//! The file (`--http-tokens FILE` or `TWIN_HTTP_TOKENS_FILE`) has one token
//! a line, `name role token`, `#` starting a comment. Tokens never come from
//! the command line, where `ps` shows them to every user. Like ssh with a
//! private key, the file is refused when its group or others may read it.
//! The token's name is the actor the audit log records for what it does.

use std::path::{Path, PathBuf};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read the API and `/metrics`.
    Viewer,
    /// Also approve, reject, reset a read-back lock, toggle the kill switch.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// The shortest token taken: 16 characters, so that a token cannot be
/// guessed over the network in any useful time.
pub const MIN_TOKEN_LEN: usize = 16;

/// One token of the file.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub role: Role,
    secret: Vec<u8>,
}

// Never print a secret, not even in a debug log.
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The tokens of a run; empty: no token configured (loopback, read-only).
#[derive(Debug, Clone, Default)]
pub struct Tokens(Vec<Token>);

/// Why the token file cannot be used. Each names the file, and the line
/// where a line is at fault.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("HTTP token file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "HTTP token file {path}: it can be read by other users (mode {mode:04o}); tokens must be private: `chmod 600 {path}`"
    )]
    Readable { path: PathBuf, mode: u32 },
    #[error("{path}:{line}: {detail}")]
    Line {
        path: PathBuf,
        line: usize,
        detail: String,
    },
    #[error(
        "HTTP token file {path}: no token in it; add lines `name role token` (role viewer or operator)"
    )]
    Empty { path: PathBuf },
}

impl Tokens {
    /// Read and check the token file at `path`.
    pub fn load(path: &Path) -> Result<Tokens, TokenFileError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| TokenFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenFileError::Readable {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Tokens::parse(path, &text)
    }

    /// Parse the text of a token file (`path` is for the errors).
    pub fn parse(path: &Path, text: &str) -> Result<Tokens, TokenFileError> {
        let at = |line: usize, detail: String| TokenFileError::Line {
            path: path.to_path_buf(),
            line,
            detail,
        };
        let mut tokens: Vec<Token> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, role, secret] = fields[..] else {
                return Err(at(
                    n,
                    format!(
                        "expected `name role token` (3 fields), found {}",
                        fields.len()
                    ),
                ));
            };
            let role = match role {
                "viewer" => Role::Viewer,
                "operator" => Role::Operator,
                other => {
                    return Err(at(
                        n,
                        format!("unknown role {other:?}; expected viewer or operator"),
                    ));
                }
            };
            if secret.len() < MIN_TOKEN_LEN {
                return Err(at(
                    n,
                    format!(
                        "the token of {name:?} is {} characters long; tokens must have at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 24`)",
                        secret.len()
                    ),
                ));
            }
            // The name is the audit log's actor: plain, short, unambiguous.
            let plain = |c: char| c.is_ascii_alphanumeric() || "._@-".contains(c);
            if name.len() > 64 || !name.chars().all(plain) {
                return Err(at(
                    n,
                    format!("the name {name:?} must be at most 64 letters, digits or `._@-`"),
                ));
            }
            if tokens.iter().any(|t| t.name == name) {
                return Err(at(
                    n,
                    format!(
                        "{name:?} is named twice; names are the audit log's actors and must be unique"
                    ),
                ));
            }
            if tokens.iter().any(|t| t.secret == secret.as_bytes()) {
                return Err(at(
                    n,
                    format!(
                        "the token of {name:?} is also another name's; each name needs its own token"
                    ),
                ));
            }
            tokens.push(Token {
                name: name.to_string(),
                role,
                secret: secret.as_bytes().to_vec(),
            });
        }
        if tokens.is_empty() {
            return Err(TokenFileError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Tokens(tokens))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The token whose secret is `presented`, compared in constant time
    /// over every token, so the time taken says nothing about which bytes
    /// (or which token) matched.
    pub fn find(&self, presented: &[u8]) -> Option<&Token> {
        let mut found = None;
        for t in &self.0 {
            if constant_time_eq(&t.secret, presented) {
                found = Some(t);
            }
        }
        found
    }
}

/// Equality whose time depends on the lengths only, never on the bytes.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold back into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123";
    const B: &str = "fedcba9876543210fedc";

    #[test]
    fn a_token_file_gives_names_and_roles() {
        let text = format!("# the operators\nalice operator {A}  # on shift\n\nbob viewer {B}\n");
        let t = Tokens::parse(Path::new("t"), &text).expect("valid");
        assert_eq!(t.len(), 2);
        let a = t.find(A.as_bytes()).expect("alice's token");
        assert_eq!((a.name.as_str(), a.role), ("alice", Role::Operator));
        assert_eq!(t.find(B.as_bytes()).map(|t| t.role), Some(Role::Viewer));
        assert!(t.find(b"0123456789abcdef012").is_none());
        assert!(t.find(b"").is_none());
        assert!(
            !format!("{a:?}").contains(A),
            "a debug print shows no secret"
        );
    }

    #[test]
    fn bad_lines_are_located() {
        let err = |text: &str| {
            Tokens::parse(Path::new("tokens.txt"), text)
                .expect_err("invalid")
                .to_string()
        };
        let e = err(&format!("alice operator {A}\nbob admin {B}\n"));
        assert!(e.starts_with("tokens.txt:2: unknown role \"admin\""), "{e}");
        let e = err("alice operator short\n");
        assert!(
            e.starts_with("tokens.txt:1: the token of \"alice\" is 5 characters"),
            "{e}"
        );
        let e = err(&format!("# c\nalice {A}\n"));
        assert!(
            e.starts_with("tokens.txt:2: expected `name role token`"),
            "{e}"
        );
        let e = err(&format!("alice operator {A}\nalice viewer {B}\n"));
        assert!(
            e.starts_with("tokens.txt:2:") && e.contains("named twice"),
            "{e}"
        );
        let e = err(&format!("alice operator {A}\nbob viewer {A}\n"));
        assert!(
            e.starts_with("tokens.txt:2:") && e.contains("own token"),
            "{e}"
        );
        let e = err(&format!("al/ice operator {A}\n"));
        assert!(e.starts_with("tokens.txt:1: the name \"al/ice\""), "{e}");
        let e = err("# nothing\n");
        assert!(e.contains("no token in it"), "{e}");
    }

    #[test]
    fn a_token_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tokens");
        std::fs::write(&path, format!("alice operator {A}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = Tokens::load(&path).expect_err("readable by others");
        assert!(
            matches!(e, TokenFileError::Readable { mode: 0o644, .. })
                && e.to_string().contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(Tokens::load(&path).expect("private").len(), 1);
        let e = Tokens::load(&dir.path().join("missing")).expect_err("missing");
        assert!(matches!(e, TokenFileError::Io { .. }), "{e}");
    }
}
