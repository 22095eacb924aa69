"""Time a model under Python onnxruntime at batch 1, 16 and 256, with the
twin's session options: the Python reference for `benches/ml_run.rs`
(docs/benchmarks.md, "ONNX Runtime").

    .venv/bin/python models/tools/bench_ort.py [MODEL] [SECONDS]

MODEL defaults to tests/models/linear_softmax.onnx; each batch size is
timed for SECONDS (default 3) after a 1 s warm-up, in rounds of runs, and
the median round is reported as µs per run and per row. The rows are
irregular values from a fixed seed, as in the bench.
"""

import statistics
import sys
import time

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from ort_run import session  # noqa: E402  (the same options as the parity test)


def time_batch(sess, name: str, x: np.ndarray, seconds: float) -> float:
    feed = {name: x}
    end = time.perf_counter() + 1.0
    while time.perf_counter() < end:
        sess.run(None, feed)
    rounds = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        k = 200
        t0 = time.perf_counter()
        for _ in range(k):
            sess.run(None, feed)
        rounds.append((time.perf_counter() - t0) / k)
    return statistics.median(rounds)


def main() -> None:
    model = sys.argv[1] if len(sys.argv) > 1 else "tests/models/linear_softmax.onnx"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    sess = session(model)
    inp = sess.get_inputs()[0]
    features = inp.shape[1]
    rng = np.random.default_rng(7)
    print(f"model {model}, onnxruntime {__import__('onnxruntime').__version__}")
    print("batch  us/run  us/row")
    for n in (1, 16, 256):
        x = rng.uniform(-4.0, 4.0, size=(n, features)).astype(np.float32)
        per_run = time_batch(sess, inp.name, x, seconds)
        print(f"{n:5d}  {per_run * 1e6:6.2f}  {per_run * 1e6 / n:6.3f}")


if __name__ == "__main__":
    main()
