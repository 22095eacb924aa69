//! A model's inputs, outputs and metadata, and the contract they must meet
//! for the twin to feed it rows and read its answers (ML_DESIGN, "A model's
//! I/O contract"; docs/ml.md).
//!
//! The twin feeds one float32 input of rank 2, `[batch, n_features]`, whose
//! batch dimension is dynamic (or 1: then the stage never batches the
//! model), and reads one numeric tensor output whose shape fits the task.
//! [`bind`] checks that and says which input and output the stage uses;
//! every way a model can miss is an [`IoMismatch`] naming the config key it
//! belongs to, what the model has, and what to do.

use std::collections::BTreeMap;
use std::fmt;

use crate::config::diagnostics::did_you_mean;

/// The element type of a model's input or output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elem {
    F32,
    F64,
    I64,
    I32,
    Bool,
    String,
    /// Another tensor element type (f16, u8, ...), by ORT's name for it.
    Other(String),
    /// Not a tensor at all: a sequence, a map (skl2onnx's ZipMap gives a
    /// sequence of maps), an optional. ORT's description of the type.
    NotATensor(String),
}

impl Elem {
    /// Whether the twin can read it as numbers (converted to f32).
    pub fn is_numeric(&self) -> bool {
        matches!(self, Elem::F32 | Elem::F64 | Elem::I64 | Elem::I32)
    }
}

impl fmt::Display for Elem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Elem::F32 => f.write_str("float32"),
            Elem::F64 => f.write_str("float64"),
            Elem::I64 => f.write_str("int64"),
            Elem::I32 => f.write_str("int32"),
            Elem::Bool => f.write_str("bool"),
            Elem::String => f.write_str("string"),
            Elem::Other(s) | Elem::NotATensor(s) => f.write_str(s),
        }
    }
}

/// One input or output: its name, shape (`None` for a dynamic dimension)
/// and element type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub dims: Vec<Option<i64>>,
    pub elem: Elem,
}

impl TensorSpec {
    /// `float32 [?, 4]`: how messages show it.
    pub fn describe(&self) -> String {
        match &self.elem {
            Elem::NotATensor(t) => format!("{t}, not a tensor"),
            e => format!("{e} {}", shape(&self.dims)),
        }
    }
}

/// `[?, 4]`, with `?` for a dynamic dimension.
pub fn shape(dims: &[Option<i64>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or_else(|| "?".to_string(), |n| n.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Everything the twin knows of a model before running it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelIo {
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// The model's custom metadata (`metadata_props`), e.g. `twin.threshold`.
    pub metadata: BTreeMap<String, String>,
}

/// The output shape a task reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WantedOutput {
    /// fault: `[batch, classes]`, one probability per class.
    Classes(usize),
    /// anomaly (a score) or rul (an estimate): `[batch]` or `[batch, 1]`.
    Scalar,
    /// setpoint: `[batch, setpoints]`, one column per setpoint.
    Setpoints(usize),
    /// No task given: any numeric `[batch]` or `[batch, k]`.
    Any,
}

/// What the config asks of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WantedIo<'a> {
    /// `input`: the ONNX input's name; `None` takes the model's only input.
    pub input: Option<&'a str>,
    /// How many features the config lists.
    pub n_features: usize,
    /// `output.name`; `None` takes the model's only output, or of several
    /// the first numeric tensor that fits `shape`.
    pub output: Option<&'a str>,
    pub shape: WantedOutput,
}

/// The config key a mismatch belongs to, relative to its `[[models]]` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IoKey {
    Path,
    Input,
    Features,
    OutputName,
    OutputClasses,
    OutputSetpoints,
}

impl IoKey {
    pub fn as_str(self) -> &'static str {
        match self {
            IoKey::Path => "path",
            IoKey::Input => "input",
            IoKey::Features => "features",
            IoKey::OutputName => "output.name",
            IoKey::OutputClasses => "output.classes",
            IoKey::OutputSetpoints => "output.setpoints",
        }
    }
}

/// One way a model misses what the config asks: what the model has, what
/// would fit, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoMismatch {
    pub key: IoKey,
    pub message: String,
    pub expected: String,
    pub help: String,
}

fn mismatch(
    key: IoKey,
    message: impl Into<String>,
    expected: impl Into<String>,
    help: impl Into<String>,
) -> IoMismatch {
    IoMismatch {
        key,
        message: message.into(),
        expected: expected.into(),
        help: help.into(),
    }
}

/// Whether the stage may put several rows in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batching {
    /// The batch dimension is dynamic: one run for all rows due.
    Rows,
    /// The batch dimension is fixed at 1: one run per row.
    OneRow,
}

/// The input and output the stage uses, once [`bind`] accepted a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoBinding {
    pub input: String,
    pub output: String,
    pub batching: Batching,
}

/// Check a model against the config, and say which input and output the
/// stage uses. Every mismatch is reported, not just the first.
pub fn bind(io: &ModelIo, want: &WantedIo<'_>) -> Result<IoBinding, Vec<IoMismatch>> {
    let mut out = Vec::new();
    let input = bind_input(io, want, &mut out);
    let output = bind_output(io, want, &mut out);
    match (input, output) {
        (Some((input, batching)), Some(output)) if out.is_empty() => Ok(IoBinding {
            input,
            output,
            batching,
        }),
        _ => Err(out),
    }
}

/// [`bind`]'s mismatches alone.
pub fn verify(io: &ModelIo, want: &WantedIo<'_>) -> Vec<IoMismatch> {
    bind(io, want).err().unwrap_or_default()
}

fn names(specs: &[TensorSpec]) -> String {
    let n: Vec<String> = specs.iter().map(|s| format!("`{}`", s.name)).collect();
    n.join(", ")
}

fn bind_input(
    io: &ModelIo,
    want: &WantedIo<'_>,
    out: &mut Vec<IoMismatch>,
) -> Option<(String, Batching)> {
    let expected = format!("one float32 input, [batch, {}]", want.n_features);
    let spec = match (io.inputs.as_slice(), want.input) {
        ([], _) => {
            out.push(mismatch(
                IoKey::Path,
                "the model has no inputs",
                expected,
                "check that `path` names the model this entry is for",
            ));
            return None;
        }
        ([only], None) => only,
        ([only], Some(name)) if only.name == name => only,
        (inputs, Some(name)) if !inputs.iter().any(|s| s.name == name) => {
            out.push(mismatch(
                IoKey::Input,
                format!(
                    "the model has no input `{name}`; its inputs: {}",
                    names(inputs)
                ),
                format!("one of {}", names(inputs)),
                did_you_mean(name, inputs.iter().map(|s| s.name.as_str())).unwrap_or_else(|| {
                    "name one of the model's inputs, or leave `input` out when it has one".into()
                }),
            ));
            return None;
        }
        (inputs, _) => {
            out.push(mismatch(
                IoKey::Input,
                format!(
                    "the model has {} inputs ({}); the twin feeds exactly one",
                    inputs.len(),
                    names(inputs)
                ),
                expected,
                "export the model with one input that takes the whole feature row",
            ));
            return None;
        }
    };
    let name = &spec.name;
    let before = out.len();
    if spec.elem != Elem::F32 {
        out.push(mismatch(
            IoKey::Input,
            format!("input `{name}` is {}; the twin feeds float32", spec.describe()),
            expected.clone(),
            format!(
                "export the model with a float32 input (skl2onnx: initial_types=[(\"{name}\", FloatTensorType([None, {}]))])",
                want.n_features
            ),
        ));
    }
    let batching = match spec.dims.as_slice() {
        [batch, width] => {
            if let Some(w) = width
                && *w != want.n_features as i64
            {
                out.push(mismatch(
                    IoKey::Features,
                    format!(
                        "the model takes {w} features (input `{name}` is {}); the config gives {}",
                        shape(&spec.dims),
                        want.n_features
                    ),
                    format!("{w} features, in the order the model was trained on"),
                    format!(
                        "list the model's {w} features in its order, or point `path` at the model trained on these {}",
                        want.n_features
                    ),
                ));
            }
            match batch {
                None => Some(Batching::Rows),
                Some(1) => Some(Batching::OneRow),
                Some(n) => {
                    out.push(mismatch(
                        IoKey::Input,
                        format!("input `{name}` has a fixed batch of {n} rows ({})", shape(&spec.dims)),
                        "a dynamic batch dimension (or 1)",
                        "export the model with a dynamic first dimension (skl2onnx: None; torch.onnx: dynamic_axes)",
                    ));
                    None
                }
            }
        }
        dims => {
            out.push(mismatch(
                IoKey::Input,
                format!(
                    "input `{name}` has rank {} ({}); the twin feeds rows of features",
                    dims.len(),
                    shape(dims)
                ),
                expected,
                "export the model with a rank-2 input, [batch, features]",
            ));
            None
        }
    };
    match batching {
        Some(b) if out.len() == before => Some((name.clone(), b)),
        _ => None,
    }
}

/// The mismatches of `spec` as the output the stage reads.
fn output_mismatches(spec: &TensorSpec, wanted: WantedOutput) -> Vec<IoMismatch> {
    let name = &spec.name;
    let mut out = Vec::new();
    let expected = match wanted {
        WantedOutput::Classes(n) => format!("a numeric tensor [batch, {n}], one column per class"),
        WantedOutput::Scalar => "a numeric tensor [batch] or [batch, 1]".into(),
        WantedOutput::Setpoints(n) => {
            format!("a numeric tensor [batch, {n}], one column per setpoint")
        }
        WantedOutput::Any => "a numeric tensor [batch] or [batch, k]".into(),
    };
    if let Elem::NotATensor(ty) = &spec.elem {
        let zipmap = ty.contains("Map") || ty.contains("map");
        out.push(mismatch(
            IoKey::OutputName,
            format!("output `{name}` is {ty}, not a tensor"),
            expected,
            if zipmap {
                "export the classifier without ZipMap (skl2onnx: options={\"zipmap\": False}), which gives the probabilities as a tensor".to_string()
            } else {
                "export the model with a tensor output".to_string()
            },
        ));
        return out;
    }
    if !spec.elem.is_numeric() {
        out.push(mismatch(
            IoKey::OutputName,
            format!(
                "output `{name}` is {}; the twin reads numbers",
                spec.describe()
            ),
            expected,
            "name a numeric output with `output.name`, or export the model with one",
        ));
        return out;
    }
    let batch_ok = |b: &Option<i64>| matches!(b, None | Some(1));
    let shape_wrong = |out: &mut Vec<IoMismatch>| {
        out.push(mismatch(
            IoKey::OutputName,
            format!("output `{name}` is {}", spec.describe()),
            expected.clone(),
            "name the output that fits with `output.name`, or export the model with one",
        ))
    };
    let width = |out: &mut Vec<IoMismatch>, key: IoKey, n: usize, what: &str| {
        if let [b, w] = spec.dims.as_slice()
            && batch_ok(b)
        {
            if let Some(w) = w
                && *w != n as i64
            {
                out.push(mismatch(
                    key,
                    format!(
                        "output `{name}` has {w} columns ({}); the config names {n} {what}",
                        spec.describe()
                    ),
                    format!("{w} {what}, one per column, in the model's order"),
                    format!("list the model's {w} {what}, or point `path` at the model trained for these {n}"),
                ));
            }
        } else {
            shape_wrong(out);
        }
    };
    match wanted {
        WantedOutput::Classes(n) => width(&mut out, IoKey::OutputClasses, n, "classes"),
        WantedOutput::Setpoints(n) => width(&mut out, IoKey::OutputSetpoints, n, "setpoints"),
        WantedOutput::Scalar => match spec.dims.as_slice() {
            [b] | [b, Some(1)] if batch_ok(b) => {}
            _ => shape_wrong(&mut out),
        },
        WantedOutput::Any => match spec.dims.as_slice() {
            [b] | [b, _] if batch_ok(b) => {}
            _ => shape_wrong(&mut out),
        },
    }
    out
}

fn bind_output(io: &ModelIo, want: &WantedIo<'_>, out: &mut Vec<IoMismatch>) -> Option<String> {
    let spec = match (io.outputs.as_slice(), want.output) {
        ([], _) => {
            out.push(mismatch(
                IoKey::Path,
                "the model has no outputs",
                "a numeric tensor output",
                "check that `path` names the model this entry is for",
            ));
            return None;
        }
        (outputs, Some(name)) => match outputs.iter().find(|s| s.name == name) {
            Some(s) => s,
            None => {
                out.push(mismatch(
                    IoKey::OutputName,
                    format!(
                        "the model has no output `{name}`; its outputs: {}",
                        names(outputs)
                    ),
                    format!("one of {}", names(outputs)),
                    did_you_mean(name, outputs.iter().map(|s| s.name.as_str())).unwrap_or_else(
                        || "name one of the model's outputs, or leave `output.name` out".into(),
                    ),
                ));
                return None;
            }
        },
        ([only], None) => only,
        // Of several (skl2onnx classifiers give `label` and then
        // `probabilities`), the first that fits; else the first tensor, so
        // the mismatch reported is about the likeliest intended one.
        (outputs, None) => outputs
            .iter()
            .find(|s| output_mismatches(s, want.shape).is_empty())
            .or_else(|| {
                outputs
                    .iter()
                    .find(|s| !matches!(s.elem, Elem::NotATensor(_)))
            })
            .unwrap_or(&outputs[0]),
    };
    let found = output_mismatches(spec, want.shape);
    let ok = found.is_empty();
    out.extend(found);
    ok.then(|| spec.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, dims: &[Option<i64>], elem: Elem) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dims: dims.to_vec(),
            elem,
        }
    }

    fn classifier() -> ModelIo {
        ModelIo {
            inputs: vec![t("X", &[None, Some(4)], Elem::F32)],
            outputs: vec![
                t("label", &[None], Elem::I64),
                t("probabilities", &[None, Some(3)], Elem::F32),
            ],
            metadata: BTreeMap::new(),
        }
    }

    fn want(n: usize, shape: WantedOutput) -> WantedIo<'static> {
        WantedIo {
            input: None,
            n_features: n,
            output: None,
            shape,
        }
    }

    fn keys(m: &[IoMismatch]) -> Vec<IoKey> {
        m.iter().map(|m| m.key).collect()
    }

    #[test]
    fn a_fitting_classifier_binds_its_probabilities_not_its_labels() {
        let b = bind(&classifier(), &want(4, WantedOutput::Classes(3))).expect("binds");
        assert_eq!(
            b,
            IoBinding {
                input: "X".into(),
                output: "probabilities".into(),
                batching: Batching::Rows
            }
        );
    }

    #[test]
    fn feature_count_mismatch_belongs_to_features() {
        let m = verify(&classifier(), &want(7, WantedOutput::Classes(3)));
        assert_eq!(keys(&m), [IoKey::Features]);
        assert!(
            m[0].message.contains("takes 4 features"),
            "{}",
            m[0].message
        );
        assert!(m[0].message.contains("config gives 7"), "{}", m[0].message);
    }

    #[test]
    fn class_count_mismatch_belongs_to_output_classes() {
        let w = WantedIo {
            output: Some("probabilities"),
            ..want(4, WantedOutput::Classes(5))
        };
        let m = verify(&classifier(), &w);
        assert_eq!(keys(&m), [IoKey::OutputClasses]);
        assert!(m[0].message.contains("has 3 columns"), "{}", m[0].message);
    }

    #[test]
    fn setpoint_count_mismatch_belongs_to_output_setpoints() {
        let io = ModelIo {
            outputs: vec![t("speeds", &[None, Some(2)], Elem::F32)],
            ..classifier()
        };
        let m = verify(&io, &want(4, WantedOutput::Setpoints(3)));
        assert_eq!(keys(&m), [IoKey::OutputSetpoints]);
    }

    #[test]
    fn an_unknown_output_name_gets_a_did_you_mean() {
        let w = WantedIo {
            output: Some("probabilites"),
            ..want(4, WantedOutput::Classes(3))
        };
        let m = verify(&classifier(), &w);
        assert_eq!(keys(&m), [IoKey::OutputName]);
        assert!(m[0].help.contains("`probabilities`"), "{}", m[0].help);
    }

    #[test]
    fn an_unknown_input_name_lists_the_inputs() {
        let w = WantedIo {
            input: Some("x"),
            ..want(4, WantedOutput::Classes(3))
        };
        let m = verify(&classifier(), &w);
        assert_eq!(keys(&m), [IoKey::Input]);
        assert!(m[0].message.contains("its inputs: `X`"), "{}", m[0].message);
    }

    #[test]
    fn zipmap_output_is_refused_with_the_zipmap_hint() {
        let io = ModelIo {
            outputs: vec![
                t("output_label", &[None], Elem::I64),
                t(
                    "output_probability",
                    &[],
                    Elem::NotATensor("Vec<HashMap<i64, f32>>".into()),
                ),
            ],
            ..classifier()
        };
        let w = WantedIo {
            output: Some("output_probability"),
            ..want(4, WantedOutput::Classes(3))
        };
        let m = verify(&io, &w);
        assert_eq!(keys(&m), [IoKey::OutputName]);
        assert!(m[0].help.contains("\"zipmap\": False"), "{}", m[0].help);
    }

    #[test]
    fn input_must_be_float32_rank_2_with_a_dynamic_or_unit_batch() {
        let io = |dims: &[Option<i64>], elem| ModelIo {
            inputs: vec![t("X", dims, elem)],
            ..classifier()
        };
        let w = want(4, WantedOutput::Classes(3));
        assert_eq!(
            keys(&verify(&io(&[None, Some(4)], Elem::F64), &w)),
            [IoKey::Input]
        );
        assert_eq!(
            keys(&verify(&io(&[None, Some(4), Some(2)], Elem::F32), &w)),
            [IoKey::Input]
        );
        assert_eq!(
            keys(&verify(&io(&[Some(8), Some(4)], Elem::F32), &w)),
            [IoKey::Input]
        );
        let one = bind(&io(&[Some(1), Some(4)], Elem::F32), &w).expect("batch 1 binds");
        assert_eq!(one.batching, Batching::OneRow);
    }

    #[test]
    fn several_inputs_are_refused_even_when_one_is_named() {
        let io = ModelIo {
            inputs: vec![
                t("X", &[None, Some(4)], Elem::F32),
                t("h", &[None, Some(2)], Elem::F32),
            ],
            ..classifier()
        };
        let w = WantedIo {
            input: Some("X"),
            ..want(4, WantedOutput::Classes(3))
        };
        let m = verify(&io, &w);
        assert_eq!(keys(&m), [IoKey::Input]);
        assert!(m[0].message.contains("2 inputs"), "{}", m[0].message);
    }

    #[test]
    fn scalar_tasks_take_batch_or_batch_by_one() {
        let io = |dims: &[Option<i64>]| ModelIo {
            outputs: vec![t("score", dims, Elem::F32)],
            ..classifier()
        };
        let w = want(4, WantedOutput::Scalar);
        assert!(verify(&io(&[None]), &w).is_empty());
        assert!(verify(&io(&[None, Some(1)]), &w).is_empty());
        assert_eq!(
            keys(&verify(&io(&[None, Some(3)]), &w)),
            [IoKey::OutputName]
        );
        assert_eq!(keys(&verify(&io(&[Some(8)]), &w)), [IoKey::OutputName]);
    }

    #[test]
    fn every_mismatch_is_reported_at_once() {
        let io = ModelIo {
            inputs: vec![t("X", &[None, Some(7)], Elem::F64)],
            outputs: vec![t("probabilities", &[None, Some(5)], Elem::F32)],
            metadata: BTreeMap::new(),
        };
        let m = verify(&io, &want(4, WantedOutput::Classes(3)));
        assert_eq!(
            keys(&m),
            [IoKey::Input, IoKey::Features, IoKey::OutputClasses]
        );
    }
}
