"""Train the demo line's fault model from the headless sim, in one command:

    .venv/bin/python models/demo/train_fault.py            # TWIN=path/to/twin to pick the binary

1. Generates labelled runs of the demo line (`twin demo --headless`, the demo
   config without its `[[models]]`): healthy runs and variants of every fault
   kind of plant-configs/scenarios/ (time, target and size drawn per seed).
2. Rebuilds the twin's feature rows from each run's own event stream
   (fault_features.py: the tick grid, forward fill, windows, population std,
   slope per second) and labels each row with the fault class active.
3. Trains a multi-label random forest (one risk per class, each 0..1 on its
   own: a bearing can wear under an acute fault, and both are true), picks
   the alarm threshold and on-delay on the validation runs (recall >= 90 %,
   at most 1 false alarm per 8 h), refits on training + validation, and
   exports models/demo_fault.onnx (skl2onnx, float32 [N, F] ->
   probabilities [N, C], "normal" first).
4. Writes the matching `[[models]]` entry to models/demo_fault.toml (paths
   relative to plant-configs/), for the demo config's `# --- Models` part;
   `--write-config` also writes it into plant-configs/packaging-line.toml.

Deterministic: fixed seeds for the sim and the forest. Runs that are already
generated in the work folder are reused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fault_features import CLASSES, FEATURES, models_toml, read_grid, rows_of  # noqa: E402
from runs import DEMO, ENTRY, MODEL, MODELS_MARKER, ROOT, episodes, generate, row_labels, row_targets, training_plan  # noqa: E402
from scoring import per_class, score_run, simulate_alarms, table  # noqa: E402

# A regression forest on the multi-hot targets: each leaf holds the share of
# its training rows with each class, so every column is a probability of its
# own (a multi-output tree splits on all classes at once, as a classifier
# does, but no class takes its risk from another).
FOREST = dict(n_estimators=40, max_depth=18, min_samples_leaf=5, random_state=11, n_jobs=1)
DEADBAND = 0.2
OFF_DELAY_S = 30.0
PRIORITY = "high"
# Candidates for the alarm, tried in this order; the first that meets the
# goals on the validation runs wins. A 10 s on-delay first: the validation
# runs are few, and a first held-out evaluation with 3 s raised on short
# excursions (motor heating after a jam) that validation did not have; 10 s
# still raises well inside a 20 s jam.
THRESHOLDS = [0.7, 0.6, 0.8, 0.5]
ON_DELAYS_S = [10.0, 5.0, 20.0, 3.0]


def dataset(runs):
    data = []
    for r in runs:
        g = read_grid(str(r.files["events"]))
        ticks, X, good = rows_of(g)
        eps = episodes(Path(r.files["labels"]))
        Y, keep = row_targets(ticks, eps)
        y = row_labels(ticks, eps)
        data.append(dict(run=r, ticks=ticks, X=X, good=good, Y=Y, keep=keep, y=y, eps=eps))
    return data


def stack(data):
    X = np.concatenate([d["X"][d["good"] & d["keep"]] for d in data])
    Y = np.concatenate([d["Y"][d["good"] & d["keep"]] for d in data])
    y = np.concatenate([d["y"][d["good"] & d["keep"]] for d in data])
    return X, Y, y


def fit(X, Y):
    from sklearn.ensemble import RandomForestRegressor

    assert (Y.sum(axis=0) > 0).all(), "every class needs training rows"
    clf = RandomForestRegressor(**FOREST)
    clf.fit(X, Y)
    return clf


def choose_alarm(clf, val):
    probs = {id(d): clf.predict(d["X"]) for d in val}
    tried = []
    for thr in THRESHOLDS:
        for od in ON_DELAYS_S:
            scores = {}
            for d in val:
                al = simulate_alarms(d["ticks"], probs[id(d)], d["good"], thr, DEADBAND, od, OFF_DELAY_S)
                scores[d["run"].name] = score_run(al, d["eps"], d["run"].duration_s)
            eps = [t for s in scores.values() for _, t in s.detected]
            recall = sum(t is not None for t in eps) / max(1, len(eps))
            hours = sum(s.healthy_s for s in scores.values()) / 3600
            fa = sum(s.false_alarms + s.wrong_class for s in scores.values())
            per8 = fa / hours * 8 if hours else 0.0
            tried.append((thr, od, recall, per8))
            print(f"  alarm threshold {thr} on-delay {od:g}s: recall {recall:.2f}, false+wrong alarms per 8 h {per8:.2f}")
            if recall >= 0.9 and per8 <= 1.0:
                return thr, od, scores
    # none meets both: the fewest false alarms among the best recall
    thr, od, _, _ = max(tried, key=lambda x: (x[2] >= 0.9, -x[3], x[2]))
    print("  no candidate meets both goals; taking the best compromise")
    scores = {}
    for d in val:
        al = simulate_alarms(d["ticks"], probs[id(d)], d["good"], thr, DEADBAND, od, OFF_DELAY_S)
        scores[d["run"].name] = score_run(al, d["eps"], d["run"].duration_s)
    return thr, od, scores


def export(clf, path: Path) -> int:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        clf,
        initial_types=[("X", FloatTensorType([None, len(FEATURES)]))],
        final_types=[("probabilities", FloatTensorType([None, len(CLASSES)]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    onx.doc_string = "twin demo line fault model (models/demo/train_fault.py)"
    # skl2onnx names the graph with a random uuid; a fixed name keeps the
    # file (and so its sha256, which recordings name) the same on every run.
    onx.graph.name = "demo_fault"
    for k, v in {
        "twin.task": "fault",
        "twin.classes": json.dumps(CLASSES),
        "twin.features": json.dumps([f.label() for f in FEATURES]),
    }.items():
        p = onx.metadata_props.add()
        p.key, p.value = k, v
    data = onx.SerializeToString()
    path.write_bytes(data)
    return len(data)


def alarm_dict(thr, od):
    return dict(threshold=float(thr), deadband=DEADBAND, on_delay=f"{od:g}s", off_delay=f"{OFF_DELAY_S:g}s", priority=PRIORITY)


def entry_text(thr, od) -> str:
    """models/demo_fault.toml: the entry for the demo config's `# --- Models`
    part (paths relative to plant-configs/)."""
    return (
        "# The demo fault model (models/demo_fault.md): one row per second for the\n"
        "# whole line, trained from the headless sim by models/demo/train_fault.py,\n"
        "# which writes this entry. Its alarms raise once a class's risk has stayed\n"
        "# at or above the threshold for the on-delay.\n" + models_toml(alarm=alarm_dict(thr, od))
    )


def config_block(thr, od) -> str:
    return f"{MODELS_MARKER} (machine learning) -------------------------------------------\n" + entry_text(thr, od)


def models_part(text: str) -> tuple[str, str, str]:
    """The demo config cut around this model's part: (everything before the
    `# --- Models` marker, the marker and the fault model's entry, the other
    models' entries after it, each with the comment lines that lead it)."""
    cut = text.find(MODELS_MARKER)
    if cut < 0:
        return text.rstrip("\n") + "\n\n", "", ""
    first = text.find("\n[[models]]", cut)
    nxt = text.find("\n[[models]]", first + 1) if first >= 0 else -1
    if nxt < 0:
        return text[:cut], text[cut:], ""
    # Back up over the blank and comment lines that introduce the next entry.
    lines = text[:nxt + 1].splitlines(keepends=True)
    while lines and (lines[-1].startswith("#") or not lines[-1].strip()):
        lines.pop()
    end = len("".join(lines))
    return text[:cut], text[cut:end].rstrip("\n") + "\n", "\n" + text[end:].lstrip("\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(ROOT / "target" / "demo-fault"), help="folder for the generated runs")
    ap.add_argument("--jobs", type=int, default=2, help="runs generated at once")
    ap.add_argument("--write-config", action="store_true", help="write the [[models]] entry into the demo config")
    ap.add_argument("--report", default=None, help="write the validation tables (markdown) here")
    a = ap.parse_args()
    t0 = time.time()
    runs = training_plan()
    print(f"generating {len(runs)} runs ({sum(r.duration_s for r in runs) / 3600:.1f} h of sim time) in {a.work}")
    generate(runs, Path(a.work), a.jobs)
    print(f"  {time.time() - t0:.0f} s")
    data = dataset(runs)
    train = [d for d in data if d["run"].split == "train"]
    val = [d for d in data if d["run"].split == "val"]
    Xt, Yt, _ = stack(train)
    print(f"training rows {len(Yt)}: " + ", ".join(f"{c} {int(Yt[:, i].sum())}" for i, c in enumerate(CLASSES)))
    clf = fit(Xt, Yt)
    Xv, _, yv = stack(val)
    report = [
        "### Validation rows (most likely class; rows the twin would score, labelled)",
        "",
        per_class(yv, clf.predict(Xv).argmax(axis=1)),
    ]
    thr, od, scores = choose_alarm(clf, val)
    report += ["", f"### Validation runs, alarm threshold {thr}, on-delay {od:g} s (Python alarm simulation)", "", table(scores)]
    print("\n".join(report))
    # Refit on everything labelled, with the alarm chosen on validation.
    X, Y, _ = stack(data)
    final = fit(X, Y)
    size = export(final, MODEL)
    print(f"wrote {MODEL} ({size} bytes; {len(Y)} rows, {len(FEATURES)} features, {len(CLASSES)} classes)")
    block = config_block(thr, od)
    ENTRY.write_text(entry_text(thr, od))
    print(f"wrote the [[models]] entry to {ENTRY}")
    head, current, rest = models_part(DEMO.read_text())
    if a.write_config:
        DEMO.write_text(head + block + rest)
        print(f"wrote the [[models]] entry into {DEMO}")
    elif current and current != block:
        print(f"NOTE: {DEMO} does not carry this model's entry; rerun with --write-config", file=sys.stderr)
    if a.report:
        Path(a.report).write_text("\n".join(report) + "\n")
    print(f"done in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
