"""Evaluate the shipped demo fault model as the twin runs it:

    .venv/bin/python models/demo/evaluate_fault.py          # TWIN=path/to/twin to pick the binary

Records held-out runs of every shipped scenario (plant-configs/scenarios/,
as they are, with a seed no training run uses) and a healthy run, with the
demo config *without* its `[[models]]`; then replays each recording through
the twin with the demo config carrying the model's entry
(models/demo_fault.toml; written to the work folder as `plant-model.toml`)

    twin replay plant-model.toml R.mcap --events E.jsonl

and scores the twin's own `prediction` and `alarm` events against the
labels: per-class precision and recall of the predicted class on the rows
the twin scored as good, episodes detected by an alarm of their class, the
delay after the fault's start (and for bearing wear the lead before the
bearing fails), and false alarms per 8 h of fault-free time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_features import CLASSES, TICK_S, tick_of  # noqa: E402
from runs import ENTRY, MODEL, ROOT, config_with_model, episodes, eval_plan, generate, row_labels, twin_binary  # noqa: E402
from scoring import Alarm, per_class, score_run, table  # noqa: E402


def replay(cfg: Path, rec: Path, out: Path) -> None:
    if out.exists() and out.stat().st_mtime > max(rec.stat().st_mtime, ENTRY.stat().st_mtime, MODEL.stat().st_mtime):
        return
    cmd = [twin_binary(), "replay", str(cfg), str(rec), "--events", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{p.stderr[-2000:]}")


def twin_outputs(path: Path):
    """(ticks, class index, good) of the predictions, and the alarms."""
    import json

    ticks, cls, good, alarms, open_ = [], [], [], [], {}
    with open(path, "rb") as fh:
        for raw in fh:
            if b'"type":"prediction"' not in raw and b'"type":"alarm"' not in raw:
                continue
            e = json.loads(raw)
            if e["type"] == "prediction":
                ticks.append(tick_of(e["t"]))
                cls.append(CLASSES.index(e["class"]))
                good.append(e["quality"] == "good")
            elif e["state"] == "raised":
                a = Alarm(e["class"], tick_of(e["t"]) * TICK_S, None)
                alarms.append(a)
                open_[e["class"]] = a
            elif e["class"] in open_:
                open_.pop(e["class"]).cleared_s = tick_of(e["t"]) * TICK_S
    return np.array(ticks), np.array(cls), np.array(good, dtype=bool), alarms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(ROOT / "target" / "demo-fault"), help="folder for the recordings")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--report", default=None, help="also write the tables (markdown) here")
    a = ap.parse_args()
    t0 = time.time()
    work = Path(a.work)
    runs = eval_plan()
    print(f"recording {len(runs)} held-out runs ({sum(r.duration_s for r in runs) / 3600:.1f} h of sim time)")
    generate(runs, work, a.jobs)
    cfg = config_with_model(work / "plant-model.toml")
    ys, preds, scores = [], [], {}
    for r in runs:
        out = work / f"{r.name}.replay.jsonl"
        replay(cfg, r.files["record"], out)
        ticks, cls, good, alarms = twin_outputs(out)
        eps = episodes(Path(r.files["labels"]))
        y = row_labels(ticks, eps)
        keep = good & (y >= 0)
        ys.append(y[keep])
        preds.append(cls[keep])
        name = r.name.removeprefix("eval_")
        scores[name] = score_run(alarms, eps, r.duration_s)
        print(f"  {name}: {len(ticks)} predictions, {len(alarms)} alarms: " + ", ".join(f"{x.cls}@{x.raised_s:.0f}s" for x in alarms[:8]))
    out = [
        "### Held-out runs, replayed through the twin (its own prediction and alarm events)",
        "",
        table(scores),
        "",
        "### Held-out rows: the predicted class of every good prediction against the label",
        "",
        per_class(np.concatenate(ys), np.concatenate(preds)),
    ]
    print("\n".join(out))
    if a.report:
        Path(a.report).write_text("\n".join(out) + "\n")
    print(f"done in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
