//! One loaded model: its ORT session, its I/O as [`ModelIo`], the sha256 of
//! its file, and `run()` over a batch of feature rows.
//!
//! The file is read whole and handed to ORT from memory, so the bytes that
//! are hashed are the bytes that run: the hash a recording keeps names the
//! model that produced its predictions (ML_DESIGN, "Determinism").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2};
use ort::session::{HasSelectedOutputs, OutputSelector, RunOptions, Session};
use ort::value::{Tensor, TensorElementType, TensorRef, ValueType};
use sha2::{Digest, Sha256};

use super::io::{Elem, ModelIo, TensorSpec};
use super::runtime::Runtime;

/// Largest model file the twin loads: 256 MiB. Shipped models are under
/// 5 MB; the cap keeps a wrong `path` (a disk image, a log) from being read
/// whole into memory.
pub const MAX_MODEL_BYTES: u64 = 256 * 1024 * 1024;

/// Why a model file could not be loaded. Each names the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("model file `{}` not found", path.display())]
    NotFound { path: PathBuf },
    #[error("cannot read model file `{}`: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error("model file `{}` is {len} bytes, over the limit of {MAX_MODEL_BYTES} bytes", path.display())]
    TooBig { path: PathBuf, len: u64 },
    #[error("`{}` is not an ONNX model ONNX Runtime can load: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// Why a run failed. The stage reports it and moves on; nothing here
/// panics on rows or on what the model returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("the model has no input `{0}`")]
    UnknownInput(String),
    #[error("input `{input}` takes rows of {want} features; got {got}")]
    Width {
        input: String,
        want: i64,
        got: usize,
    },
    #[error("input `{input}` takes a batch of exactly {want} rows; got {got}")]
    Batch {
        input: String,
        want: i64,
        got: usize,
    },
    #[error("a run needs at least one row")]
    EmptyBatch,
    #[error("ONNX Runtime failed the run: {0}")]
    Ort(String),
}

/// One output of a run, as a `[rows, columns]` array of f32: a `[batch]`
/// output becomes one column, int64 labels and float64 values are
/// converted, and anything of higher rank is flattened per row.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedOutput {
    pub name: String,
    pub values: Array2<f32>,
}

/// A model ready to run.
#[derive(Debug)]
pub struct ModelSession {
    session: Session,
    io: ModelIo,
    sha256: [u8; 32],
    path: PathBuf,
    /// Run options asking ORT for one output only ([`ModelSession::run_output`]),
    /// made on first use and kept for that output: the plain path, for an
    /// output ORT cannot be handed a tensor for ahead of the run.
    selected: Option<Selected>,
    /// The batch sizes most recently run in place, most recent first
    /// ([`InPlace`]); at most [`IN_PLACE_SHAPES`], and at most
    /// [`IN_PLACE_BYTES`] of tensors (the latest is kept whatever its size).
    in_place: Vec<InPlace>,
    /// Outputs run the plain way: their shape is not known before the run,
    /// they are not f32, or ORT refused the tensor made for them.
    not_in_place: Vec<String>,
}

/// How many batch sizes a session keeps tensors for. A plant's batch size
/// changes only when machines go stale or a model's cadence moves, so a
/// handful covers its steady states; an older one is dropped and made
/// again when it recurs (what every run cost before).
const IN_PLACE_SHAPES: usize = 8;

/// Most bytes of kept tensors, besides those of the batch size run last: a
/// wide model's large batches (an autoencoder's thousand features, a
/// plant's thousands of rows) are tens of megabytes each, and a few sizes
/// of those are not worth keeping to save a microsecond a run.
const IN_PLACE_BYTES: usize = 64 << 20;

/// One batch size's run, reused from tick to tick: the input tensor the
/// rows are copied into, and run options that ask ORT for the one output
/// and hand it a tensor of the output's shape to write into. ORT then
/// creates no value for the input, allocates no output and creates no
/// value for it: 0.7 µs of a 4.2 µs run of the demo fault model at batch 1
/// (benches/ml_stage.rs, `ort_in_place_stage_ticks`; docs/ml.md, "Runs in
/// place"). The values are the same: the kernels compute into the buffer
/// they are given.
struct InPlace {
    input_name: String,
    output: String,
    rows: usize,
    width: usize,
    input: Tensor<f32>,
    options: RunOptions<HasSelectedOutputs>,
    /// The two tensors' bytes.
    bytes: usize,
}

impl std::fmt::Debug for InPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InPlace")
            .field("input", &self.input_name)
            .field("output", &self.output)
            .field("rows", &self.rows)
            .field("width", &self.width)
            .finish()
    }
}

/// Run options for one output (`RunOptions` of a selection has no `Debug`).
struct Selected(String, RunOptions<HasSelectedOutputs>);

impl std::fmt::Debug for Selected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Selected").field(&self.0).finish()
    }
}

impl ModelSession {
    /// Read `path` and build its session with the twin's options.
    pub fn load(rt: &Runtime, path: &Path) -> Result<Self, ModelError> {
        let bytes = read_capped(path)?;
        Self::from_bytes(rt, path, &bytes)
    }

    /// Build a session from a model's bytes; `path` names it in messages.
    pub fn from_bytes(rt: &Runtime, path: &Path, bytes: &[u8]) -> Result<Self, ModelError> {
        let invalid = |e: ort::Error| ModelError::Invalid {
            path: path.to_path_buf(),
            reason: e.message().trim().trim_end_matches('.').to_string(),
        };
        let session = rt
            .session_builder()
            .and_then(|mut b| b.commit_from_memory(bytes))
            .map_err(invalid)?;
        let io = model_io(&session).map_err(invalid)?;
        Ok(ModelSession {
            session,
            io,
            sha256: Sha256::digest(bytes).into(),
            path: path.to_path_buf(),
            selected: None,
            in_place: Vec::new(),
            not_in_place: Vec::new(),
        })
    }

    pub fn io(&self) -> &ModelIo {
        &self.io
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }

    /// The file's sha256 in lowercase hex, as recordings keep it.
    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Run the model on `rows` (one row per machine, `[batch, features]`)
    /// through `input`, in one ORT call. Returns every numeric tensor
    /// output, in the model's order; outputs the twin cannot read as
    /// numbers (strings, ZipMap's maps) are left out.
    pub fn run(
        &mut self,
        input: &str,
        rows: ArrayView2<'_, f32>,
    ) -> Result<Vec<NamedOutput>, RunError> {
        self.check_rows(input, rows)?;
        let rows = rows.as_standard_layout();
        let tensor = TensorRef::from_array_view(&rows).map_err(ort_err)?;
        let outputs = self
            .session
            .run(ort::inputs![input => tensor])
            .map_err(ort_err)?;
        let mut named = Vec::with_capacity(outputs.len());
        for (name, value) in outputs.iter() {
            if let Some(values) = numeric(&value) {
                named.push(NamedOutput {
                    name: name.to_string(),
                    values: values.map_err(ort_err)?,
                });
            }
        }
        Ok(named)
    }

    /// [`ModelSession::run`] for one output only, `output`: ORT is asked
    /// for it alone (no other output is allocated or copied), which is
    /// what the stage needs on every tick. Not a numeric tensor, or not an
    /// output of the model: an error.
    pub fn run_output(
        &mut self,
        input: &str,
        rows: ArrayView2<'_, f32>,
        output: &str,
    ) -> Result<Array2<f32>, RunError> {
        let mut values = Vec::new();
        let shape = self.run_output_into(input, rows, output, &mut values)?;
        Ok(to_array(shape, values))
    }

    /// [`ModelSession::run_output`] into `out` (cleared first), reusing its
    /// buffer: the stage's runs allocate nothing for their output. Returns
    /// the output's rows and columns (`[n]` is n rows of 1, `[n, a, b]` n
    /// rows of a·b).
    pub fn run_output_into(
        &mut self,
        input: &str,
        rows: ArrayView2<'_, f32>,
        output: &str,
        out: &mut Vec<f32>,
    ) -> Result<(usize, usize), RunError> {
        self.check_rows(input, rows)?;
        if !self.not_in_place.iter().any(|o| o == output) {
            match self.run_in_place(input, rows, output, out) {
                Ok(Some(shape)) => return Ok(shape),
                Ok(None) => self.not_in_place.push(output.to_string()),
                Err(e) => {
                    // ORT refused the run. If it runs the plain way, the
                    // tensor made for the output was what it refused: that
                    // output runs the plain way from now on. If not, the
                    // plain run's error is the one to report. (An output
                    // whose computed shape is not its declared one is not
                    // refused: ORT 1.31 replaces the tensor with one of the
                    // computed shape, tests/it/ml_runtime.rs; this is for a
                    // refusal nobody here has met, so it costs a run, not
                    // the model.)
                    let shape = self.run_plain(input, rows, output, out)?;
                    tracing::debug!(
                        model = %self.path.display(),
                        output,
                        error = %e,
                        "Model output runs without a tensor made for it ahead of the run."
                    );
                    self.not_in_place.push(output.to_string());
                    self.in_place.retain(|p| p.output != output);
                    return Ok(shape);
                }
            }
        }
        self.run_plain(input, rows, output, out)
    }

    /// A run into this batch size's [`InPlace`] tensors, made on first use.
    /// `Ok(None)`: the output cannot be run in place (its shape is not known
    /// from the model's I/O, or it is not f32).
    fn run_in_place(
        &mut self,
        input: &str,
        rows: ArrayView2<'_, f32>,
        output: &str,
        out: &mut Vec<f32>,
    ) -> Result<Option<(usize, usize)>, RunError> {
        let (n, width) = rows.dim();
        let found = self.in_place.iter().position(|p| {
            p.rows == n && p.width == width && p.output == output && p.input_name == input
        });
        match found {
            Some(0) => {}
            Some(i) => self.in_place[..=i].rotate_right(1),
            None => {
                let Some(made) = self.make_in_place(input, n, width, output)? else {
                    return Ok(None);
                };
                self.in_place.insert(0, made);
                self.in_place.truncate(IN_PLACE_SHAPES);
                let mut bytes = 0usize;
                let keep = self
                    .in_place
                    .iter()
                    .position(|p| {
                        bytes = bytes.saturating_add(p.bytes);
                        bytes > IN_PLACE_BYTES
                    })
                    .map_or(self.in_place.len(), |i| i.max(1));
                self.in_place.truncate(keep);
            }
        }
        let Some(place) = self.in_place.first_mut() else {
            return Ok(None);
        };
        let (_, data) = place.input.extract_tensor_mut();
        match rows.as_slice() {
            Some(flat) if flat.len() == data.len() => data.copy_from_slice(flat),
            _ => data
                .iter_mut()
                .zip(rows.iter())
                .for_each(|(to, &from)| *to = from),
        }
        let outputs = self
            .session
            .run_with_options(ort::inputs![input => &place.input], &place.options)
            .map_err(ort_err)?;
        read_output(&outputs, output, out).map(Some)
    }

    /// The tensors and options for running `n` rows of `width` in place, or
    /// `None` where the output's shape is not known ahead of the run.
    fn make_in_place(
        &self,
        input: &str,
        n: usize,
        width: usize,
        output: &str,
    ) -> Result<Option<InPlace>, RunError> {
        let Some(spec) = self.io.outputs.iter().find(|s| s.name == output) else {
            return Ok(None);
        };
        let Some(shape) = in_place_shape(spec, n) else {
            return Ok(None);
        };
        let len: usize = shape.iter().product();
        let made = Tensor::from_array((shape, vec![0.0f32; len]))
            .and_then(|out_tensor| {
                let options = RunOptions::new()?.with_outputs(
                    OutputSelector::no_default()
                        .with(output)
                        .preallocate(output, out_tensor),
                );
                let input_tensor = Tensor::from_array(([n, width], vec![0.0f32; n * width]))?;
                Ok((input_tensor, options))
            })
            .map_err(ort_err)?;
        Ok(Some(InPlace {
            input_name: input.to_string(),
            output: output.to_string(),
            rows: n,
            width,
            bytes: n
                .saturating_mul(width)
                .saturating_add(len)
                .saturating_mul(std::mem::size_of::<f32>()),
            input: made.0,
            options: made.1,
        }))
    }

    /// A run that lets ORT allocate the output (the path before
    /// [`InPlace`], kept for outputs that cannot be run in place).
    fn run_plain(
        &mut self,
        input: &str,
        rows: ArrayView2<'_, f32>,
        output: &str,
        out: &mut Vec<f32>,
    ) -> Result<(usize, usize), RunError> {
        if self.selected.as_ref().is_none_or(|s| s.0 != output) {
            let options = RunOptions::new()
                .map_err(ort_err)?
                .with_outputs(OutputSelector::no_default().with(output));
            self.selected = Some(Selected(output.to_string(), options));
        }
        let Some(Selected(_, options)) = &self.selected else {
            return Err(RunError::Ort(format!(
                "no run options for output `{output}`"
            )));
        };
        let rows = rows.as_standard_layout();
        let tensor = TensorRef::from_array_view(&rows).map_err(ort_err)?;
        let outputs = self
            .session
            .run_with_options(ort::inputs![input => tensor], options)
            .map_err(ort_err)?;
        read_output(&outputs, output, out)
    }

    /// Whether runs of `output` go into tensors made for it ahead of the
    /// run ([`InPlace`]): true once one has, false once it is known they
    /// cannot. For tests and diagnostics.
    pub fn runs_in_place(&self, output: &str) -> bool {
        !self.not_in_place.iter().any(|o| o == output)
            && self.in_place.iter().any(|p| p.output == output)
    }

    /// The batch sizes whose tensors are kept, most recently run first.
    pub fn kept_batch_sizes(&self) -> Vec<usize> {
        self.in_place.iter().map(|p| p.rows).collect()
    }

    /// The checks a run makes of its rows before ORT sees them.
    fn check_rows(&self, input: &str, rows: ArrayView2<'_, f32>) -> Result<(), RunError> {
        let spec = self
            .io
            .inputs
            .iter()
            .find(|s| s.name == input)
            .ok_or_else(|| RunError::UnknownInput(input.to_string()))?;
        let (n, width) = rows.dim();
        if n == 0 {
            return Err(RunError::EmptyBatch);
        }
        // ORT would refuse these too, in words about tensors; checked here
        // to say it about rows and features.
        if let [batch, w] = spec.dims.as_slice() {
            if let Some(w) = w
                && *w != width as i64
            {
                return Err(RunError::Width {
                    input: input.to_string(),
                    want: *w,
                    got: width,
                });
            }
            if let Some(b) = batch
                && *b != n as i64
            {
                return Err(RunError::Batch {
                    input: input.to_string(),
                    want: *b,
                    got: n,
                });
            }
        }
        Ok(())
    }
}

/// `output` of a run, into `out` (cleared first), as rows and columns.
fn read_output(
    outputs: &ort::session::SessionOutputs<'_>,
    output: &str,
    out: &mut Vec<f32>,
) -> Result<(usize, usize), RunError> {
    let value = outputs
        .get(output)
        .ok_or_else(|| RunError::Ort(format!("the run gave no output `{output}`")))?;
    out.clear();
    let (n, cols) = numeric_into(value, out)
        .ok_or_else(|| RunError::Ort(format!("output `{output}` is not a numeric tensor")))?
        .map_err(ort_err)?;
    if n.saturating_mul(cols) != out.len() {
        return Err(RunError::Ort(format!(
            "output `{output}` has {n} rows of {cols} and {} values",
            out.len()
        )));
    }
    Ok((n, cols))
}

/// The shape of `spec`'s tensor for a batch of `n` rows, where the model's
/// I/O fixes it: f32, of rank 1 or more, the first dimension the batch (or
/// fixed), every other one fixed. `None` otherwise: that output is run the
/// plain way.
fn in_place_shape(spec: &TensorSpec, n: usize) -> Option<Vec<usize>> {
    if spec.elem != Elem::F32 || spec.dims.is_empty() {
        return None;
    }
    let fixed = |d: i64| usize::try_from(d).ok().filter(|&d| d > 0);
    let mut shape = Vec::with_capacity(spec.dims.len());
    for (i, d) in spec.dims.iter().enumerate() {
        shape.push(match d {
            None if i == 0 => n,
            None => return None,
            Some(d) => fixed(*d)?,
        });
    }
    Some(shape)
}

fn ort_err(e: ort::Error) -> RunError {
    RunError::Ort(e.message().trim().to_string())
}

/// A numeric tensor output as rows of f32 (ORT reads a contiguous buffer;
/// a view of a column slice is copied into one by the caller); `None` for
/// an output the twin cannot read as numbers (strings, ZipMap's maps).
fn numeric(value: &ort::value::DynValue) -> Option<Result<Array2<f32>, ort::Error>> {
    let mut values = Vec::new();
    let shape = numeric_into(value, &mut values)?;
    Some(shape.map(|shape| to_array(shape, values)))
}

/// Row-major `values` as `rows × cols`. ORT's shape and element count
/// agree; should they not, an empty output is reported rather than a
/// panic.
fn to_array((rows, cols): (usize, usize), values: Vec<f32>) -> Array2<f32> {
    Array2::from_shape_vec((rows, cols), values).unwrap_or_else(|_| Array2::zeros((0, 0)))
}

/// [`numeric`] appended to `out`, returning the tensor's shape as rows and
/// columns ([`rows_of`]). Flat slices, not n-d views: iterating an n-d view
/// goes through dynamic indexing per element, which cost a third of a small
/// model's run at batch 256 (benches/ml_run.rs).
fn numeric_into(
    value: &ort::value::DynValue,
    out: &mut Vec<f32>,
) -> Option<Result<(usize, usize), ort::Error>> {
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return None;
    };
    Some(match ty {
        TensorElementType::Float32 => value.try_extract_tensor::<f32>().map(|(s, v)| {
            out.extend_from_slice(v);
            rows_of(s)
        }),
        TensorElementType::Float64 => value.try_extract_tensor::<f64>().map(|(s, v)| {
            out.extend(v.iter().map(|&x| x as f32));
            rows_of(s)
        }),
        TensorElementType::Int64 => value.try_extract_tensor::<i64>().map(|(s, v)| {
            out.extend(v.iter().map(|&x| x as f32));
            rows_of(s)
        }),
        TensorElementType::Int32 => value.try_extract_tensor::<i32>().map(|(s, v)| {
            out.extend(v.iter().map(|&x| x as f32));
            rows_of(s)
        }),
        _ => return None,
    })
}

/// A shape as rows and columns: `[]` → 1 × 1, `[n]` → n × 1, `[n, k]` as
/// is, `[n, a, b, ...]` → n × a·b·...
fn rows_of(shape: &[i64]) -> (usize, usize) {
    let dim = |d: i64| usize::try_from(d).unwrap_or(0);
    let rows = shape.first().map_or(1, |&d| dim(d));
    let cols: usize = shape.iter().skip(1).map(|&d| dim(d)).product();
    (rows, cols)
}

fn read_capped(path: &Path) -> Result<Vec<u8>, ModelError> {
    use std::io::Read;
    let fail = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => ModelError::NotFound {
            path: path.to_path_buf(),
        },
        _ => ModelError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    };
    let file = std::fs::File::open(path).map_err(fail)?;
    let meta = file.metadata().map_err(fail)?;
    if meta.is_dir() {
        return Err(ModelError::Read {
            path: path.to_path_buf(),
            reason: "it is a folder".into(),
        });
    }
    if meta.len() > MAX_MODEL_BYTES {
        return Err(ModelError::TooBig {
            path: path.to_path_buf(),
            len: meta.len(),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_MODEL_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(fail)?;
    if bytes.len() as u64 > MAX_MODEL_BYTES {
        return Err(ModelError::TooBig {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

fn model_io(session: &Session) -> Result<ModelIo, ort::Error> {
    let spec = |o: &ort::value::Outlet| {
        let (dims, elem) = match o.dtype() {
            ValueType::Tensor { ty, shape, .. } => (
                shape.iter().map(|&d| (d >= 0).then_some(d)).collect(),
                elem(*ty),
            ),
            other => (Vec::new(), Elem::NotATensor(other.to_string())),
        };
        TensorSpec {
            name: o.name().to_string(),
            dims,
            elem,
        }
    };
    let meta = session.metadata()?;
    let mut metadata = BTreeMap::new();
    for key in meta.custom_keys()? {
        if let Some(v) = meta.custom(&key) {
            metadata.insert(key, v);
        }
    }
    Ok(ModelIo {
        inputs: session.inputs().iter().map(spec).collect(),
        outputs: session.outputs().iter().map(spec).collect(),
        metadata,
    })
}

fn elem(ty: TensorElementType) -> Elem {
    match ty {
        TensorElementType::Float32 => Elem::F32,
        TensorElementType::Float64 => Elem::F64,
        TensorElementType::Int64 => Elem::I64,
        TensorElementType::Int32 => Elem::I32,
        TensorElementType::Bool => Elem::Bool,
        TensorElementType::String => Elem::String,
        other => Elem::Other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_of_any_rank_become_rows_and_columns() {
        let v = |n: usize| (0..n).map(|i| i as f32).collect::<Vec<f32>>();
        assert_eq!(to_array(rows_of(&[]), v(1)).dim(), (1, 1));
        assert_eq!(to_array(rows_of(&[4]), v(4)).dim(), (4, 1));
        assert_eq!(to_array(rows_of(&[4, 3]), v(12)).dim(), (4, 3));
        let three = to_array(rows_of(&[2, 3, 2]), v(12));
        assert_eq!(three.dim(), (2, 6));
        assert_eq!(three[[1, 0]], 6.0, "row-major order is kept");
        assert_eq!(to_array(rows_of(&[0, 3]), v(0)).dim(), (0, 3));
        // A shape that does not match the elements is no panic.
        assert_eq!(to_array(rows_of(&[2, 3]), v(5)).dim(), (0, 0));
    }
}
