"""Parity of the demo fault model: the twin's `prediction` events against
Python's own computation of the same rows, scored by Python onnxruntime.

    .venv/bin/python models/demo/parity_fault.py [--twin PATH] [--scenario FILE] [--for 150s] [--tolerance 1e-4]

Records a short headless run of the demo config with the model's entry
(models/demo_fault.toml) added, replays the recording with the same config, rebuilds every
feature row from the replay's own event stream (fault_features.py) and runs
the shipped model on them under onnxruntime with the twin's session options
(models/tools/ort_run.py). Every good prediction of the replay must match
Python's risk per class within the tolerance, and the rows the twin called
good must be the rows Python calls good. Exit 0 when they agree, 1 when not
(the worst rows are printed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tools"))

from fault_features import CLASSES, read_grid, rows_of, tick_of  # noqa: E402
from ort_run import session  # noqa: E402
from runs import ROOT, SCENARIOS, config_with_model, twin_binary  # noqa: E402


def run(cmd):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{p.stderr[-3000:]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--twin", default=None, help="the twin binary (default: $TWIN, then the usual places)")
    ap.add_argument("--scenario", default=str(SCENARIOS / "transfer_jam.toml"))
    ap.add_argument("--for", dest="duration", default="150s")
    ap.add_argument("--seed", default="5")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--model", default=str(ROOT / "models" / "demo_fault.onnx"))
    a = ap.parse_args()
    if a.twin:
        os.environ["TWIN"] = a.twin
    twin = twin_binary()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rec, first, replayed = tmp / "run.mcap", tmp / "run.jsonl", tmp / "replay.jsonl"
        cfg = config_with_model(tmp / "plant.toml", Path(a.model))
        run([twin, "demo", "--headless", "--config", cfg, "--scenario", a.scenario, "--for", a.duration,
             "--seed", a.seed, "--events", first, "--labels", tmp / "labels.jsonl", "--record", rec])
        run([twin, "replay", cfg, rec, "--events", replayed])
        grid = read_grid(str(replayed))
    ticks, X, good = rows_of(grid)
    sess = session(a.model)
    probs = sess.run(["probabilities"], {sess.get_inputs()[0].name: X})[0]
    by_tick = {int(k): i for i, k in enumerate(ticks)}
    preds = [e for e in grid.events if e["type"] == "prediction"]
    if not preds:
        print("the twin wrote no prediction events: is the model in the config?")
        return 1
    worst, compared, quality_mismatch = [], 0, []
    for e in preds:
        i = by_tick.get(tick_of(e["t"]))
        if i is None:
            quality_mismatch.append((e["t"], "no Python row"))
            continue
        twin_good = e["quality"] == "good"
        if twin_good != bool(good[i]):
            quality_mismatch.append((e["t"], f"twin {e['quality']}, Python {'good' if good[i] else 'uncertain'}"))
        if not (twin_good and good[i]):
            continue
        compared += 1
        diff = max(abs(e["risk"][c] - float(probs[i, j])) for j, c in enumerate(CLASSES) if j > 0)
        worst.append((diff, e["t"], i, e["risk"]))
    worst.sort(key=lambda w: -w[0])
    top = worst[0][0] if worst else float("nan")
    print(json.dumps({"predictions": len(preds), "compared": compared, "max_abs_diff": top,
                      "quality_mismatches": len(quality_mismatch), "tolerance": a.tolerance}))
    for q in quality_mismatch[:5]:
        print("  quality differs:", *q)
    bad = [w for w in worst if w[0] > a.tolerance]
    for d, t, i, risk in bad[:5]:
        print(f"  {t}: diff {d:.2e}; twin {risk}; python {dict(zip(CLASSES[1:], probs[i, 1:].round(6).tolist()))}")
        print(f"    row {X[i].tolist()}")
    return 0 if compared > 0 and not bad and not quality_mismatch else 1


if __name__ == "__main__":
    sys.exit(main())
