"""Self-test of the demo setpoint model's label logic and feature entry
(models/demo/train_setpoint.py, setpoint_features.py): cheap, no twin runs.

    .venv/bin/python -m unittest discover -s models/tests -v
"""

from __future__ import annotations

import os
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "demo"))

import parity_setpoint as ps  # noqa: E402
import setpoint_features as sf  # noqa: E402
import train_setpoint as ts  # noqa: E402


def cand(vin, vout, tp, lost=0, jam=0.0, pushed=0):
    return {
        "set": {"infeed.speed": vin, "outfeed.speed": vout},
        "candidate": {"throughput_per_min": tp, "lost": lost, "pushed": pushed, "jam_risk": jam},
    }


class SetpointLabels(unittest.TestCase):
    def test_the_label_never_loses_product_or_risks_a_jam(self):
        cs = [
            cand(0.6, 0.6, 60.0),
            cand(1.0, 0.9, 75.0, lost=3),  # the corner throws bottles off
            cand(1.0, 0.6, 70.0, jam=ts.JAM_LIMIT),  # at the limit is vetoed
            cand(0.8, 0.7, 62.0),
            cand(0.8, 0.7, 64.0, pushed=1),
        ]
        b = ts.best(cs)
        self.assertEqual(b["set"], {"infeed.speed": 0.8, "outfeed.speed": 0.7})

    def test_the_energy_penalty_breaks_ties_towards_slower_belts_only(self):
        # Equal throughput: the slower pair wins; one more bottle per minute
        # is worth more than 0.9 m/s of belt speed.
        b = ts.best([cand(0.9, 0.7, 60.0), cand(0.5, 0.5, 60.0), cand(0.9, 0.6, 60.0)])
        self.assertEqual(b["set"], {"infeed.speed": 0.5, "outfeed.speed": 0.5})
        b = ts.best([cand(0.3, 0.3, 60.0), cand(0.8, 0.7, 61.0)])
        self.assertEqual(b["set"], {"infeed.speed": 0.8, "outfeed.speed": 0.7})

    def test_no_vetted_candidate_gives_no_label(self):
        self.assertIsNone(ts.best([cand(0.6, 0.9, 60.0, lost=1), cand(0.2, 0.2, 10.0, jam=0.9)]))
        self.assertIsNone(ts.best([]))

    def test_legalise_clamps_to_bounds_snaps_or_steps(self):
        cur = {"infeed.speed": 0.6, "outfeed.speed": 0.6}
        p = {"infeed.speed": 1.5, "outfeed.speed": 0.44}
        self.assertEqual(ts.legalise(cur, p, step=False), {"infeed.speed": 1.1, "outfeed.speed": 0.4})
        self.assertEqual(ts.legalise(cur, p, step=True), {"infeed.speed": 0.7, "outfeed.speed": 0.5})
        low = {"infeed.speed": 0.0, "outfeed.speed": 0.61}
        self.assertEqual(ts.legalise({"infeed.speed": 0.15, "outfeed.speed": 0.6}, low, step=True),
                         {"infeed.speed": 0.1, "outfeed.speed": 0.61})


class SetpointEntry(unittest.TestCase):
    def test_the_models_entry_lists_the_features_in_the_trained_order(self):
        m = tomllib.loads(sf.models_toml())["models"][0]
        self.assertEqual(m["task"], "setpoint")
        self.assertEqual(m["output"]["setpoints"], sf.SETPOINTS)
        self.assertEqual(len(m["features"]), len(sf.FEATURES))
        for got, f in zip(m["features"], sf.FEATURES):
            self.assertEqual(got.get("tag", got.get("physics")), f.name)
            self.assertEqual(got.get("stat", "value"), f.stat)

    def test_the_shipped_entry_is_the_one_the_script_writes(self):
        path = os.path.join(os.path.dirname(HERE), "demo_setpoint.toml")
        with open(path) as fh:
            self.assertIn(sf.models_toml(), fh.read())


class ParityConfig(unittest.TestCase):
    def tags(self, text):
        return [s["tag"] for s in tomllib.loads(text).get("setpoints", []) if s["tag"] in sf.SETPOINTS]

    def test_the_demo_configs_own_setpoints_are_not_repeated(self):
        # The demo config's entries put `mode` before `min`; a second entry
        # for a tag is a config error, so parity must not add one.
        text = ps.config_with_model(Path("demo_setpoint.onnx"))
        self.assertEqual(sorted(self.tags(text)), sorted(sf.SETPOINTS))

    def test_missing_setpoints_are_added_once(self):
        with tempfile.TemporaryDirectory() as tmp:
            bare = Path(tmp) / "plant.toml"
            bare.write_text('[plant]\nname = "x"\n')
            saved = ps.DEMO
            ps.DEMO = bare
            try:
                text = ps.config_with_model(Path("demo_setpoint.onnx"))
            finally:
                ps.DEMO = saved
        self.assertEqual(sorted(self.tags(text)), sorted(sf.SETPOINTS))


if __name__ == "__main__":
    unittest.main()
