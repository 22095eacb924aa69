"""Parity of the demo setpoint model: the twin's `prediction` events
(`values` per setpoint tag) against Python's own computation of the same
rows, scored by Python onnxruntime.

    .venv/bin/python models/demo/parity_setpoint.py [--twin PATH] [--scenario FILE] [--for 150s] [--tolerance 1e-5]

As parity_fault.py does for the fault model: records a short headless run of
the demo config with the setpoint model's entry (models/demo_setpoint.toml)
added, and `[[setpoints]]` for its tags where the config has none yet,
replays the recording with the same config, rebuilds every feature row from
the replay's own event stream (setpoint_features.py) and runs the model on
them under onnxruntime with the twin's session options. Every prediction
must match within the tolerance (the stream rounds to 6 decimals), the twin
must predict on exactly the rows Python calls good (`on_bad_input =
"suppress"`). Exit 0 when they agree, 1 when not.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tools"))

from fault_features import TICK_S, tick_of  # noqa: E402
from ort_run import session  # noqa: E402
from runs import DEMO, MODELS_MARKER, ROOT, SCENARIOS, twin_binary  # noqa: E402
from setpoint_features import EVERY_S, SETPOINTS, grid_of, models_toml, rows_at  # noqa: E402


def run(cmd):
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{p.stderr[-3000:]}")


def config_with_model(model: Path) -> str:
    text = DEMO.read_text()
    cut = text.find(MODELS_MARKER)
    if cut >= 0:
        text = text[:cut]
    # Which tags already have a `[[setpoints]]` entry is read from the parsed
    # config, not from its text: the entries' keys come in any order (the demo
    # config puts `mode` before `min`), and a second entry for a tag is a
    # config error.
    have = {s.get("tag") for s in tomllib.loads(text).get("setpoints", [])}
    for tag in SETPOINTS:
        if tag not in have:
            text += f'\n[[setpoints]]\ntag = "{tag}"\nmin = 0.1\nmax = 1.2\nmax_step = 0.1\nenabled = false\n'
    return text + "\n" + models_toml(path=str(model))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--twin", default=None, help="the twin binary (default: $TWIN, then the usual places)")
    ap.add_argument("--scenario", default=str(SCENARIOS / "transfer_jam.toml"))
    ap.add_argument("--for", dest="duration", default="150s")
    ap.add_argument("--seed", default="5")
    ap.add_argument("--tolerance", type=float, default=1e-5)
    ap.add_argument("--model", default=str(ROOT / "models" / "demo_setpoint.onnx"))
    a = ap.parse_args()
    if a.twin:
        os.environ["TWIN"] = a.twin
    twin = twin_binary()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = tmp / "plant.toml"
        cfg.write_text(config_with_model(Path(a.model).resolve()))
        rec, first, replayed = tmp / "run.mcap", tmp / "run.jsonl", tmp / "replay.jsonl"
        run([twin, "demo", "--headless", "--config", cfg, "--scenario", a.scenario, "--for", a.duration,
             "--seed", a.seed, "--events", first, "--labels", tmp / "labels.jsonl", "--record", rec])
        run([twin, "replay", cfg, rec, "--events", replayed])
        grid = grid_of(str(replayed))
    seconds = np.arange(EVERY_S, int(grid.ticks * TICK_S) + 1, EVERY_S)
    X, good = rows_at(grid, seconds)
    sess = session(a.model)
    out = sess.run(None, {sess.get_inputs()[0].name: X})[0]
    by_tick = {int(round(s / TICK_S)): i for i, s in enumerate(seconds)}
    preds = [e for e in grid.events if e["type"] == "prediction" and e.get("task") == "setpoint"]
    if not preds:
        print("the twin wrote no setpoint predictions: is the model in the config?")
        return 1
    worst, mismatch, seen = [], [], set()
    for e in preds:
        i = by_tick.get(tick_of(e["t"]))
        if i is None or not good[i]:
            mismatch.append((e["t"], "twin predicted, Python calls the row not good"))
            continue
        seen.add(i)
        diff = max(abs(e["values"][s] - float(out[i, j])) for j, s in enumerate(SETPOINTS))
        worst.append((diff, e["t"], i, e["values"]))
    for i in np.flatnonzero(good):
        if int(i) not in seen:
            mismatch.append((f"{seconds[i]} s", "Python row good, no twin prediction"))
    worst.sort(key=lambda w: -w[0])
    top = worst[0][0] if worst else float("nan")
    print(json.dumps({"predictions": len(preds), "compared": len(worst), "max_abs_diff": top,
                      "row_mismatches": len(mismatch), "tolerance": a.tolerance}))
    for m in mismatch[:5]:
        print("  rows differ:", *m)
    bad = [w for w in worst if w[0] > a.tolerance]
    for d, t, i, vals in bad[:5]:
        print(f"  {t}: diff {d:.2e}; twin {vals}; python {dict(zip(SETPOINTS, out[i].round(6).tolist()))}")
        print(f"    row {X[i].tolist()}")
    return 0 if worst and not bad and not mismatch else 1


if __name__ == "__main__":
    sys.exit(main())
