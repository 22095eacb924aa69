//! Loading a config's `[[models]]` at start-up: every model file is read,
//! given a session and checked against its entry, and every problem becomes
//! a located config diagnostic, as the rest of the config's do.
//!
//! `twin check` calls this to verify models; the commands that run a twin
//! call it to get their sessions. A config without models never touches
//! the runtime library.

use std::ops::Range;
use std::path::{Path, PathBuf};

use super::io::{IoBinding, IoKey, IoMismatch, WantedIo, WantedOutput, bind};
use super::runtime::{Runtime, RuntimeError, SearchInputs};
use super::session::{ModelError, ModelSession};
use crate::config::ml::{Model, Task};
use crate::config::{Diagnostic, LoadedConfig};

/// A `[[models]]` entry, loaded and bound to its config.
#[derive(Debug)]
pub struct LoadedModel {
    pub id: String,
    pub session: ModelSession,
    pub binding: IoBinding,
}

/// Why the models could not be had.
#[derive(Debug, thiserror::Error)]
pub enum LoadModelsError {
    /// The library is missing or unusable: nothing could be checked.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Model files that are missing, unreadable, or do not fit their entry.
    #[error("{} problem(s) with the config's models", .0.len())]
    Config(Vec<Diagnostic>),
}

/// Load every model of `cfg` that has a `task`, in file order (an entry
/// without one is checked by the config alone and never run). The library
/// is looked for as `runtime::find_library` says, `[ml] runtime` second.
/// All problems are reported, not just the first.
pub fn load_models(cfg: &LoadedConfig) -> Result<Vec<LoadedModel>, LoadModelsError> {
    if cfg.ml.models.is_empty() {
        return Ok(Vec::new());
    }
    let dir = config_dir(cfg.file.path());
    let ml_runtime = cfg.ml.runtime.as_ref().map(|r| r.value.as_path());
    let rt = Runtime::get(&SearchInputs::from_process(ml_runtime, Some(&dir)))?;
    let mut loaded = Vec::new();
    let mut diags = Vec::new();
    for model in &cfg.ml.models {
        // `models[i]` names the entry as written (entries without a task
        // count too).
        let i = cfg
            .config
            .models
            .iter()
            .position(|d| d.id.value == model.id.value)
            .unwrap_or(0);
        // The feature list is `[[models.features]]`, or only `inputs`.
        let features_at = match cfg.config.models.get(i) {
            Some(d) if d.features.is_empty() && !d.inputs.is_empty() => {
                let (first, last) = (&d.inputs[0], &d.inputs[d.inputs.len() - 1]);
                ("inputs", first.span.start..last.span.end)
            }
            _ => ("features", model.features_span.clone()),
        };
        // A bundled copy (from a recording, or built into the binary)
        // stands in for the file.
        let session = match cfg.ml.bundled.get(&model.id.value) {
            Some(bytes) => ModelSession::from_bytes(rt, &model.path.value, bytes),
            None => ModelSession::load(rt, &model.path.value),
        };
        let session = match session {
            Ok(s) => s,
            Err(e) => {
                diags.push(file_diagnostic(i, model, &dir, &e));
                continue;
            }
        };
        let shape = match model.task {
            Task::Fault => WantedOutput::Classes(model.output.classes.value.len()),
            Task::Anomaly | Task::Rul => WantedOutput::Scalar,
            Task::Setpoint => WantedOutput::Setpoints(model.output.setpoints.value.len()),
        };
        let want = WantedIo {
            input: model.input.as_ref().map(|l| l.value.as_str()),
            n_features: model.features.len(),
            output: model.output.name.as_ref().map(|l| l.value.as_str()),
            shape,
        };
        match bind(session.io(), &want) {
            Ok(binding) => loaded.push(LoadedModel {
                id: model.id.value.clone(),
                session,
                binding,
            }),
            Err(mismatches) => diags.extend(
                mismatches
                    .into_iter()
                    .map(|m| mismatch_diagnostic(i, &features_at, model, m)),
            ),
        }
    }
    if diags.is_empty() {
        Ok(loaded)
    } else {
        Err(LoadModelsError::Config(diags))
    }
}

/// The folder model paths are relative to: the config file's own.
fn config_dir(config: &Path) -> PathBuf {
    match config.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn file_diagnostic(i: usize, model: &Model, dir: &Path, e: &ModelError) -> Diagnostic {
    let key = format!("models[{i}].path");
    let span = model.path.span.clone();
    match e {
        ModelError::NotFound { path } => Diagnostic::error(
            span,
            key,
            format!("model file `{}` not found", tidy(path).display()),
        )
        .help(format!(
            "a relative `path` starts from the config file's folder (`{}`)",
            dir.display()
        )),
        ModelError::Invalid { reason, .. } => Diagnostic::error(
            span,
            key,
            format!("the file is not an ONNX model that ONNX Runtime can load: {reason}"),
        )
        .expected("an ONNX model file (.onnx)")
        .help(
            "check that `path` names the exported model, not its training data or a file cut short",
        ),
        ModelError::Read { .. } | ModelError::TooBig { .. } => {
            Diagnostic::error(span, key, e.to_string())
                .help("check that `path` names the model file and that it is readable")
        }
    }
}

/// `dir/../x` as `x`: the path a message shows, as short as it is true
/// (only `..` after a plain folder name is folded; symlinks do not matter
/// for saying which file was looked for).
fn tidy(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match (c, out.last()) {
            (Component::CurDir, Some(_)) => {}
            (Component::ParentDir, Some(Component::Normal(_))) => {
                out.pop();
            }
            _ => out.push(c),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
}

/// Where a mismatch is reported: at the config key it is about.
fn mismatch_diagnostic(
    i: usize,
    features_at: &(&str, Range<usize>),
    model: &Model,
    m: IoMismatch,
) -> Diagnostic {
    let located = |l: Option<Range<usize>>| l.unwrap_or_else(|| model.path.span.clone());
    let span = match m.key {
        IoKey::Path => model.path.span.clone(),
        IoKey::Input => located(model.input.as_ref().map(|l| l.span.clone())),
        IoKey::Features => features_at.1.clone(),
        IoKey::OutputName => located(model.output.name.as_ref().map(|l| l.span.clone())),
        IoKey::OutputClasses => model.output.classes.span.clone(),
        IoKey::OutputSetpoints => model.output.setpoints.span.clone(),
    };
    let key = match m.key {
        IoKey::Features => features_at.0,
        k => k.as_str(),
    };
    Diagnostic::error(span, format!("models[{i}].{key}"), m.message)
        .expected(m.expected)
        .help(m.help)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_folds_parent_folders_after_names_only() {
        assert_eq!(tidy(Path::new("a/b/../../c.onnx")), PathBuf::from("c.onnx"));
        assert_eq!(tidy(Path::new("./m.onnx")), PathBuf::from("./m.onnx"));
        assert_eq!(tidy(Path::new("../m.onnx")), PathBuf::from("../m.onnx"));
        assert_eq!(
            tidy(Path::new("a/./b/../m.onnx")),
            PathBuf::from("a/m.onnx")
        );
        assert_eq!(tidy(Path::new("a/..")), PathBuf::from("."));
    }
}
