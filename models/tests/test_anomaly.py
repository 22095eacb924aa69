"""Self-test of the generic anomaly path (models/train_anomaly.py and friends).

Run from the repository root (plain unittest: no test runner to pin):

    .venv/bin/python -m unittest discover -s models/tests -v

It generates the 50-variable correlated CSVs, trains on the normal one, and checks
on the faulty one: mean detection ≥ 0.90 at ≤ 5 % false alarms, and that
onnxruntime's scores equal the NumPy reference within 1e-5. Deterministic (seeded),
a few seconds on one core.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import sys
import tempfile
import tomllib
import unittest
from contextlib import redirect_stdout

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import anomaly as an  # noqa: E402
import evaluate as ev  # noqa: E402
import make_correlated_csv as gen  # noqa: E402
import train_anomaly as tr  # noqa: E402

FALSE_ALARM_TARGET = 0.01


def ort_session(path: str):
    """An onnxruntime session set up as the twin sets up its own (ML_DESIGN.md):
    one intra-op and one inter-op thread, sequential, all graph optimisations."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def train(out_dir: str, data: str, *extra: str) -> dict:
    args = tr.build_parser().parse_args([data, "-o", os.path.join(out_dir, "plant_anomaly.onnx"),
                                         "--false-alarm", str(FALSE_ALARM_TARGET), *extra])
    with redirect_stdout(io.StringIO()):
        return tr.train(args)


class GenericPathOnCorrelatedCsv(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="twin-anomaly-")
        with redirect_stdout(io.StringIO()):
            gen.main(["--out", cls.dir, "--seed", "7"])
        cls.normal = os.path.join(cls.dir, "normal.csv")
        cls.faulty = os.path.join(cls.dir, "faulty.csv")
        cls.labels = os.path.join(cls.dir, "faulty.labels.jsonl")
        cls.out = os.path.join(cls.dir, "model")
        cls.res = train(cls.out, cls.normal, "--test", cls.faulty, "--labels", cls.labels)
        cls.model = cls.res["model"]

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_generated_csv_has_50_correlated_variables(self):
        s = an.read_wide_csv(self.normal)
        self.assertEqual(len(s.tags), 50)
        g = an.to_grid(s, an.NS)
        corr = np.corrcoef(g.values.T)
        off = np.abs(corr[~np.eye(50, dtype=bool)])
        self.assertGreater(np.mean(off > 0.5), 0.1, "the variables should be strongly correlated")

    def test_generator_is_deterministic(self):
        other = tempfile.mkdtemp(prefix="twin-anomaly-gen-")
        try:
            with redirect_stdout(io.StringIO()):
                gen.main(["--out", other, "--seed", "7"])
            for name in ("normal.csv", "faulty.csv", "faulty.labels.jsonl"):
                with open(os.path.join(self.dir, name), "rb") as a, open(os.path.join(other, name), "rb") as b:
                    self.assertEqual(a.read(), b.read(), name)
        finally:
            shutil.rmtree(other, ignore_errors=True)

    def test_detects_faults_at_low_false_alarms(self):
        res = self.res["faulty"]
        self.assertEqual(len(res["faults"]), 6)
        self.assertGreaterEqual(res["mean_detection"], 0.90, ev.report(res))
        self.assertLessEqual(res["false_alarm_row_share"], 0.05, ev.report(res))
        self.assertLessEqual(res["false_alarm_time_share"], 0.05, ev.report(res))
        self.assertEqual(res["faults_detected"], 6, ev.report(res))

    def test_threshold_is_calibrated_on_held_out_normal_rows(self):
        held = self.res["held"]
        # The calibration part meets the target by construction; the measure part,
        # which fitted and calibrated nothing, must come close to it.
        self.assertLessEqual(held["row_share_over_cal"], FALSE_ALARM_TARGET + 1.0 / held["rows_calibrate"])
        self.assertLessEqual(held["row_share_over_test"], 3 * FALSE_ALARM_TARGET)
        self.assertGreater(held["rows_test"], 1000)

    def test_onnx_scores_equal_numpy_reference(self):
        t_ns, scores, valid = tr.score_data(self.model, self.faulty, tr.build_parser().parse_args([self.faulty]))
        s = an.read_wide_csv(self.faulty)
        rows, _, ok = an.lagged_rows(an.to_grid(s, an.NS, self.model.tags), self.model.n_blocks)
        # The reference sees what the graph sees: the row as float32, the twin's input type.
        rows = rows[ok].astype(np.float32)
        ref = self.model.score(rows.astype(np.float64))
        sess = ort_session(self.res["onnx"])
        got = np.concatenate([sess.run(["score"], {"X": rows[i:i + 256].astype(np.float32)})[0]
                              for i in range(0, len(rows), 256)])
        self.assertEqual(got.shape, ref.shape)
        err = np.abs(got.astype(np.float64) - ref) / np.maximum(1.0, np.abs(ref))
        self.assertLessEqual(float(err.max()), 1e-5)
        # Batch 1 gives the same as the batch the row was in.
        one = sess.run(["score"], {"X": rows[100:101].astype(np.float32)})[0]
        self.assertLessEqual(abs(float(one[0]) - float(got[100])), 1e-5 * max(1.0, abs(float(got[100]))))
        # And the faults make the scores move: the check above is not on a constant.
        self.assertGreater(float(np.max(ref)), 3 * self.model.threshold)

    def test_onnx_io_contract_and_metadata(self):
        import onnx

        m = onnx.load(self.res["onnx"])
        (inp,) = m.graph.input
        (out,) = m.graph.output
        self.assertEqual(inp.name, "X")
        self.assertEqual(inp.type.tensor_type.elem_type, onnx.TensorProto.FLOAT)
        dims = inp.type.tensor_type.shape.dim
        self.assertEqual(len(dims), 2)
        self.assertEqual(dims[0].dim_param, "batch")
        self.assertEqual(dims[1].dim_value, self.model.n_features)
        self.assertEqual(out.name, "score")
        self.assertEqual([d.dim_param for d in out.type.tensor_type.shape.dim], ["batch"])
        meta = {p.key: p.value for p in m.metadata_props}
        self.assertEqual(float(meta["twin.threshold"]), self.model.threshold)
        self.assertEqual(meta["twin.task"], "anomaly")
        self.assertEqual(json.loads(meta["twin.tags"]), self.model.tags)
        self.assertLess(os.path.getsize(self.res["onnx"]), 5 * 1024 * 1024)
        ops = {n.op_type for n in m.graph.node}
        self.assertTrue(ops <= {"Cast", "Sub", "Div", "Slice", "Unsqueeze", "Concat", "MatMul",
                                "Mul", "ReduceSum", "Add"}, ops)

    def test_config_snippet_matches_model(self):
        with open(self.res["toml"], "rb") as f:
            cfg = tomllib.load(f)
        (m,) = cfg["models"]
        self.assertEqual(m["task"], "anomaly")
        self.assertEqual(m["id"], "plant_anomaly")
        self.assertEqual(m["path"], "plant_anomaly.onnx")
        self.assertEqual(m["every"], "1s")
        self.assertEqual(m["output"]["threshold"], self.model.threshold)
        self.assertEqual(m["alarm"]["threshold"], self.model.threshold)
        self.assertLess(m["alarm"]["deadband"], self.model.threshold)
        feats = m["features"]
        self.assertEqual(len(feats), self.model.n_features)
        v = self.model.n_vars
        # Lag-major: block k is every tag k grid steps (k seconds) ago.
        for k in range(self.model.n_blocks):
            for j, tag in enumerate(self.model.tags):
                f = feats[k * v + j]
                self.assertEqual(f["tag"], tag)
                if k == 0:
                    self.assertEqual(f["stat"], "value")
                    self.assertNotIn("lag", f)
                else:
                    self.assertEqual((f["stat"], f["lag"]), ("lag", f"{k}s"))

    def test_model_card_reports_held_out_metrics(self):
        with open(self.res["card"], encoding="utf-8") as f:
            card = f.read()
        for needle in ("## Data", "## Method", "## Held-out normal data", "## Data with faults",
                       f"{self.model.threshold:.6g}", "`x01`", "Mean detection"):
            self.assertIn(needle, card)

    def test_training_is_deterministic(self):
        other = tempfile.mkdtemp(prefix="twin-anomaly-again-")
        try:
            again = train(other, self.normal)
            with open(self.res["onnx"], "rb") as a, open(again["onnx"], "rb") as b:
                self.assertEqual(a.read(), b.read())
        finally:
            shutil.rmtree(other, ignore_errors=True)


    def test_parts_of_a_recording_train_as_one(self):
        with open(self.normal, encoding="utf-8") as f:
            lines = f.readlines()
        half = len(lines) // 2
        parts = [os.path.join(self.dir, f"part{i}.csv") for i in (1, 2)]
        # The second part first: the order of the files must not matter.
        for path, body in zip(parts, (lines[half:], lines[1:half])):
            with open(path, "w", encoding="utf-8") as f:
                f.writelines([lines[0], *body])
        other = tempfile.mkdtemp(prefix="twin-anomaly-parts-")
        try:
            args = tr.build_parser().parse_args([*parts, "-o", os.path.join(other, "m.onnx"),
                                                 "--false-alarm", str(FALSE_ALARM_TARGET)])
            with redirect_stdout(io.StringIO()):
                again = tr.train(args)
            self.assertEqual(again["model"].threshold, self.model.threshold)
            np.testing.assert_array_equal(again["model"].p, self.model.p)
        finally:
            shutil.rmtree(other, ignore_errors=True)


class FeatureSemantics(unittest.TestCase):
    """The grid and lags must mean what the twin's feature stage means (ML_DESIGN.md)."""

    def samples(self):
        t = np.array([0, 300, 1_500, 2_000, 4_100], dtype=np.int64) * 1_000_000  # ms → ns
        v = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
        good = np.array([True, True, False, True, True])
        c = np.arange(0, 4_200, 100, dtype=np.int64) * 1_000_000
        return an.Samples({"a": (t, v, good), "c": (c, np.zeros(len(c)), np.ones(len(c), bool))},
                          "mem", tick_ns=100_000_000, epoch_ns=0)

    def test_grid_holds_the_last_sample_at_or_before_each_step(self):
        g = an.to_grid(self.samples(), an.NS, ["a"])
        # Steps at 0, 1, 2, 3, 4 s: the sample at 2.000 s counts at the 2 s step, and the
        # bad one at 1.5 s is never current at a step.
        self.assertEqual(g.values[:, 0].tolist(), [1.0, 2.0, 4.0, 4.0, 4.0])
        self.assertEqual(g.good[:, 0].tolist(), [True, True, True, True, True])
        g = an.to_grid(self.samples(), 500_000_000, ["a"])
        self.assertEqual(g.values[3:5, 0].tolist(), [3.0, 4.0])
        self.assertEqual(g.good[3:5, 0].tolist(), [False, True], "a bad sample makes its steps bad")

    def test_lag_k_is_the_value_k_steps_ago(self):
        g = an.to_grid(self.samples(), an.NS, ["a"])
        rows, idx, ok = an.lagged_rows(g, 3)
        self.assertEqual(idx.tolist(), [2, 3, 4])
        self.assertEqual(rows[0].tolist(), [4.0, 2.0, 1.0])
        self.assertTrue(ok.all())
        g = an.to_grid(self.samples(), 500_000_000, ["a"])
        rows, idx, ok = an.lagged_rows(g, 2)
        self.assertFalse(ok[idx.tolist().index(3)], "a row with a bad value in its window is not valid")

    def test_constants_and_counters_are_left_out(self):
        n = 400
        rng = np.random.default_rng(1)
        rare = np.cumsum(np.arange(n) % 100 == 0)  # a reject counter: a step now and then
        vals = np.column_stack([rng.normal(size=n), np.full(n, 5.0), np.cumsum(rng.integers(0, 3, n)), rare])
        g = an.Grid(0, an.NS, ["x", "const", "count", "rejects"], vals, np.ones_like(vals, bool))
        kept, dropped = an.choose_tags(g, slice(0, n), None, [])
        self.assertEqual(kept, ["x"])
        self.assertIn("constant", dropped["const"])
        self.assertIn("counter", dropped["count"])
        self.assertIn("counter", dropped["rejects"])
        kept, dropped = an.choose_tags(g, slice(0, n), ["x", "c*"], ["count"])
        self.assertEqual((kept, dropped["count"], dropped["rejects"]), (["x"], "--exclude", "not in --tags"))

    def test_durations_round_trip(self):
        for text, ns in (("1s", an.NS), ("250ms", 250_000_000), ("1h30m", 5400 * an.NS), ("2m", 120 * an.NS)):
            self.assertEqual(an.parse_duration_ns(text), ns)
        self.assertEqual(an.format_duration(120 * an.NS), "2m")
        self.assertEqual(an.format_duration(1500 * 1_000_000), "1500ms")
        self.assertEqual(an.parse_time_ns("1970-01-01T00:00:01.000000002Z"), an.NS + 2)

    def test_mcap_recording_reads_like_the_core(self):
        from mcap.writer import Writer

        path = os.path.join(tempfile.mkdtemp(prefix="twin-anomaly-mcap-"), "rec.mcap")
        try:
            with open(path, "wb") as f:
                w = Writer(f)
                w.start()
                w.add_metadata("twin.recording", {"tick_ns": "100000000", "epoch_ns": "0"})
                sid = w.register_schema("twin.TagSample", "jsonschema", b"{}")
                chans = {t: w.register_channel(f"/tag/{t}", "json", sid) for t in ("a", "b", "s")}
                msgs = [("a", 0, {"value": 1.5, "quality": "good"}),
                        ("b", 0, {"value": True, "quality": "good"}),
                        ("s", 0, {"text": "run", "quality": "good"}),
                        ("a", 900_000_000, {"quality": "bad", "reason": "timeout"}),
                        ("a", 2_000_000_000, {"value": 2.5, "quality": "good"}),
                        ("b", 2_000_000_000, {"value": False, "quality": "good"})]
                for tag, t, body in msgs:
                    w.add_message(chans[tag], log_time=t, data=json.dumps(body).encode(), publish_time=t)
                w.finish()
            s = an.read_mcap(path)
            self.assertEqual(s.tick_ns, 100_000_000)
            self.assertEqual(s.skipped_text, ["s"])
            g = an.to_grid(s, an.NS, ["a", "b"])
            self.assertEqual(g.good[:, 0].tolist(), [True, False, True])
            self.assertEqual(g.values[[0, 2], 0].tolist(), [1.5, 2.5])
            self.assertEqual(g.values[:, 1].tolist(), [1.0, 1.0, 0.0])
        finally:
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)


class Evaluation(unittest.TestCase):
    """models/evaluate.py on hand-made events, until the twin emits predictions."""

    T0 = "2026-01-01T00:00:00Z"

    def t(self, s: float) -> str:
        return an.format_time_ns(an.parse_time_ns(self.T0) + int(s * an.NS))

    def write(self, name: str, lines: list[dict]) -> str:
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")
        return path

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="twin-anomaly-eval-")
        # Two hours of a prediction a second; fault 0 from 1000 s to 1600 s, fault 1
        # from 5000 s with no end. Scores over threshold: 1010..1599 (590 of the 600
        # rows), 5100..end; plus a false alarm from 3000 s to 3060 s.
        events = [{"v": 1, "type": "tick", "t": self.t(0)}]
        for s in range(7200):
            hot = 1010 <= s < 1600 or 3000 <= s < 3060 or s >= 5100
            events.append({"v": 1, "type": "prediction", "t": self.t(s), "model": "m", "task": "anomaly",
                           "score": 5.0 if hot else 1.0, "threshold": 2.0,
                           "quality": "uncertain" if s == 4000 else "good"})
            events.append({"v": 1, "type": "prediction", "t": self.t(s), "model": "other", "task": "anomaly",
                           "score": 9.0, "threshold": 2.0, "quality": "good"})
        for s, state in ((1013, "raised"), (1610, "cleared"), (3003, "raised"), (3070, "cleared"),
                         (5103, "raised")):
            events.append({"v": 1, "type": "alarm", "t": self.t(s), "model": "m", "state": state,
                           "priority": "medium", "value": 5.0, "threshold": 2.0, "reason": "score"})
        self.events = self.write("events.jsonl", events)
        self.labels = self.write("labels.jsonl", [
            {"v": 1, "t": self.t(1000), "sim_t": 1000.0, "edge": "start", "fault": 0, "kind": "jam", "target": {}, "params": {}},
            {"v": 1, "t": self.t(1600), "sim_t": 1600.0, "edge": "end", "fault": 0, "kind": "jam", "target": {}, "params": {}},
            {"v": 1, "t": self.t(5000), "sim_t": 5000.0, "edge": "start", "fault": 1, "kind": "bearing_wear", "target": {"machine": "filler"}, "params": {}},
        ])

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def test_rates_delays_and_false_alarms(self):
        preds, alarms, model = ev.load_events(self.events, "m")
        self.assertEqual(model, "m")
        res = ev.evaluate(preds, alarms, ev.load_labels(self.labels))
        f0, f1 = res["faults"]
        self.assertAlmostEqual(f0["detection_rate"], 590 / 600)
        self.assertEqual(f0["delay_s"], 13.0)
        self.assertAlmostEqual(f1["detection_rate"], 2100 / 2200)
        self.assertEqual(f1["delay_s"], 103.0)
        self.assertAlmostEqual(res["mean_detection"], (590 / 600 + 2100 / 2200) / 2)
        self.assertEqual(res["median_delay_s"], 58.0)
        self.assertEqual(res["uncertain_rows"], 1)
        normal_s = 7200 - 600 - 2200
        self.assertEqual(res["normal_s"], normal_s)
        self.assertEqual(res["false_alarms"], 1)
        self.assertAlmostEqual(res["false_alarms_per_hour"], 3600 / normal_s)
        # Active 3003..3070 and 1600..1610 (after fault 0 ended) in normal time.
        self.assertAlmostEqual(res["false_alarm_time_share"], (67 + 10) / normal_s)
        self.assertAlmostEqual(res["false_alarm_row_share"], 60 / (normal_s - 1))

    def test_grace_moves_the_tail_of_a_fault_out_of_normal_time(self):
        preds, alarms, _ = ev.load_events(self.events, "m")
        res = ev.evaluate(preds, alarms, ev.load_labels(self.labels), grace_ns=60 * an.NS)
        self.assertEqual(res["normal_s"], 7200 - 660 - 2200)
        self.assertAlmostEqual(res["false_alarm_time_share"], 67 / res["normal_s"])

    def test_skip_cuts_the_start_and_faults_after_the_run_are_left_out(self):
        preds, alarms, _ = ev.load_events(self.events, "m")
        faults = ev.load_labels(self.labels)
        faults.append(ev.Fault(9, "jam", {}, an.parse_time_ns(self.t(9000)), None))
        # Cut at 1300 s: inside fault 0 and its alarm, which counts from the cut.
        res = ev.evaluate(preds, alarms, faults, skip_ns=1300 * an.NS)
        self.assertEqual(res["faults_after_run"], 1)
        self.assertEqual(len(res["faults"]), 2)
        self.assertEqual(res["rows"], 7200 - 1300)
        f0 = res["faults"][0]
        self.assertEqual((f0["rows"], f0["detection_rate"], f0["delay_s"]), (300, 1.0, 0.0))
        self.assertEqual(res["normal_s"], 7200 - 1300 - 300 - 2200)

    def test_cli_needs_a_model_when_several_predict(self):
        err = io.StringIO()
        from contextlib import redirect_stderr

        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            self.assertEqual(ev.main([self.events, self.labels]), 2)
        self.assertIn("--model", err.getvalue())
        out = io.StringIO()
        with redirect_stdout(out):
            self.assertEqual(ev.main([self.events, self.labels, "--model", "m", "--json"]), 0)
        res = json.loads(out.getvalue())
        self.assertEqual(res["faults_detected"], 2)
        self.assertTrue(math.isclose(res["false_alarms_per_hour"], 3600 / 4400))


if __name__ == "__main__":
    unittest.main()
