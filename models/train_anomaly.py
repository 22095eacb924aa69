#!/usr/bin/env python3
"""Train an unsupervised anomaly detector for any plant, from normal operation.

    .venv/bin/python models/train_anomaly.py NORMAL.mcap|NORMAL.csv -o models/plant_anomaly.onnx

NORMAL is a twin recording (`twin run --record`, `twin import`) or a wide CSV (a time
column, one column per tag, as `twin export --wide` writes). It must show the plant
running normally; a few minutes of trouble in hours of data do little harm, a
whole faulty shift teaches the model that trouble is normal.

It writes, next to `-o`:
- `NAME.onnx`  the detector (input `X` float32 [batch, n_features], output `score` [batch];
               threshold in the metadata `twin.threshold`);
- `NAME.md`    the model card: tags, data, method, held-out metrics;
- `NAME.toml`  a `[[models]]` block to paste into the plant config.

Method (docs/anomaly.md): dynamic PCA. Tags are sampled every `--every` on the twin's
tick grid (forward-filled), standardised, stacked with `--lags` lagged copies, and
projected on the principal components that keep `--variance` of the variance. Each
row's Hotelling T² (unusual values inside the normal correlation structure) and SPE
(a broken correlation) are scaled by their 99th percentiles on the fit data and
added; the score is that sum's mean over the last `--smooth` grid steps. The data is
split in time order: the first part fits, the next part calibrates the threshold to
`--false-alarm` of its rows, the last part only measures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import anomaly as an  # noqa: E402
import evaluate as ev  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("data", nargs="+", help="normal operation: REC.mcap or a wide CSV; several files (a rotated recording's parts) are read as one")
    ap.add_argument("-o", "--output", default="anomaly.onnx", help="the model file to write (.onnx); .md and .toml go next to it")
    ap.add_argument("--id", help="the model id in the config (default: the output's file stem)")
    ap.add_argument("--every", help="grid step and model cadence, a multiple of the tick (default: 1s for a recording whose tick divides it, else the tick; for a CSV, how often a typical tag changes, rounded up to the tick)")
    ap.add_argument("--tick", help="the plant's [plant].tick, for a CSV (a recording knows its own; default: --every)")
    ap.add_argument("--lags", type=int, default=2, help="L: lagged copies of each tag in a DPCA vector (default 2)")
    ap.add_argument("--smooth", type=int, default=5, help="m: grid steps the score is averaged over (default 5)")
    ap.add_argument("--variance", type=float, default=0.999, help="share of variance the principal components keep (default 0.999)")
    ap.add_argument("--false-alarm", type=float, default=0.01, help="target share of normal rows scoring over the threshold (default 0.01)")
    ap.add_argument("--holdout", type=float, default=0.4, help="share of the data (the end) held out: half calibrates, half measures (default 0.4)")
    ap.add_argument("--skip", default="0s", help="leave out this much at the start of the data, e.g. a warm-up (default 0s)")
    ap.add_argument("--note", help="where the data came from, for the model card (e.g. the command that recorded it)")
    ap.add_argument("--tags", help="only these tags (comma-separated, shell wildcards allowed)")
    ap.add_argument("--exclude", default="", help="leave these tags out (comma-separated, wildcards allowed)")
    ap.add_argument("--time-column", help="a CSV's time column (default: the first named time, timestamp, ts, ... else the first column)")
    ap.add_argument("--time-unit", choices=["s", "ms", "us", "ns"], help="unit of a numeric CSV time column (default: guessed by magnitude)")
    ap.add_argument("--config-dir", help="the plant config's directory, to write `path` relative to it (default: the output's directory)")
    ap.add_argument("--on-delay", help="alarm on-delay (default: --smooth grid steps, so an excursion must outlast the smoothing window)")
    ap.add_argument("--off-delay", help="alarm off-delay (default: 10 grid steps)")
    ap.add_argument("--deadband", type=float, default=0.1, help="alarm deadband as a share of the threshold (default 0.1)")
    ap.add_argument("--priority", default="medium", choices=["low", "medium", "high", "critical"])
    ap.add_argument("--test", help="optional data with faults (same tags) to report detection on in the card; --skip applies to it too")
    ap.add_argument("--labels", help="the --test data's labels JSONL (twin's label format)")
    ap.add_argument("--grace", default="0s", help="with --test: time after a fault's end counted as neither")
    return ap


def default_every(samples: an.Samples, tick_ns: int | None) -> int:
    """A recording: 1 s where the tick divides it, else the tick. A CSV: how often a
    typical tag changes (the median over tags of the median time between changes;
    a wide CSV repeats unchanged values on every row), in whole ms, rounded up
    to a multiple of the tick."""
    if samples.tick_ns:
        tick = samples.tick_ns
        return an.NS if tick <= an.NS and an.NS % tick == 0 else tick
    steps = []
    for t, v, _ in samples.tags.values():
        changed = t[1:][np.diff(v) != 0]
        if len(changed) >= 2:
            steps.append(float(np.median(np.diff(changed))))
    if not steps:
        raise an.DataError(f"{samples.source}: no tag changes often enough to guess --every; pass it")
    step = max(1_000_000, int(np.ceil(np.median(steps) / 1_000_000)) * 1_000_000)
    if tick_ns:
        step = -(-step // tick_ns) * tick_ns
    return step


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_many(paths: list[str]) -> str:
    """The sha256 of the files' digests, in order: one fingerprint for a multi-file input."""
    return hashlib.sha256("".join(sha256(p) for p in paths).encode()).hexdigest()


def toml_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def toml_snippet(model: an.Model, mid: str, path: str, threshold: float, a) -> str:
    every = an.format_duration(model.every_ns)
    on = a.on_delay or an.format_duration(model.smooth * model.every_ns)
    off = a.off_delay or an.format_duration(10 * model.every_ns)
    lines = [
        f"# Generated by models/train_anomaly.py: dynamic PCA over {model.n_vars} tags,",
        f"# {model.lags} lags and a {model.smooth}-step mean, every {every}. See {os.path.splitext(os.path.basename(path))[0]}.md.",
        "[[models]]",
        f"id = {toml_str(mid)}",
        f"path = {toml_str(path)}",
        'task = "anomaly"',
        f'every = "{every}"',
        'on_bad_input = "suppress"',
        "# Lag-major, the order the model's input expects: every tag now, then every",
        f"# tag {every} ago, and so on.",
        "features = [",
    ]
    for k in range(model.n_blocks):
        for tag in model.tags:
            if k == 0:
                lines.append(f'  {{ tag = {toml_str(tag)}, stat = "value" }},')
            else:
                lag = an.format_duration(k * model.every_ns)
                lines.append(f'  {{ tag = {toml_str(tag)}, stat = "lag", lag = "{lag}" }},')
    lines += [
        "]",
        "",
        "[models.output]",
        'name = "score"',
        f"threshold = {threshold!r}",
        "",
        "[models.alarm]",
        f"threshold = {threshold!r}",
        f"deadband = {a.deadband * threshold!r}",
        f'on_delay = "{on}"',
        f'off_delay = "{off}"',
        f'priority = "{a.priority}"',
        "",
    ]
    return "\n".join(lines)


def split_rows(valid: np.ndarray, holdout: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Time-ordered fit / calibrate / measure index sets over the valid rows."""
    idx = np.flatnonzero(valid)
    n = len(idx)
    n_fit = int(round(n * (1.0 - holdout)))
    n_cal = (n - n_fit) // 2
    return idx[:n_fit], idx[n_fit:n_fit + n_cal], idx[n_fit + n_cal:]


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    a.argv = sys.argv[1:] if argv is None else argv
    try:
        train(a)
        return 0
    except (an.DataError, ValueError, OSError) as e:
        print(f"train_anomaly: {e}", file=sys.stderr)
        return 2


def train(a) -> dict:
    """Trains, writes the three files, and returns what a test needs to check them:
    `model` (the fitted `anomaly.Model`), `onnx`, `card`, `toml` (paths), `held`, `faulty`."""
    if not 0 < a.false_alarm < 0.5:
        raise ValueError("--false-alarm must be between 0 and 0.5")
    if not 0.05 <= a.holdout <= 0.8:
        raise ValueError("--holdout must be between 0.05 and 0.8")
    if a.lags < 0 or a.smooth < 1:
        raise ValueError("--lags must be ≥ 0 and --smooth ≥ 1")
    samples = an.read_data(a.data, a.time_column, a.time_unit)
    tick_arg = an.parse_duration_ns(a.tick) if a.tick else None
    every = an.parse_duration_ns(a.every) if a.every else default_every(samples, tick_arg)
    tick = samples.tick_ns or tick_arg or every
    if every % tick:
        raise ValueError(f"--every {an.format_duration(every)} is not a multiple of the tick {an.format_duration(tick)}")

    skip = an.parse_duration_ns(a.skip)
    if skip:
        first, _ = samples.span()
        samples = an.trim(samples, first + skip)
    grid = an.to_grid(samples, every)
    n = grid.values.shape[0]
    fit_end = int(n * (1.0 - a.holdout))
    include = [p.strip() for p in a.tags.split(",")] if a.tags else None
    exclude = [p.strip() for p in a.exclude.split(",") if p.strip()]
    tags, dropped = an.choose_tags(grid, slice(0, fit_end), include, exclude)
    grid = an.to_grid(samples, every, tags, t0_ns=grid.t0_ns)
    k = a.lags + a.smooth
    rows, gidx, valid = an.lagged_rows(grid, k)
    fit_i, cal_i, test_i = split_rows(valid, a.holdout)
    if len(fit_i) < 5 * len(tags) * (a.lags + 1) or len(cal_i) < 50:
        raise an.DataError(
            f"{len(fit_i)} fit rows and {len(cal_i)} calibration rows are too few for "
            f"{len(tags)} tags × {a.lags + 1} lags: record longer, or use fewer tags or lags")

    model = an.fit(rows[fit_i], tags, every, a.lags, a.smooth, a.variance)
    cal_scores = model.score(rows[cal_i])
    threshold = an.calibrate(cal_scores, a.false_alarm)
    model.threshold = threshold

    out = a.output if a.output.endswith(".onnx") else a.output + ".onnx"
    stem = os.path.splitext(out)[0]
    mid = a.id or os.path.basename(stem)
    cfg_dir = a.config_dir if a.config_dir is not None else (os.path.dirname(out) or ".")
    rel = os.path.relpath(out, cfg_dir)
    data_hash = sha256(a.data[0]) if len(a.data) == 1 else sha256_many(a.data)

    metadata = {
        "twin.task": "anomaly",
        "twin.threshold": repr(threshold),
        "twin.every": an.format_duration(every),
        "twin.method": "dynamic PCA, T2 + SPE, mean over smooth steps",
        "twin.lags": str(a.lags),
        "twin.smooth": str(a.smooth),
        "twin.tags": json.dumps(tags),
        "twin.features": "lag-major: every tag at lag 0, then lag 1 step, ...",
        "twin.false_alarm_target": repr(a.false_alarm),
        "twin.training_data_sha256": data_hash,
    }
    onnx_model = an.to_onnx(model, metadata)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "wb") as f:
        f.write(onnx_model.SerializeToString())

    # Held-out measures, on the last part, which neither fitted nor calibrated anything.
    on_ns = an.parse_duration_ns(a.on_delay) if a.on_delay else a.smooth * every
    off_ns = an.parse_duration_ns(a.off_delay) if a.off_delay else 10 * every
    test_scores = model.score(rows[test_i])
    test_hours = len(test_i) * every / an.NS / 3600
    active = an.alarm_states(test_scores, np.ones(len(test_i), bool), every, threshold,
                             a.deadband * threshold, on_ns, off_ns)
    raises = int(np.count_nonzero(active[1:] & ~active[:-1]) + (1 if len(active) and active[0] else 0))
    fit_scores = model.score(rows[fit_i])
    held = {
        "rows_fit": len(fit_i), "rows_calibrate": len(cal_i), "rows_test": len(test_i),
        "row_share_over_fit": float(np.mean(fit_scores >= threshold)),
        "row_share_over_cal": float(np.mean(cal_scores >= threshold)),
        "row_share_over_test": float(np.mean(test_scores >= threshold)),
        "alarm_time_share_test": float(np.mean(active)) if len(active) else 0.0,
        "alarms_test": raises, "test_hours": test_hours,
        "alarms_per_hour_test": raises / test_hours if test_hours > 0 else math.nan,
    }
    faulty = None
    if a.test:
        if not a.labels:
            raise ValueError("--test needs --labels")
        faulty = evaluate_on(model, a.test, a.labels, a, on_ns, off_ns)

    with open(stem + ".toml", "w", encoding="utf-8") as f:
        f.write(toml_snippet(model, mid, rel, threshold, a))
    size = os.path.getsize(out)
    with open(stem + ".md", "w", encoding="utf-8") as f:
        f.write(model_card(model, mid, a, samples, grid, dropped, held, faulty, data_hash, size, on_ns, off_ns))
    print(f"wrote {out} ({size / 1024:.0f} KiB), {stem}.md, {stem}.toml: {len(tags)} tags, "
          f"{model.n_features} features, {model.p.shape[1]} components, threshold {threshold:.4g}; "
          f"held-out rows over threshold {100 * held['row_share_over_test']:.2f} %, "
          f"{held['alarms_per_hour_test']:.2f} alarms/h")
    if faulty is not None:
        print(ev.report(faulty, mid))
    if size > 5 * 1024 * 1024:
        print("train_anomaly: the model is over 5 MB; use fewer tags (--tags/--exclude) or --lags", file=sys.stderr)
    return {"model": model, "onnx": out, "card": stem + ".md", "toml": stem + ".toml",
            "held": held, "faulty": faulty}


def score_data(model: an.Model, path: str, a) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores of every grid step of other data: (times ns, scores, valid)."""
    samples = an.read_data(path, a.time_column, a.time_unit)
    skip = an.parse_duration_ns(a.skip)
    if skip:  # the same warm-up as the training data's
        samples = an.trim(samples, samples.span()[0] + skip)
    grid = an.to_grid(samples, model.every_ns, model.tags)
    rows, gidx, valid = an.lagged_rows(grid, model.n_blocks)
    scores = np.full(len(rows), np.nan)
    scores[valid] = model.score(rows[valid])
    return grid.times_ns[gidx], scores, valid


def synthetic_events(model: an.Model, mid: str, t_ns, scores, valid, active) -> tuple[ev.Predictions, list]:
    """What the twin would emit for these scores: prediction rows and alarm edges."""
    preds = ev.Predictions([int(t) for t in t_ns], [float(s) for s in scores],
                           [model.threshold] * len(scores), [bool(v) for v in valid])
    alarms = []
    prev = False
    for t, on in zip(t_ns, active):
        if on != prev:
            alarms.append((int(t), "raised" if on else "cleared"))
            prev = on
    return preds, alarms


def evaluate_on(model: an.Model, path: str, labels: str, a, on_ns: int, off_ns: int) -> dict:
    t_ns, scores, valid = score_data(model, path, a)
    active = an.alarm_states(scores, valid, model.every_ns, model.threshold,
                             a.deadband * model.threshold, on_ns, off_ns)
    preds, alarms = synthetic_events(model, "", t_ns, scores, valid, active)
    return ev.evaluate(preds, alarms, ev.load_labels(labels), an.parse_duration_ns(a.grace))


def _pct(x) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f} %"


def model_card(model: an.Model, mid: str, a, samples: an.Samples, grid: an.Grid,
               dropped: dict[str, str], held: dict, faulty: dict | None, data_hash: str,
               size: int, on_ns: int, off_ns: int) -> str:
    every = an.format_duration(model.every_ns)
    t0 = an.format_time_ns(grid.t0_ns)
    t1 = an.format_time_ns(int(grid.times_ns[-1]))
    r = model.p.shape[1]
    out = [
        f"# Model card: `{mid}` (anomaly, dynamic PCA)",
        "",
        "Generated by `models/train_anomaly.py`; regenerate rather than edit. "
        "How to read it: docs/anomaly.md.",
        "",
        "## Use",
        f"- File: `{os.path.basename(a.output)}` ({size / 1024:.0f} KiB), config block: "
        f"`{os.path.splitext(os.path.basename(a.output))[0]}.toml`.",
        f"- Input `X`: float32 `[batch, {model.n_features}]`, lag-major: the {model.n_vars} tags "
        f"now, then {every} ago, ... up to {an.format_duration((model.n_blocks - 1) * model.every_ns)} ago "
        f"({model.n_blocks} blocks). Output `score`: float32 `[batch]`, higher is more unusual.",
        f"- Threshold **{model.threshold:.6g}** (metadata `twin.threshold`, and in the config block); "
        f"alarm on-delay {an.format_duration(on_ns)}, off-delay {an.format_duration(off_ns)}, "
        f"deadband {a.deadband * model.threshold:.4g}.",
        f"- Cadence `every = \"{every}\"`: the grid the tags were sampled on. The first "
        f"{an.format_duration((model.n_blocks - 1) * model.every_ns)} after a start have no full lag "
        "window and give no score.",
        "",
        "## Data",
        *([f"- About the data: {a.note}"] if getattr(a, "note", None) else []),
        *([f"- Made with: `models/train_anomaly.py {' '.join(getattr(a, 'argv'))}`"] if getattr(a, "argv", None) else []),
        f"- Source: {', '.join(f'`{d}`' for d in a.data)} (sha256 `{data_hash[:16]}…`), {len(samples.tags)} numeric tags, "
        f"{t0} to {t1}, {grid.values.shape[0]} grid steps of {every}.",
        f"- Split in time order: fit {held['rows_fit']} rows, calibrate {held['rows_calibrate']}, "
        f"measure {held['rows_test']} (rows with a missing or bad value in their lag window are left out).",
        f"- Tags used ({model.n_vars}): " + ", ".join(f"`{t}`" for t in model.tags) + ".",
    ]
    if dropped:
        out.append("- Tags left out: " + "; ".join(f"`{t}` ({why})" for t, why in dropped.items()) + ".")
    if samples.skipped_text:
        out.append("- Text tags left out: " + ", ".join(f"`{t}`" for t in samples.skipped_text) + ".")
    out += [
        "",
        "## Method",
        f"Each tag is standardised (fit-part mean and sd), each DPCA vector stacks a grid step "
        f"with its {model.lags} predecessors ({model.dim} dimensions), and PCA keeps {r} components "
        f"({100 * model.variance_share:.1f} % of the variance). Hotelling T² (distance inside the "
        f"component space) and SPE (the residual off it: broken correlations) are each divided by their "
        f"99th percentile on the fit part (T² {model.t2_lim:.4g}, SPE {model.q_lim:.4g}) and added; the "
        f"score is that sum averaged over the last {model.smooth} grid steps. The threshold is the "
        f"{100 * (1 - a.false_alarm):.2f}th percentile of the calibration part's scores "
        f"(target false-alarm share {_pct(a.false_alarm)}).",
        "",
        "## Held-out normal data",
        "| part | rows | share of rows over the threshold |",
        "|---|---|---|",
        f"| fit | {held['rows_fit']} | {_pct(held['row_share_over_fit'])} |",
        f"| calibrate | {held['rows_calibrate']} | {_pct(held['row_share_over_cal'])} (the target, by construction) |",
        f"| measure | {held['rows_test']} | {_pct(held['row_share_over_test'])} |",
        "",
        f"On the measure part ({held['test_hours']:.2f} h) the alarm logic above raised "
        f"{held['alarms_test']} alarms ({held['alarms_per_hour_test']:.2f} per hour), active "
        f"{_pct(held['alarm_time_share_test'])} of the time.",
    ]
    if faulty is not None:
        out += ["", f"## Data with faults: `{a.test}`", "",
                "| fault | rows | detection | alarm | delay s |", "|---|---|---|---|---|"]
        for p in faulty["faults"]:
            out.append(f"| {p['name']} | {p['rows']} | {_pct(p['detection_rate'])} | "
                       f"{'yes' if p['detected'] else 'no'} | "
                       f"{'-' if p['delay_s'] is None else format(p['delay_s'], '.0f')} |")
        out += ["", f"Mean detection {_pct(faulty['mean_detection'])}; normal rows over threshold "
                f"{_pct(faulty['false_alarm_row_share'])}; false alarms {faulty['false_alarms']} "
                f"({'-' if faulty['false_alarms_per_hour'] is None else format(faulty['false_alarms_per_hour'], '.2f')} per hour); "
                f"median delay {'-' if faulty['median_delay_s'] is None else format(faulty['median_delay_s'], '.0f')} s "
                f"(grace after a fault's end: {a.grace}; the first {a.skip} left out, as in training)."]
    out += ["", "## Limits",
            "- It knows only the operation it was shown: a new product, recipe or setpoint "
            "looks anomalous until it is retrained on data that includes it.",
            "- Constant tags are left out, so a change in one (a setpoint) is not seen.",
            "- It says that something is unusual, not what: the fault class needs a supervised model.",
            ""]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
