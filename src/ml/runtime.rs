//! ONNX Runtime in the process: finding the shared library, the one
//! [`Environment`], and the sessions built from it.
//!
//! The library is opened at run time (`ort`'s `load-dynamic`), only when a
//! config has models: a plant without `[[models]]` never needs it. It is
//! looked for in this order, and the first place that names a file wins
//! (docs/ml.md, "Finding the runtime"):
//! 1. `ORT_DYLIB_PATH`, when set and not empty;
//! 2. `[ml] runtime` in the config, relative to the config file's folder;
//! 3. the project venv that `scripts/setup.sh` fills, found as
//!    `.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*`
//!    in the current folder, the config file's folder, the executable's
//!    folder, or any folder above one of them (the way git finds `.git`).
//!
//! A place named explicitly (1 or 2) that holds no usable library is an
//! error, never a reason to fall through to the next: a setting the user
//! made is never ignored in silence.
//!
//! Sessions run on the calling thread (one intra-op thread, no inter-op
//! pool, sequential execution) with a fixed optimisation level and ORT's
//! deterministic kernels (docs/ml.md, "Runtime and threads").

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ort::environment::Environment;
use ort::logging::LogLevel;
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

/// Oldest ONNX Runtime whose C API `ort` is built against here (its `api-24`
/// feature). The PyPI wheel setup.sh installs is 1.31.
pub const MIN_RUNTIME_MINOR: u32 = 24;

/// The file name the venv's wheel ships, as a glob: `libonnxruntime.so.1.31.0`.
const VENV_LIBRARY: &str = "onnxruntime/capi/libonnxruntime.so*";

/// How a user installs the library; said by every "not found" error.
const HOW_TO_INSTALL: &str = "install it into the project venv with `make setup-build` \
     (that is `bash scripts/setup.sh --build-only`; `make setup` and `make demo` do it too), \
     or set ORT_DYLIB_PATH to a libonnxruntime.so of version 1.24 or newer";

/// Where the library in use was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibrarySource {
    /// The `ORT_DYLIB_PATH` environment variable.
    Env,
    /// `[ml] runtime` in the config.
    Config,
    /// The project venv's onnxruntime wheel.
    Venv,
}

impl fmt::Display for LibrarySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LibrarySource::Env => "ORT_DYLIB_PATH",
            LibrarySource::Config => "[ml] runtime",
            LibrarySource::Venv => "the project venv",
        })
    }
}

/// A library file picked by [`find_library`], not yet opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundLibrary {
    pub path: PathBuf,
    pub source: LibrarySource,
}

/// Why the runtime could not be had. Each message says where the twin
/// looked and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "the ONNX Runtime library was not found, and the config has models to run; \
         looked in: {looked}; {HOW_TO_INSTALL}",
        looked = looked.join("; ")
    )]
    NotFound { looked: Vec<String> },
    #[error("{origin} names `{}`, which is not a file; {hint}", path.display(), hint = fix_hint(*origin))]
    Missing {
        path: PathBuf,
        origin: LibrarySource,
    },
    #[error(
        "`{}` (from {origin}) is not a usable ONNX Runtime library: {reason}; {hint}",
        path.display(),
        hint = fix_hint(*origin)
    )]
    Unusable {
        path: PathBuf,
        origin: LibrarySource,
        reason: String,
    },
    #[error("ONNX Runtime at `{}` could not start: {reason}", path.display())]
    Environment { path: PathBuf, reason: String },
}

impl RuntimeError {
    /// Where the offending path came from, if one did: a [`LibrarySource::Config`]
    /// error belongs to the config's `[ml] runtime` key.
    pub fn source_of_path(&self) -> Option<LibrarySource> {
        match self {
            RuntimeError::Missing { origin, .. } | RuntimeError::Unusable { origin, .. } => {
                Some(*origin)
            }
            RuntimeError::NotFound { .. } | RuntimeError::Environment { .. } => None,
        }
    }
}

fn fix_hint(source: LibrarySource) -> String {
    match source {
        LibrarySource::Env => {
            format!("unset ORT_DYLIB_PATH to use the project venv's, or {HOW_TO_INSTALL}")
        }
        LibrarySource::Config => format!("fix or remove `[ml] runtime`, or {HOW_TO_INSTALL}"),
        LibrarySource::Venv => format!("reinstall it: delete .venv and {HOW_TO_INSTALL}"),
    }
}

/// What the library search reads from outside, gathered once so that the
/// search itself is a pure function (and testable without touching the
/// process's environment).
#[derive(Debug, Clone, Default)]
pub struct SearchInputs {
    /// `ORT_DYLIB_PATH`.
    pub env_path: Option<PathBuf>,
    /// `[ml] runtime`, as written in the config.
    pub config_runtime: Option<PathBuf>,
    /// The config file's folder: what `[ml] runtime` is relative to, and a
    /// start of the venv search.
    pub config_dir: Option<PathBuf>,
    /// The current folder.
    pub cwd: Option<PathBuf>,
    /// The running executable's folder.
    pub exe_dir: Option<PathBuf>,
}

impl SearchInputs {
    /// The inputs as this process has them.
    pub fn from_process(config_runtime: Option<&Path>, config_dir: Option<&Path>) -> Self {
        let cwd = std::env::current_dir().ok();
        let absolute = |p: &Path| match &cwd {
            Some(c) if p.is_relative() => c.join(p),
            _ => p.to_path_buf(),
        };
        SearchInputs {
            env_path: std::env::var_os("ORT_DYLIB_PATH")
                .filter(|v| !v.is_empty())
                .map(|v| absolute(Path::new(&v))),
            config_runtime: config_runtime.map(Path::to_path_buf),
            config_dir: config_dir.map(absolute),
            exe_dir: std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(Path::to_path_buf)),
            cwd,
        }
    }

    /// The folders the venv search starts from, nearest first, without
    /// repeats.
    fn venv_starts(&self) -> Vec<&Path> {
        let mut starts: Vec<&Path> = Vec::new();
        for p in [&self.cwd, &self.config_dir, &self.exe_dir]
            .into_iter()
            .flatten()
        {
            if !starts.contains(&p.as_path()) {
                starts.push(p);
            }
        }
        starts
    }
}

/// Pick the library file, in the order of the module docs. Touches the
/// file system only to look; opens nothing.
pub fn find_library(inputs: &SearchInputs) -> Result<FoundLibrary, RuntimeError> {
    let explicit = |path: PathBuf, source| {
        if path.is_file() {
            Ok(FoundLibrary { path, source })
        } else {
            Err(RuntimeError::Missing {
                path,
                origin: source,
            })
        }
    };
    if let Some(p) = &inputs.env_path {
        return explicit(p.clone(), LibrarySource::Env);
    }
    if let Some(p) = &inputs.config_runtime {
        let p = match &inputs.config_dir {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.clone(),
        };
        return explicit(p, LibrarySource::Config);
    }
    let starts = inputs.venv_starts();
    let mut seen: Vec<&Path> = Vec::new();
    for start in &starts {
        for dir in start.ancestors() {
            if seen.contains(&dir) {
                continue;
            }
            seen.push(dir);
            if let Some(path) = venv_library(dir) {
                return Ok(FoundLibrary {
                    path,
                    source: LibrarySource::Venv,
                });
            }
        }
    }
    let starts: Vec<String> = starts
        .iter()
        .map(|s| format!("`{}`", s.display()))
        .collect();
    Err(RuntimeError::NotFound {
        looked: vec![
            "ORT_DYLIB_PATH (not set)".into(),
            // Set, it would have returned above.
            "the config's `[ml] runtime` (not set)".into(),
            format!(
                "the project venv, `.venv/lib/python3*/site-packages/{VENV_LIBRARY}`, in {} and every folder above {}",
                join_or(&starts),
                if starts.len() == 1 { "it" } else { "them" }
            ),
        ],
    })
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => "no folder (none could be determined)".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// The onnxruntime wheel's library in `dir/.venv`, if there is one. Of
/// several Python versions or library names, the last in name order wins,
/// so the pick does not depend on the order the folder lists them in.
fn venv_library(dir: &Path) -> Option<PathBuf> {
    let lib = dir.join(".venv").join("lib");
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("python3"))
        .map(|e| e.path())
        .collect();
    pythons.sort();
    pythons.iter().rev().find_map(|py| {
        let capi = py.join("site-packages/onnxruntime/capi");
        let mut libs: Vec<PathBuf> = std::fs::read_dir(&capi)
            .ok()?
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("libonnxruntime.so")
            })
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect();
        libs.sort();
        libs.pop()
    })
}

/// The process's ONNX Runtime: the library it was loaded from and its one
/// [`Environment`]. ORT allows one environment per process, and the library
/// cannot be unloaded, so this lives as long as the process.
#[derive(Debug)]
pub struct Runtime {
    env: Environment,
    library: FoundLibrary,
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Serialises the first load, so two threads asking at once load once.
static LOADING: Mutex<()> = Mutex::new(());

impl Runtime {
    /// The process's runtime, loading the library on first use. Later calls
    /// return the runtime already loaded, whatever they pass: the process
    /// has one library. A failed load leaves nothing behind, so a later call
    /// may try again (after the user fixed the path, say).
    pub fn get(inputs: &SearchInputs) -> Result<&'static Runtime, RuntimeError> {
        if let Some(rt) = RUNTIME.get() {
            return Ok(rt);
        }
        let _one_at_a_time = LOADING.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rt) = RUNTIME.get() {
            return Ok(rt);
        }
        let library = find_library(inputs)?;
        // `ort` panics (rather than erring) on a library that passes its
        // version check but then refuses the C API version it asks for; a
        // bad file named by the user must never bring the twin down.
        let env = std::panic::catch_unwind(|| open(&library)).unwrap_or_else(|_| {
            Err(RuntimeError::Unusable {
                path: library.path.clone(),
                origin: library.source,
                reason: format!("it does not provide the C API version {MIN_RUNTIME_MINOR}"),
            })
        })?;
        Ok(RUNTIME.get_or_init(|| Runtime { env, library }))
    }

    /// The runtime if a model has already loaded it.
    pub fn loaded() -> Option<&'static Runtime> {
        RUNTIME.get()
    }

    pub fn library(&self) -> &FoundLibrary {
        &self.library
    }

    /// A session builder with the twin's options (module docs).
    pub fn session_builder(&self) -> Result<SessionBuilder, ort::Error> {
        Ok(Session::builder(&self.env)?
            // One intra-op thread means ORT keeps no pool: the run happens
            // on the caller's thread, which the stage chooses, and never
            // competes with the tick or the I/O threads behind its back.
            .with_intra_threads(1)?
            .with_inter_threads(1)?
            .with_parallel_execution(false)?
            .with_intra_op_spinning(false)?
            .with_inter_op_spinning(false)?
            // `All` (ORT_ENABLE_ALL), what Python onnxruntime uses too; in this
            // `ort`, `Level3` is only the layout level below it.
            .with_optimization_level(GraphOptimizationLevel::All)?
            .with_deterministic_compute(true)?
            // Memory patterns are cached per input shape, and the batch
            // size changes from run to run; plain allocation keeps a
            // session's memory flat.
            .with_memory_pattern(false)?)
    }
}

/// Open the library and create the environment. `ort` refuses a file that
/// does not load, lacks ORT's entry point, or is older than the API it is
/// built for, each with an error (not a panic) as long as the path is
/// absolute, which [`SearchInputs`] makes it.
fn open(lib: &FoundLibrary) -> Result<Environment, RuntimeError> {
    let path = std::path::absolute(&lib.path).unwrap_or_else(|_| lib.path.clone());
    let unusable = |reason: String| RuntimeError::Unusable {
        path: path.clone(),
        origin: lib.source,
        reason,
    };
    let builder = ort::init_from(&path).map_err(|e| unusable(e.to_string()))?;
    let env = builder
        .with_name("twin")
        .with_telemetry(false)
        .with_logger(Arc::new(ort_log))
        .build()
        .map_err(|e| RuntimeError::Environment {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    // The logger gets everything from verbose up, and ORT formats every
    // message it passes on: keep only what the twin would show.
    env.set_log_level(LogLevel::Warning);
    tracing::debug!(path = %path.display(), source = %lib.source, build = ort::info(), "ONNX Runtime loaded.");
    Ok(env)
}

/// ORT's own messages, into the twin's log (its default logger writes to
/// stderr directly, past the log filter and format).
fn ort_log(level: LogLevel, category: &str, _id: &str, location: &str, message: &str) {
    match level {
        LogLevel::Verbose => tracing::trace!(category, location, "ONNX Runtime: {message}"),
        LogLevel::Info => tracing::debug!(category, location, "ONNX Runtime: {message}"),
        LogLevel::Warning => tracing::warn!(category, location, "ONNX Runtime: {message}"),
        LogLevel::Error | LogLevel::Fatal => {
            tracing::error!(category, location, "ONNX Runtime: {message}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn venv_in(root: &Path, python: &str, names: &[&str]) {
        let capi = root.join(format!(".venv/lib/{python}/site-packages/onnxruntime/capi"));
        std::fs::create_dir_all(&capi).expect("make capi folder");
        for n in names {
            std::fs::write(capi.join(n), b"not really a library").expect("write file");
        }
    }

    #[test]
    fn ort_dylib_path_wins_over_config_and_venv() {
        let tmp = tempfile::tempdir().expect("tempdir");
        venv_in(tmp.path(), "python3.11", &["libonnxruntime.so.1.31.0"]);
        let env_lib = tmp.path().join("env.so");
        let cfg_lib = tmp.path().join("cfg.so");
        std::fs::write(&env_lib, b"x").expect("write");
        std::fs::write(&cfg_lib, b"x").expect("write");
        let inputs = SearchInputs {
            env_path: Some(env_lib.clone()),
            config_runtime: Some(cfg_lib.clone()),
            cwd: Some(tmp.path().to_path_buf()),
            ..SearchInputs::default()
        };
        assert_eq!(
            find_library(&inputs),
            Ok(FoundLibrary {
                path: env_lib,
                source: LibrarySource::Env
            })
        );
        let inputs = SearchInputs {
            env_path: None,
            ..inputs
        };
        assert_eq!(
            find_library(&inputs),
            Ok(FoundLibrary {
                path: cfg_lib,
                source: LibrarySource::Config
            })
        );
    }

    #[test]
    fn config_runtime_is_relative_to_the_config_folder() {
        let tmp = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("cfg/ort")).expect("mkdir");
        std::fs::write(tmp.path().join("cfg/ort/lib.so"), b"x").expect("write");
        let inputs = SearchInputs {
            config_runtime: Some("ort/lib.so".into()),
            config_dir: Some(tmp.path().join("cfg")),
            cwd: Some(tmp.path().to_path_buf()),
            ..SearchInputs::default()
        };
        let found = find_library(&inputs).expect("found");
        assert_eq!(found.path, tmp.path().join("cfg/ort/lib.so"));
    }

    #[test]
    fn an_explicit_path_that_is_missing_is_an_error_not_a_fall_through() {
        let tmp = tempfile::tempdir().expect("tempdir");
        venv_in(tmp.path(), "python3.11", &["libonnxruntime.so.1.31.0"]);
        let inputs = SearchInputs {
            env_path: Some(tmp.path().join("nope.so")),
            cwd: Some(tmp.path().to_path_buf()),
            ..SearchInputs::default()
        };
        let err = find_library(&inputs).expect_err("missing");
        assert!(matches!(
            err,
            RuntimeError::Missing {
                origin: LibrarySource::Env,
                ..
            }
        ));
        let msg = err.to_string();
        assert!(msg.contains("ORT_DYLIB_PATH names"), "{msg}");
        assert!(msg.contains("which is not a file"), "{msg}");
        assert!(msg.contains("nope.so"), "{msg}");
    }

    #[test]
    fn the_venv_is_found_above_the_start_folders_and_the_newest_python_wins() {
        let tmp = tempfile::tempdir().expect("tempdir");
        venv_in(tmp.path(), "python3.11", &["libonnxruntime.so.1.31.0"]);
        venv_in(
            tmp.path(),
            "python3.12",
            &[
                "libonnxruntime.so.1.31.0",
                "libonnxruntime_providers_shared.so",
            ],
        );
        let deep = tmp.path().join("target/debug");
        std::fs::create_dir_all(&deep).expect("mkdir");
        let inputs = SearchInputs {
            exe_dir: Some(deep),
            ..SearchInputs::default()
        };
        let found = find_library(&inputs).expect("found");
        assert_eq!(found.source, LibrarySource::Venv);
        assert_eq!(
            found.path,
            tmp.path().join(
                ".venv/lib/python3.12/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.0"
            )
        );
    }

    #[test]
    fn nothing_found_says_where_it_looked_and_how_to_fix_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let inputs = SearchInputs {
            cwd: Some(tmp.path().join("a")),
            config_dir: Some(tmp.path().join("b")),
            ..SearchInputs::default()
        };
        let msg = find_library(&inputs).expect_err("not found").to_string();
        for want in [
            "ONNX Runtime library was not found",
            "ORT_DYLIB_PATH (not set)",
            "`[ml] runtime` (not set)",
            ".venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*",
            &format!("`{}`", tmp.path().join("a").display()),
            &format!("`{}`", tmp.path().join("b").display()),
            "make setup-build",
            "bash scripts/setup.sh --build-only",
            "set ORT_DYLIB_PATH",
        ] {
            assert!(msg.contains(want), "{want:?} missing from: {msg}");
        }
    }
}
