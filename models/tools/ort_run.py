"""Run an ONNX model under Python onnxruntime on rows the Rust side wrote:
the Python half of the Rust-vs-Python parity test (tests/it/ml_runtime.rs).

    .venv/bin/python models/tools/ort_run.py MODEL ROWS.f32 N F OUT_DIR

ROWS.f32 holds N*F little-endian float32 values, row after row. For every
numeric tensor output, OUT_DIR/<output name>.f32 gets its values as
float32 (int64 labels converted, as the twin does), and stdout one JSON
line mapping each such output to its shape. The session uses the twin's
options (docs/ml.md, "Runtime and threads").
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def session(model: str) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_mem_pattern = False
    opts.use_deterministic_compute = True
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def main() -> None:
    model, rows_file, n, f, out_dir = sys.argv[1:6]
    rows = np.fromfile(rows_file, dtype="<f4").reshape(int(n), int(f))
    sess = session(model)
    outputs = sess.run(None, {sess.get_inputs()[0].name: rows})
    shapes = {}
    for meta, value in zip(sess.get_outputs(), outputs):
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
            continue
        value.astype("<f4").tofile(Path(out_dir) / f"{meta.name}.f32")
        shapes[meta.name] = list(value.shape)
    print(json.dumps(shapes))


if __name__ == "__main__":
    main()
