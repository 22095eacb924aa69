"""Write the tiny ONNX models the Rust tests and the `ml_run` bench load.

    .venv/bin/python models/tools/make_test_models.py tests/models

Deterministic: every weight is a fixed formula or comes from a seeded
generator, and every graph is built with `onnx.helper`, so the same onnx,
numpy and scikit-learn versions (scripts/requirements-test.txt) write
byte-identical files. The files are committed (tests/models/); run this
again only to change them, and commit the result.

What each model is for:
- linear_softmax.onnx: float32 [N, 4] -> `probabilities` float32 [N, 3], a
  linear layer and a softmax: the parity test's and the bench's model, and
  the shape a fault model has.
- nan.onnx: float32 [N, 4] -> `score` float32 [N, 1], always NaN: the stage
  must turn it into an `error` event, so the runtime must hand NaN back.
- wrong_shape.onnx: float32 [N, 7] -> `probabilities` float32 [N, 5]: what
  a config written for another model meets.
- fixed_batch.onnx: float32 [8, 4] -> `score` float32 [8]: a batch dimension
  neither dynamic nor 1.
- misdeclared.onnx: float32 [N, 4] -> `summary` declared float32 [N, 4] but
  computed [1, 4] (the batch's mean): an exporter's wrong symbolic shape.
  The runtime hands ORT an output tensor shaped from the declaration; ORT
  refuses it, and the runtime must fall back to letting ORT shape it.
- sklearn_zipmap.onnx: a scikit-learn classifier exported with skl2onnx's
  default ZipMap, whose probabilities are a sequence of maps, not a tensor.
- setpoint_up.onnx, setpoint_down.onnx: float32 [N, 4] -> `setpoints`
  float32 [N, 2], the first two features plus 0.35 (up) or minus 0.1
  (down): setpoint models for the optimiser's tests. Fed the two belt
  speeds, they propose both belts 0.35 m/s faster (the outfeed's corner
  then throws bottles off) or 0.1 m/s slower (as much throughput for less
  energy). The contract of a real setpoint model is the same: input
  [batch, n_features], output [batch, len(output.setpoints)] in the
  setpoint tags' units.
- sklearn_logreg.onnx: the same classifier exported with
  `options={"zipmap": False}`: a real converter's graph (label int64 [N],
  probabilities float32 [N, 3]) for the parity test.
"""

import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

OPSET = 17
N_FEATURES = 4
N_CLASSES = 3


def save(model: onnx.ModelProto, path: Path) -> None:
    # skl2onnx lists the opsets it used in set order, which changes with
    # Python's string hashing from run to run; sorted, the bytes are stable.
    opsets = sorted(model.opset_import, key=lambda o: o.domain)
    del model.opset_import[:]
    model.opset_import.extend(opsets)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString(deterministic=True))


def model_of(graph: onnx.GraphProto, meta: dict) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="twin make_test_models.py",
        ir_version=9,
    )
    for k, v in sorted(meta.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    return model


def linear_softmax() -> onnx.ModelProto:
    # Fixed, irregular weights: parity must hold for values that are not
    # round numbers in binary.
    w = np.array(
        [[0.7 * np.sin(1.3 * i + 0.4 * j) for j in range(N_CLASSES)] for i in range(N_FEATURES)],
        dtype=np.float32,
    )
    b = np.array([0.11, -0.27, 0.05], dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "linear_softmax",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", N_FEATURES])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", N_CLASSES])],
        initializer=[
            helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.flatten().tolist()),
            helper.make_tensor("B", TensorProto.FLOAT, b.shape, b.tolist()),
        ],
    )
    return model_of(graph, {"twin.classes": "normal,jam,bearing_wear"})


def nan_model() -> onnx.ModelProto:
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["X", "nan"], ["xn"]),
            helper.make_node("ReduceSum", ["xn", "axes"], ["score"], keepdims=1),
        ],
        "nan",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", N_FEATURES])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])],
        initializer=[
            helper.make_tensor("nan", TensorProto.FLOAT, [1], [float("nan")]),
            helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        ],
    )
    return model_of(graph, {})


def setpoint_offset(name: str, offset: float) -> onnx.ModelProto:
    # y = X @ W + b with W passing the first two features through.
    w = np.zeros((N_FEATURES, 2), dtype=np.float32)
    w[0, 0] = w[1, 1] = 1.0
    b = np.full(2, offset, dtype=np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["X", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "B"], ["setpoints"]),
        ],
        name,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", N_FEATURES])],
        [helper.make_tensor_value_info("setpoints", TensorProto.FLOAT, ["N", 2])],
        initializer=[
            helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.flatten().tolist()),
            helper.make_tensor("B", TensorProto.FLOAT, b.shape, b.tolist()),
        ],
    )
    return model_of(graph, {})


def wrong_shape() -> onnx.ModelProto:
    w = np.full((7, 5), 0.1, dtype=np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["probabilities"])],
        "wrong_shape",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 7])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 5])],
        initializer=[helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.flatten().tolist())],
    )
    return model_of(graph, {})


def fixed_batch() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["X", "axes"], ["score"], keepdims=0)],
        "fixed_batch",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [8, N_FEATURES])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, [8])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    return model_of(graph, {})


def misdeclared() -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["X"], ["summary"], axes=[0], keepdims=1)],
        "misdeclared",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", N_FEATURES])],
        [helper.make_tensor_value_info("summary", TensorProto.FLOAT, ["N", N_FEATURES])],
    )
    return model_of(graph, {})


def sklearn_models() -> tuple[onnx.ModelProto, onnx.ModelProto]:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(11)
    centres = rng.normal(0.0, 3.0, size=(N_CLASSES, N_FEATURES))
    x = np.concatenate([c + rng.normal(0.0, 1.0, size=(60, N_FEATURES)) for c in centres])
    y = np.repeat(np.arange(N_CLASSES), 60)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    types = [("X", FloatTensorType([None, N_FEATURES]))]
    zipmap = to_onnx(clf, initial_types=types, target_opset=OPSET)
    plain = to_onnx(
        clf, initial_types=types, target_opset=OPSET, options={id(clf.steps[-1][1]): {"zipmap": False}}
    )
    return zipmap, plain


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/models")
    out.mkdir(parents=True, exist_ok=True)
    save(linear_softmax(), out / "linear_softmax.onnx")
    save(nan_model(), out / "nan.onnx")
    save(wrong_shape(), out / "wrong_shape.onnx")
    save(fixed_batch(), out / "fixed_batch.onnx")
    save(misdeclared(), out / "misdeclared.onnx")
    save(setpoint_offset("setpoint_up", 0.35), out / "setpoint_up.onnx")
    save(setpoint_offset("setpoint_down", -0.1), out / "setpoint_down.onnx")
    zipmap, plain = sklearn_models()
    save(zipmap, out / "sklearn_zipmap.onnx")
    save(plain, out / "sklearn_logreg.onnx")
    (out / "not_a_model.onnx").write_bytes(b"this is not an ONNX protobuf\n")


if __name__ == "__main__":
    main()
