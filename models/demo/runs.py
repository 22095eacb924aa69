"""Labelled runs of the demo line from the headless sim: the run plan (which
scenario, seed and length), scenario variants, generation, and row labels.

Every run is `twin demo --headless` on the demo config *without* its
`[[models]]` (the data must not depend on the model being trained); runs are
deterministic per (config, scenario, seed), so the whole data set is too.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fault_features import CLASSES, KIND_TO_CLASS, TICK_S

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "plant-configs" / "packaging-line.toml"
SCENARIOS = ROOT / "plant-configs" / "scenarios"
MODELS_MARKER = "# --- Models"


def twin_binary() -> str:
    for c in (
        os.environ.get("TWIN"),
        str(ROOT / "target" / "release" / "twin"),
        str(ROOT / "target" / "debug" / "twin"),
    ):
        if c and Path(c).is_file():
            return c
    sys.exit("no twin binary: set TWIN=path/to/twin (a release build runs ~95x real time)")


def config_without_models(out: Path) -> Path:
    text = DEMO.read_text()
    cut = text.find(MODELS_MARKER)
    if cut >= 0:
        text = text[:cut]
    out.write_text(text)
    return out


ENTRY = ROOT / "models" / "demo_fault.toml"
MODEL = ROOT / "models" / "demo_fault.onnx"


def config_with_model(out: Path, model: Path = MODEL, entry: Path = ENTRY) -> Path:
    """The demo config with the fault model's `[[models]]` entry
    (models/demo_fault.toml, what the demo config's `# --- Models` part
    takes), written to `out` with the model's path made absolute."""
    block = entry.read_text().replace('path = "../models/demo_fault.onnx"', f"path = {json.dumps(str(model.resolve()))}")
    config_without_models(out)
    out.write_text(out.read_text().rstrip("\n") + "\n\n" + block)
    return out


@dataclass
class Run:
    name: str
    seed: int
    duration_s: int
    scenario: dict | None = None  # decoded scenario (variant), or None: healthy
    shipped: str | None = None  # a shipped scenario file, as is
    record: bool = False
    split: str = "train"
    files: dict = field(default_factory=dict)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v)


def write_scenario(s: dict, path: Path) -> None:
    lines = ["version = 1", f"name = {json.dumps(s.get('name', 'variant'))}"]
    for f in s["faults"]:
        lines.append("[[faults]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in f.items()]
    path.write_text("\n".join(lines) + "\n")


# The acute faults of the `late` runs, in turn: stuck eyes and overheating
# twice as often, the classes a warm, worn line hid before these runs.
LATE_ACUTE = ["eye_stuck", "motor_overheat", "eye_stuck", "belt_slip", "motor_overheat", "jam"]


def _late_slots(i: int) -> list[str]:
    """The acute faults of the i-th `late` run, in order (one or two)."""
    return [LATE_ACUTE[(i + 3 * k) % len(LATE_ACUTE)] for k in range(1 + (i // 2) % 2)]


def _fault(kind: str, rng: random.Random, i: int) -> tuple[dict, int]:
    """The i-th fault of `kind`: targets in turn, the time and size at random;
    and the run length it needs."""

    def turn(xs):
        return xs[i % len(xs)]

    # From 45 s: the shipped scenarios put their faults at 60 s, while the
    # line is still settling (temperatures, the filler's queue).
    at = rng.randrange(45, 240)
    if kind == "combo":
        # An acute fault on top of a worn bearing (as in mixed.toml): the
        # acute fault is the label while it lasts.
        acute, dur = _fault(["jam", "belt_slip", "eye_stuck", "motor_overheat"][i % 4], rng, i // 4)
        # The wear the acute fault happens on, from barely seen to near
        # failure: mixed.toml's capper is at 0.3 when its belt slips and at
        # 0.7 when the infeed overheats, and a forest does not extrapolate.
        level = [0.2, 0.35, 0.5, 0.65, 0.8][(i // 4) % 5]
        wear = {
            "kind": "bearing_wear",
            # By the round, not by i: `turn` would give every odd i (belt
            # slip, overheating) the same machine.
            "machine": ["capper", "filler"][(i // 4) % 2],
            "ramp": "60m",
            "from": level,
            "to": level + 0.05,
            "at": "0s",
        }
        return [wear, acute], min(dur, 12 * 60)
    if kind == "sequence":
        # A long run with several faults one after another, as a plant has
        # them (mixed.toml is one such shift): a jam, then acute faults
        # 8-70 min after it, a sensor drift and a PLC disconnect between
        # them, on a bearing that wears in the background. What the model
        # must see here is each fault on a line that has been through the
        # others: the twin out of step after the jam, motors cooling, a
        # drifted reading, a reconnect. Targets, order and times vary by
        # run; none is mixed.toml's timeline.
        t = rng.randrange(120, 600)
        pos = turn([("infeed", 3.5), ("outfeed", 1.6), ("outfeed", 0.35)])
        faults = [{"kind": "jam", "line": "line1", "conveyor": pos[0], "position": pos[1], "at": f"{t}s", "duration": f"{rng.choice([30, 45, 60])}s"}]
        t += 60
        acute = ["eye_stuck", "belt_slip", "motor_overheat", "eye_stuck", "belt_slip"]
        rng.shuffle(acute)
        acute = acute[: 3 + i % 2]
        between = ["sensor_drift", "plc_disconnect"]
        for k, kind2 in enumerate(acute):
            t += rng.randrange(8 * 60, 20 * 60)
            if k < len(between) and rng.random() < 0.8:
                b = between[k]
                if b == "sensor_drift":
                    tag = rng.choice(["infeed.motor_temperature", "outfeed.motor_temperature", "capper.torque"])
                    d = rng.choice([15, 20, 30])
                    faults.append({"kind": "sensor_drift", "tag": tag, "per_hour": rng.choice([-12.0, -8.0, 8.0, 12.0]), "at": f"{t}s", "duration": f"{d}m"})
                    t += d * 60 + rng.randrange(60, 300)
                else:
                    faults.append({"kind": "plc_disconnect", "device": rng.choice(["line_plc", "filler_plc"]), "at": f"{t}s", "duration": f"{rng.choice([20, 30, 45])}s"})
                    t += rng.randrange(120, 600)
            f2, d2 = _fault(kind2, rng, i + k)
            at2 = int(f2["at"].removesuffix("s"))
            f2["at"] = f"{t}s"
            if kind2 == "motor_overheat":
                f2["duration"] = "15m"
            faults.append(f2)
            t += min(d2 - at2, 15 * 60) + 60
        if i % 3 != 2:
            faults.append(
                {
                    "kind": "bearing_wear",
                    "machine": ["capper", "filler"][i % 2],
                    "ramp": f"{t}s",
                    "from": rng.choice([0.05, 0.1, 0.2]),
                    "to": rng.choice([0.6, 0.7, 0.8]),
                    "at": "0s",
                }
            )
        return faults, t
    if kind == "late":
        # An acute fault late in a shift, on a line that has been through
        # others: the motors at their working temperature (an overheat then
        # starts from ~62 °C, not from the cold start's ~50 °C, and rises
        # slower), a bearing wearing in the background, in most runs a long
        # jam before it (the twin's line model out of step from then on, the
        # jammed motors cooling) and in some a sensor drift that has ended.
        # The acute fault comes either soon after the jam (4-15 min, the
        # motors still hot) or 30-70 min into the run, and a second one
        # follows in every other run. The acute faults and their targets go
        # through every eye (on and off), both motors (cooling loss
        # 0.4-0.7), both belts and the jam positions in turn; the times,
        # sizes and the background are drawn per run, so no two runs share
        # a timeline (and none is a held-out scenario's).
        faults = []
        t = rng.randrange(4 * 60, 25 * 60)
        with_jam = i % 4 != 3
        if with_jam:
            pos = [("outfeed", 0.35), ("infeed", 3.5), ("outfeed", 1.6)][(i // 4) % 3]
            jd = rng.choice([30, 45, 60])
            faults.append({"kind": "jam", "line": "line1", "conveyor": pos[0], "position": pos[1], "at": f"{t}s", "duration": f"{jd}s"})
            t += jd
        if rng.random() < 0.4:
            tag = rng.choice(["infeed.motor_temperature", "outfeed.motor_temperature", "capper.torque"])
            d = rng.choice([10, 15, 20])
            faults.append({"kind": "sensor_drift", "tag": tag, "per_hour": rng.choice([-12.0, -8.0, 8.0, 12.0]), "at": f"{t + rng.randrange(60, 300)}s", "duration": f"{d}m"})
        if with_jam and i % 2 == 0:
            t += rng.randrange(4 * 60, 15 * 60)
        else:
            t = max(t + 5 * 60, rng.randrange(30 * 60, 70 * 60))
        slots = _late_slots(i)
        for k, kind2 in enumerate(slots):
            # The n-th fault of its kind over all late runs takes the n-th
            # target in turn (an eye's on/off too, by n // 4 in _fault).
            n = sum(s == kind2 for r in range(i) for s in _late_slots(r)) + slots[:k].count(kind2)
            f2, d2 = _fault(kind2, rng, n)
            at2 = int(f2["at"].removesuffix("s"))
            f2["at"] = f"{t}s"
            if kind2 == "motor_overheat":
                f2["cooling_loss"] = rng.choice([0.4, 0.5, 0.6, 0.7])
                f2["duration"] = f"{rng.choice([12, 15, 20])}m"
                d2 = at2 + int(f2["duration"].removesuffix("m")) * 60 + 90
            faults.append(f2)
            t += d2 - at2
            if k + 1 < len(slots):
                t += rng.randrange(4 * 60, 12 * 60)
        if i % 5 != 4:
            faults.append(
                {
                    "kind": "bearing_wear",
                    "machine": ["capper", "filler"][(i // 3) % 2],
                    "ramp": f"{t}s",
                    "from": rng.choice([0.05, 0.1, 0.2]),
                    "to": rng.choice([0.6, 0.7, 0.8, 0.9]),
                    "at": f"{rng.randrange(0, 6) * 60}s",
                }
            )
        return faults, t
    if kind == "after_jam":
        # A fault after a long jam (as in mixed.toml): once a jam has stood
        # long, the twin's line model stays out of step with the plant
        # (docs/lockstep.md: its WIP, throughput and slip settle far from a
        # healthy line's) and the jammed motors cool down from far above their
        # usual temperature for half an hour. Every fault after that happens in
        # this state, so the model has to see it: the jam, then (in turn)
        # nothing, or an acute fault 4-12 min after it, on a bearing that wears
        # in the background in every other run.
        jam_at, jam_d = rng.randrange(60, 180), rng.choice([30, 45, 60])
        pos = turn([("outfeed", 0.35), ("infeed", 3.5), ("outfeed", 1.6)])
        jam = {"kind": "jam", "line": "line1", "conveyor": pos[0], "position": pos[1], "at": f"{jam_at}s", "duration": f"{jam_d}s"}
        later = jam_at + jam_d + rng.randrange(240, 720)
        second = [None, "belt_slip", "eye_stuck", "motor_overheat", "belt_slip", "eye_stuck", "motor_overheat"][i % 7]
        faults = [jam]
        dur = later + 6 * 60
        if second is not None:
            f2, d2 = _fault(second, rng, i // 2)
            # move the acute fault after the jam (d2 is its run length from 0)
            at2 = int(f2["at"].removesuffix("s"))
            f2["at"] = f"{later}s"
            faults.append(f2)
            dur = later + min(d2 - at2, 12 * 60)
        if i % 2 == 1:
            # worn to 0.8 by the end of the run (the levels matter, not the pace)
            wear_at = rng.randrange(0, 120)
            faults.append(
                {
                    "kind": "bearing_wear",
                    "machine": ["capper", "filler"][(i // 2) % 2],
                    "ramp": f"{dur - wear_at}s",
                    "from": rng.choice([0.1, 0.2, 0.3]),
                    "to": 0.8,
                    "at": f"{wear_at}s",
                }
            )
        return faults, dur
    if kind == "jam":
        d = rng.choice([20, 30, 45, 60])
        pos = turn([("outfeed", 0.35), ("infeed", 3.5), ("outfeed", 1.6)])
        return (
            {"kind": "jam", "line": "line1", "conveyor": pos[0], "position": pos[1], "at": f"{at}s", "duration": f"{d}s"},
            at + d + 60,
        )
    if kind == "belt_slip":
        d = rng.choice([90, 120, 180])
        return (
            {
                "kind": "belt_slip",
                "line": "line1",
                "conveyor": turn(["outfeed", "infeed"]),
                "slip": rng.choice([0.2, 0.3, 0.35, 0.45]),
                "at": f"{at}s",
                "duration": f"{d}s",
            },
            at + d + 90,
        )
    if kind == "eye_stuck":
        d = rng.choice([45, 60, 90])
        return (
            {
                "kind": ["eye_stuck_on", "eye_stuck_off"][(i // 4) % 2],
                "eye": turn(["eye_entry", "eye_filler", "eye_transfer", "eye_exit"]),
                "at": f"{at}s",
                "duration": f"{d}s",
            },
            at + d + 90,
        )
    if kind == "motor_overheat":
        return (
            {
                "kind": "motor_overheat",
                "machine": turn(["outfeed", "infeed"]),
                "cooling_loss": rng.choice([0.5, 0.6, 0.7]),
                "at": f"{at}s",
                "duration": "40m",
            },
            at + 15 * 60,
        )
    if kind == "bearing_wear":
        # The ramp is compressed (the shipped one takes 2 h): the features are
        # levels (vibration, bearing temperature), which do not depend on it.
        ramp = rng.choice([30, 40])
        return (
            {
                "kind": "bearing_wear",
                "machine": turn(["filler", "capper"]),
                "ramp": f"{ramp}m",
                "from": 0.0,
                "to": 1.0,
                "at": f"{at}s",
            },
            at + ramp * 60 - 30,
        )
    if kind == "sensor_drift":
        tag, rate = turn([("capper.torque", 15.0), ("infeed.motor_temperature", -15.0), ("capper.torque", -15.0), ("outfeed.motor_temperature", 15.0)])
        return (
            {"kind": "sensor_drift", "tag": tag, "per_hour": rate, "at": f"{at}s"},
            at + 30 * 60,
        )
    if kind == "drift_end":
        # A drift that ends (mixed.toml's): the reading steps back by the
        # offset, a jump a 30 s slope window sees for half a minute. Nothing
        # is wrong with the motor, so the rows stay normal.
        tag = turn(["infeed.motor_temperature", "outfeed.motor_temperature", "capper.torque"])
        d = rng.choice([15, 20, 30])
        rate = rng.choice([-15.0, -8.0, 8.0, 15.0])
        return (
            {"kind": "sensor_drift", "tag": tag, "per_hour": rate, "at": f"{at}s", "duration": f"{d}m"},
            at + d * 60 + 4 * 60,
        )
    if kind == "plc_disconnect":
        return (
            {"kind": "plc_disconnect", "device": turn(["line_plc", "filler_plc"]), "at": f"{at}s", "duration": "20s"},
            at + 150,
        )
    raise ValueError(kind)


# (kind, how many training runs, how many validation runs)
PLAN = [
    ("jam", 8, 3),
    ("belt_slip", 8, 2),
    ("eye_stuck", 18, 3),
    ("motor_overheat", 2, 1),
    ("bearing_wear", 2, 1),
    ("sensor_drift", 3, 1),
    ("plc_disconnect", 2, 0),
    ("combo", 16, 4),
    ("after_jam", 14, 7),
    ("drift_end", 3, 1),
    ("sequence", 6, 2),
    ("late", 24, 6),
]
# Healthy runs as long as the longest fault runs, so that nothing about the
# time since start (bearing temperatures warm up for half an hour) tells the
# faults apart.
HEALTHY = [("train", 100 * 60, 2), ("val", 40 * 60, 1)]


def training_plan() -> list[Run]:
    runs = []
    seed = 1000
    for split, dur, n in HEALTHY:
        for _ in range(n):
            seed += 1
            runs.append(Run(f"healthy_{seed}", seed, dur, split=split))
    for j, (kind, n_train, n_val) in enumerate(PLAN):
        for i in range(n_train + n_val):
            seed = 1100 + 100 * j + i
            rng = random.Random(seed)
            f, dur = _fault(kind, rng, i)
            runs.append(
                Run(
                    f"{kind}_{seed}",
                    seed,
                    dur,
                    scenario={"name": f"{kind} variant {seed}", "faults": f if isinstance(f, list) else [f]},
                    split="train" if i < n_train else "val",
                )
            )
    return runs


# The held-out evaluation: the shipped scenarios as they are, with seeds no
# training run uses, recorded so that `twin replay` can run the shipped model.
EVAL = [
    # a whole 8 h shift, for the false-alarm goal (at most 1 per 8 h shift)
    ("healthy", None, 8 * 3600),
    ("transfer_jam", "transfer_jam.toml", 240),
    ("belt_slip", "belt_slip.toml", 300),
    ("stuck_eye", "stuck_eye.toml", 240),
    ("motor_overheat", "motor_overheat.toml", 15 * 60),
    ("plc_disconnect", "plc_disconnect.toml", 180),
    ("sensor_drift", "sensor_drift.toml", 50 * 60),
    ("bearing_wear", "bearing_wear.toml", 96 * 60),
    ("mixed", "mixed.toml", 100 * 60),
]
EVAL_SEED = 7


def eval_plan() -> list[Run]:
    return [
        Run(f"eval_{name}", EVAL_SEED, dur, shipped=f, record=True, split="eval")
        for name, f, dur in EVAL
    ]


def generate(runs: list[Run], work: Path, jobs: int = 2) -> None:
    """Make every run's events and labels (and recording) in `work`, skipping
    runs whose files are already there (a run is deterministic)."""
    work.mkdir(parents=True, exist_ok=True)
    cfg = config_without_models(work / "plant.toml")
    twin = twin_binary()

    def one(r: Run) -> None:
        ev, lab, rec = work / f"{r.name}.jsonl", work / f"{r.name}.labels.jsonl", work / f"{r.name}.mcap"
        r.files = {"events": ev, "labels": lab, "record": rec if r.record else None, "config": cfg}
        done = work / f"{r.name}.done"
        if done.exists():
            return
        cmd = [twin, "demo", "--headless", "--config", str(cfg), "--for", f"{r.duration_s}s", "--seed", str(r.seed)]
        if r.scenario is not None:
            sc = work / f"{r.name}.scenario.toml"
            write_scenario(r.scenario, sc)
            cmd += ["--scenario", str(sc)]
        elif r.shipped:
            cmd += ["--scenario", str(SCENARIOS / r.shipped)]
        cmd += ["--events", str(ev), "--labels", str(lab)]
        if r.record:
            cmd += ["--record", str(rec)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}\n{p.stderr[-2000:]}")
        done.write_text("ok\n")
        print(f"  generated {r.name} ({r.duration_s} s sim)", flush=True)

    with ThreadPoolExecutor(jobs) as ex:
        list(ex.map(one, runs))


# --- labels -------------------------------------------------------------------

# Rows this close after an acute fault starts are left out of training (the
# effect has not reached the signals yet), and rows this long after one ends
# (the 30 s windows still hold it). Label edges are the cause (docs/sim.md).
SETTLE_S = {"jam": 3, "belt_slip": 10, "eye_stuck": 5, "motor_overheat": 60}
AFTER_S = 45
# After a jam the belts pull normally again within seconds, but the jammed
# motors take half an hour to cool, and the twin's line model stays out of
# step with the plant for the rest of the run (docs/lockstep.md). That is
# the line's state for every later fault (mixed.toml), so rows after a jam
# are trained on, as normal, once the jam's windows have emptied.
AFTER_S_JAM = 90
# Gradual faults are labelled once they are big enough to see: bearing wear
# from this wear on, a sensor drift from this many units off. Rows before
# that (but after the start) are left out of training.
WEAR_VISIBLE = 0.3
DRIFT_VISIBLE = 3.0
# A bearing "fails" when its vibration becomes unacceptable (ISO 10816, 7.1
# mm/s at nominal speed: 1.8 + 9 w^2 >= 7.1): the lead time is measured to it.
WEAR_FAILED = ((7.1 - 1.8) / 9.0) ** 0.5


@dataclass
class Episode:
    kind: str
    cls: str | None
    start: float
    end: float | None
    params: dict
    target: dict

    def visible_from(self) -> float:
        """When the fault becomes labelled (seconds of sim time)."""
        if self.kind == "bearing_wear":
            f, to, ramp = self.params.get("from", 0.0), self.params.get("to", 1.0), self.params["ramp_s"]
            if to <= WEAR_VISIBLE:
                return float("inf")
            return self.start + max(0.0, (WEAR_VISIBLE - f) / (to - f)) * ramp
        if self.kind == "sensor_drift":
            return self.start + DRIFT_VISIBLE / abs(self.params["per_hour"]) * 3600
        return self.start + SETTLE_S.get(self.cls or "", 0)

    def failed_at(self) -> float | None:
        if self.kind != "bearing_wear":
            return None
        f, to, ramp = self.params.get("from", 0.0), self.params.get("to", 1.0), self.params["ramp_s"]
        if to < WEAR_FAILED:
            return None
        return self.start + max(0.0, (WEAR_FAILED - f) / (to - f)) * ramp

    def effective_end(self) -> float | None:
        if self.kind == "bearing_wear":
            e = self.start + self.params["ramp_s"]
            return e if self.end is None else min(self.end, e)
        return self.end


def episodes(labels_path: Path) -> list[Episode]:
    eps: dict[int, Episode] = {}
    for raw in labels_path.read_text().splitlines():
        if not raw.strip():
            continue
        e = json.loads(raw)
        if e["edge"] == "start":
            eps[e["fault"]] = Episode(e["kind"], KIND_TO_CLASS[e["kind"]], e["sim_t"], None, e["params"], e["target"])
        else:
            eps[e["fault"]].end = e["sim_t"]
    return [eps[k] for k in sorted(eps)]


def row_targets(ticks: np.ndarray, eps: list[Episode]) -> tuple[np.ndarray, np.ndarray]:
    """(Y f32 [R, C], keep bool [R]): per row, 1 in the column of every fault
    class active on it (a bearing can wear under an acute fault: both are
    true), 1 in `normal` when none is; keep is False for rows left out of
    training (a fault starting, just over, or not visible yet)."""
    t = ticks * TICK_S
    Y = np.zeros((len(t), len(CLASSES)), dtype=np.float32)
    keep = np.ones(len(t), dtype=bool)
    for ep in eps:
        end = ep.effective_end()
        end_v = np.inf if end is None else end
        after = AFTER_S_JAM if ep.cls == "jam" else AFTER_S
        if ep.kind == "plc_disconnect":
            after = 60
        if ep.kind == "sensor_drift":
            # No class: a slow offset within the process's own spread is
            # nothing a model of 30 s windows can see (the tags' own checks
            # and a redundant reference can); its rows are normal rows, so
            # the model learns to raise nothing on it, nor on its end.
            continue
        keep &= ~((t >= ep.start) & ((t < ep.visible_from()) | ((t >= end_v) & (t < end_v + after))))
        if ep.cls is None:
            continue
        Y[(t >= ep.visible_from()) & (t < end_v), CLASSES.index(ep.cls)] = 1.0
    Y[:, 0] = (Y[:, 1:].max(axis=1) == 0).astype(np.float32)
    return Y, keep


def row_labels(ticks: np.ndarray, eps: list[Episode]) -> np.ndarray:
    """One class index per row (for the per-class tables): an acute fault
    over a wearing bearing, the wear over normal; -1 for a row left out."""
    Y, keep = row_targets(ticks, eps)
    y = np.zeros(len(ticks), dtype=int)
    for c in [CLASSES.index("bearing_wear")] + [i for i, n in enumerate(CLASSES) if n not in ("normal", "bearing_wear")]:
        y[Y[:, c] > 0] = c
    y[~keep] = -1
    return y

