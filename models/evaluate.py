#!/usr/bin/env python3
"""Detection and false-alarm rates of an anomaly (or fault) model, from a replay's
events and the recording's ground-truth labels.

    twin replay test.mcap --events replay.jsonl          # a config with the model in it
    .venv/bin/python models/evaluate.py replay.jsonl test.labels.jsonl --model plant_anomaly

Inputs (docs/events.md, docs/lockstep.md):
- events JSONL: `prediction` lines (`t`, `model`, `score`, `threshold`, `quality`) and
  `alarm` lines (`t`, `model`, `state` raised|cleared); other lines are skipped;
- labels JSONL, as `twin demo --labels` / `twin sim` write them: one line per fault
  start and end (`t`, `edge`, `fault`, `kind`, `target`); a fault with no end lasts
  to the end of the run.

A fault's window is [start, end + grace): `--grace` covers effects that outlive the
fault (a motor cooling down), which are neither detections nor false alarms;
`--skip` leaves out the run's start (a warm-up the model was not trained on).
It prints, per fault and overall:
- detection rate: the share of the window's good prediction rows with score ≥ threshold
  (the classic per-sample rate; "mean detection" averages it over faults);
- alarm: whether an alarm was active in the window, and the delay from the fault's
  start to the first raise (0 if one was already active);
- false alarms outside every window: raises per hour, the share of normal time an alarm
  was active, and the share of normal rows with score ≥ threshold.
Exit code 0, or 2 for unreadable input. `--json` prints the same as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from anomaly import NS, format_duration, parse_duration_ns, parse_time_ns  # noqa: E402


@dataclass
class Fault:
    index: int
    kind: str
    target: dict
    start_ns: int
    end_ns: int | None  # None: lasts to the end of the run

    def name(self) -> str:
        tgt = ",".join(f"{k}={v}" for k, v in sorted(self.target.items()))
        return f"#{self.index} {self.kind}" + (f" ({tgt})" if tgt else "")


@dataclass
class Predictions:
    t_ns: list[int]
    score: list[float]
    threshold: list[float]
    good: list[bool]


def read_jsonl(path: str):
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not JSON: {e}") from None


def load_events(path: str, model: str | None) -> tuple[Predictions, list[tuple[int, str]], str]:
    """The model's predictions and alarm edges. With no `model`, the file must hold
    predictions of exactly one model."""
    preds = Predictions([], [], [], [])
    alarms: list[tuple[int, str]] = []
    seen: set[str] = set()
    for n, ev in read_jsonl(path):
        kind = ev.get("type")
        if kind not in ("prediction", "alarm"):
            continue
        mid = ev.get("model", "")
        seen.add(mid)
        if model is not None and mid != model:
            continue
        t = parse_time_ns(ev["t"])
        if kind == "prediction":
            score = ev.get("score")
            thr = ev.get("threshold", math.nan)
            preds.t_ns.append(t)
            preds.score.append(math.nan if score is None else float(score))
            preds.threshold.append(math.nan if thr is None else float(thr))
            preds.good.append(ev.get("quality", "good") == "good" and score is not None)
        else:
            alarms.append((t, ev.get("state", "")))
    if model is None:
        if len(seen) > 1:
            raise ValueError(f"{path}: predictions of several models ({', '.join(sorted(seen))}); name one with --model")
        model = next(iter(seen), "")
    if not preds.t_ns:
        raise ValueError(f"{path}: no prediction events" + (f" of model {model!r}" if model else ""))
    return preds, alarms, model


def load_labels(path: str) -> list[Fault]:
    faults: dict[int, Fault] = {}
    for n, lab in read_jsonl(path):
        try:
            i = int(lab["fault"])
            t = parse_time_ns(lab["t"])
            edge = lab["edge"]
        except (KeyError, ValueError, TypeError) as e:
            raise ValueError(f"{path}:{n}: not a label line ({e})") from None
        if edge == "start":
            faults[i] = Fault(i, str(lab.get("kind", "?")), lab.get("target") or {}, t, None)
        elif edge == "end" and i in faults:
            faults[i].end_ns = t
    return sorted(faults.values(), key=lambda f: (f.start_ns, f.index))


def alarm_intervals(alarms: list[tuple[int, str]], end_ns: int) -> list[tuple[int, int]]:
    out, since = [], None
    for t, state in sorted(alarms, key=lambda a: a[0]):
        if state == "raised" and since is None:
            since = t
        elif state == "cleared" and since is not None:
            out.append((since, t))
            since = None
    if since is not None:
        out.append((since, end_ns))
    return out


def overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def evaluate(preds: Predictions, alarms: list[tuple[int, str]], faults: list[Fault],
             grace_ns: int = 0, skip_ns: int = 0) -> dict:
    """The rates (see the module doc). `skip_ns` leaves out the start of the run (a
    warm-up the model was not trained on); faults that start after the last
    prediction (a replay with --to) are left out and counted."""
    if not preds.t_ns:
        raise ValueError("no predictions")
    if skip_ns:
        since = preds.t_ns[0] + skip_ns
        keep = [i for i, t in enumerate(preds.t_ns) if t >= since]
        if not keep:
            raise ValueError("--skip leaves no predictions")
        preds = Predictions([preds.t_ns[i] for i in keep], [preds.score[i] for i in keep],
                            [preds.threshold[i] for i in keep], [preds.good[i] for i in keep])
        # An alarm active across the cut starts at the cut.
        before = [s for t, s in sorted(alarms) if t < since]
        alarms = ([(since, "raised")] if before and before[-1] == "raised" else []) + \
            [(t, s) for t, s in alarms if t >= since]
    ts = preds.t_ns
    steps = [b - a for a, b in zip(ts, ts[1:]) if b > a]
    step = int(statistics.median(steps)) if steps else NS
    run = (ts[0], ts[-1] + step)
    outside = [f for f in faults if f.start_ns >= run[1]]
    faults = [f for f in faults if f.start_ns < run[1]]
    windows = [(f.start_ns, (run[1] if f.end_ns is None else f.end_ns + grace_ns)) for f in faults]
    windows = [(max(a, run[0]), min(b, run[1])) for a, b in windows]
    active = alarm_intervals(alarms, run[1])
    raises = [t for t, s in alarms if s == "raised"]

    def in_any(t: int) -> bool:
        return any(a <= t < b for a, b in windows)

    per_fault = []
    for f, w in zip(faults, windows):
        idx = [i for i, t in enumerate(ts) if w[0] <= t < w[1] and preds.good[i]]
        hits = sum(1 for i in idx if preds.score[i] >= preds.threshold[i])
        rate = hits / len(idx) if idx else None
        first = None
        for a, b in active:
            if a < w[1] and b > w[0]:
                first = max(0, a - w[0])
                break
        per_fault.append({
            "fault": f.index, "kind": f.kind, "target": f.target, "name": f.name(),
            "start": f.start_ns, "window_s": max(0, w[1] - w[0]) / NS,
            "rows": len(idx), "detection_rate": rate,
            "alarm_coverage": (sum(overlap(w, iv) for iv in active) / (w[1] - w[0])) if w[1] > w[0] else None,
            "detected": first is not None, "delay_s": None if first is None else first / NS,
        })

    normal_rows = [i for i, t in enumerate(ts) if not in_any(t) and preds.good[i]]
    uncertain = sum(1 for g in preds.good if not g)
    merged = _union(windows)
    normal_ns = max(0, (run[1] - run[0]) - sum(b - a for a, b in merged))
    normal_active = sum(overlap(iv, run) for iv in active) - sum(overlap(iv, w) for iv in active for w in merged)
    false_raises = [t for t in raises if not in_any(t)]
    rates = [p["detection_rate"] for p in per_fault if p["detection_rate"] is not None]
    delays = [p["delay_s"] for p in per_fault if p["delay_s"] is not None]
    hours = normal_ns / (3600 * NS)
    return {
        "rows": len(ts), "uncertain_rows": uncertain, "faults_after_run": len(outside), "step_s": step / NS,
        "run_s": (run[1] - run[0]) / NS, "normal_s": normal_ns / NS,
        "faults": per_fault,
        "mean_detection": statistics.fmean(rates) if rates else None,
        "faults_detected": sum(1 for p in per_fault if p["detected"]),
        "median_delay_s": statistics.median(delays) if delays else None,
        "false_alarm_row_share": (sum(1 for i in normal_rows if preds.score[i] >= preds.threshold[i]) / len(normal_rows)) if normal_rows else None,
        "false_alarms": len(false_raises),
        "false_alarms_per_hour": (len(false_raises) / hours) if hours > 0 else None,
        "false_alarm_time_share": (normal_active / normal_ns) if normal_ns > 0 else None,
    }


def _union(iv: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(i for i in iv if i[1] > i[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def report(res: dict, model: str = "") -> str:
    lines = [f"model {model or '?'}: {res['rows']} predictions every {res['step_s']:g} s "
             f"({res['uncertain_rows']} uncertain), {res['run_s'] / 3600:.2f} h run, "
             f"{res['normal_s'] / 3600:.2f} h normal"]
    lines.append(f"{'fault':<48} {'detection':>10} {'alarm':>6} {'delay s':>8} {'covered':>8}")
    for p in res["faults"]:
        lines.append(f"{p['name'][:48]:<48} {_pct(p['detection_rate']):>10} "
                     f"{'yes' if p['detected'] else 'no':>6} {_num(p['delay_s']):>8} {_pct(p['alarm_coverage']):>8}")
    if res.get("faults_after_run"):
        lines.append(f"({res['faults_after_run']} faults start after the last prediction: left out)")
    lines.append(f"mean detection {_pct(res['mean_detection'])}; faults alarmed "
                 f"{res['faults_detected']}/{len(res['faults'])}; median delay {_num(res['median_delay_s'])} s")
    lines.append(f"false alarms: {res['false_alarms']} raised in normal time "
                 f"({_num(res['false_alarms_per_hour'], '{:.2f}')} per hour), alarm active "
                 f"{_pct(res['false_alarm_time_share'])} of normal time, "
                 f"{_pct(res['false_alarm_row_share'])} of normal rows over threshold")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("events", help="the replay's events JSONL (`twin replay --events`)")
    ap.add_argument("labels", help="the recording's labels JSONL (`twin demo --labels`)")
    ap.add_argument("--model", help="the model id (needed when several models predict)")
    ap.add_argument("--grace", default="0s", help="time after a fault's end that counts as neither (e.g. 5m)")
    ap.add_argument("--skip", default="0s", help="leave out the run's start (a warm-up), as train_anomaly.py --skip")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    a = ap.parse_args(argv)
    try:
        preds, alarms, model = load_events(a.events, a.model)
        faults = load_labels(a.labels)
        res = evaluate(preds, alarms, faults, parse_duration_ns(a.grace), parse_duration_ns(a.skip))
    except (OSError, ValueError, KeyError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    res["model"] = model
    res["grace"] = format_duration(parse_duration_ns(a.grace))
    print(json.dumps(res, indent=1) if a.json else report(res, model))
    return 0


if __name__ == "__main__":
    sys.exit(main())
