"""Train the demo line's setpoint model, a surrogate of the physics lookahead,
in one command:

    TWIN=target/release/twin .venv/bin/python models/demo/train_setpoint.py

1. Records headless runs of the demo line (`twin demo --headless --record`,
   the demo config without its `[[models]]`, and two variants of it: a slow
   filler and busier arrivals) with and without faults (jams, belt slip).
2. Samples line states from each recording (every SAMPLE_EVERY_S seconds)
   and forecasts a grid of belt speeds from each one with the twin's own
   lookahead (`twin whatif CONFIG --at REC.mcap@T --grid ... --json`).
3. Labels each state with the best vetted candidate (`best()`: no product
   lost, jam risk below JAM_LIMIT; the highest forecast throughput minus a
   small energy penalty) and rebuilds the twin's feature row at that time
   from the run's own event stream (setpoint_features.py).
4. Trains a random forest (multi-output regression) on the training runs,
   reports on the held-out runs (their states forecast like the training
   states: the model's proposal against the current setpoints and the grid's
   best), and exports models/demo_setpoint.onnx (float32 [N, F] ->
   variable [N, 2], m/s) and models/demo_setpoint.toml (the `[[models]]`
   entry). `--report FILE` writes the card's tables.

Deterministic: fixed seeds for the sim and the forest, and the forecasts are
deterministic; retraining writes a byte-identical model. Recordings and
forecasts already in the work folder are reused.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runs import DEMO, MODELS_MARKER, ROOT, twin_binary, write_scenario  # noqa: E402
from setpoint_features import FEATURES, SETPOINTS, grid_of, models_toml, rows_at  # noqa: E402

MODEL = ROOT / "models" / "demo_setpoint.onnx"
TOML = ROOT / "models" / "demo_setpoint.toml"

# The candidates: every belt speed on a 0.1 m/s grid (the optimiser's
# max_step), from a crawl to past the speed at which the outfeed's corner
# throws bottles off (the forecast must see that to veto it).
GRID = {"infeed.speed": (0.2, 1.1, 0.1), "outfeed.speed": (0.2, 1.0, 0.1)}
HORIZON_S = 60
# The objective: forecast throughput (bottles/min) minus this much per m/s of
# belt speed, summed over the belts: a small energy proxy that breaks ties
# towards slower belts (0.1 m/s less on one belt is worth 0.1 bottle/min)
# without ever giving up a whole bottle for it.
ENERGY_PER_MPS = 1.0
# Vetted: nothing lost or pushed off, and the jam risk (lookahead.rs: blocked
# arrivals or the longest standing queue, as a share) below this.
JAM_LIMIT = 0.5
# The setpoints' bounds and step as the optimiser applies them ([[setpoints]]).
BOUNDS = (0.1, 1.2)
MAX_STEP = 0.1
FIRST_S = 45  # the 30 s windows are full, the line has filled
SAMPLE_EVERY_S = 20
FOREST = dict(n_estimators=60, min_samples_leaf=3, max_depth=12, random_state=23, n_jobs=1)


@dataclass
class Run:
    name: str
    split: str  # train | heldout
    scenario_kind: str  # the card's grouping
    seed: int
    duration_s: int
    variant: str = "demo"  # config variant, see VARIANTS
    faults: list = field(default_factory=list)
    every_s: int = SAMPLE_EVERY_S


def _jam(conveyor, position, at, duration):
    return {"kind": "jam", "line": "line1", "conveyor": conveyor, "position": position, "at": f"{at}s", "duration": f"{duration}s"}


def _slip(conveyor, slip, at, duration):
    return {"kind": "belt_slip", "line": "line1", "conveyor": conveyor, "slip": slip, "at": f"{at}s", "duration": f"{duration}s"}


# Config variants: the demo line as shipped, a filler slower than the
# arrivals (a queue grows in front of it), and arrivals close to the filler's
# rate (a line near its capacity). Same geometry, so the same model applies.
VARIANTS = {
    "demo": [],
    "slow_filler": [('cycle_time = "800ms"', 'cycle_time = "1100ms"')],
    "busy": [('spawn_interval = "1s"', 'spawn_interval = "850ms"')],
}

PLAN = [
    Run("healthy_a", "train", "healthy", 31, 600),
    Run("healthy_b", "train", "healthy", 32, 600),
    Run("slow_filler_a", "train", "slow filler", 33, 480, "slow_filler"),
    Run("busy_a", "train", "busy arrivals", 34, 480, "busy"),
    Run("jam_a", "train", "jam", 35, 360, faults=[_jam("outfeed", 0.35, 120, 45)]),
    Run("jam_b", "train", "jam", 36, 300, faults=[_jam("infeed", 3.5, 90, 30)]),
    Run("slip_a", "train", "belt slip", 37, 360, faults=[_slip("outfeed", 0.35, 60, 180)]),
    Run("slip_b", "train", "belt slip", 38, 360, faults=[_slip("infeed", 0.3, 90, 180)]),
    Run("busy_jam_a", "train", "jam", 39, 300, "busy", faults=[_jam("outfeed", 1.6, 100, 30)]),
    # Held out: other seeds, other fault positions and sizes.
    Run("h_healthy", "heldout", "healthy", 41, 480, every_s=30),
    Run("h_slow_filler", "heldout", "slow filler", 42, 360, "slow_filler", every_s=30),
    Run("h_busy", "heldout", "busy arrivals", 43, 360, "busy", every_s=30),
    Run("h_jam", "heldout", "jam", 44, 300, faults=[_jam("outfeed", 1.6, 90, 40)], every_s=30),
    Run("h_slip", "heldout", "belt slip", 45, 300, faults=[_slip("outfeed", 0.25, 60, 150)], every_s=30),
]


# --- labels -------------------------------------------------------------------


def vetted(forecast: dict) -> bool:
    """The physics would let this candidate through."""
    return forecast["lost"] == 0 and forecast["pushed"] == 0 and forecast["jam_risk"] < JAM_LIMIT


def objective(values: dict, forecast: dict) -> float:
    return forecast["throughput_per_min"] - ENERGY_PER_MPS * sum(values[s] for s in SETPOINTS)


def best(candidates: list[dict]) -> dict | None:
    """The best vetted candidate (`{"set": {...}, "candidate": forecast}`),
    or None when the physics vetoes every one. Ties (equal objective, which
    the penalty makes rare) go to the first in grid order."""
    top, top_obj = None, -np.inf
    for c in candidates:
        if not vetted(c["candidate"]):
            continue
        o = objective(c["set"], c["candidate"])
        if o > top_obj + 1e-9:
            top, top_obj = c, o
    return top


def legalise(current: dict, proposal: dict, step: bool) -> dict:
    """The proposal inside the bounds; with `step`, at most MAX_STEP from the
    current value (as the optimiser clamps it), else snapped to the grid."""
    out = {}
    for s in SETPOINTS:
        v = float(np.clip(proposal[s], *BOUNDS))
        if step:
            cur = current[s]
            v = float(np.clip(v, cur - MAX_STEP, cur + MAX_STEP))
            v = round(v, 3)
        else:
            lo, hi, st = GRID[s]
            v = round(float(np.clip(round((v - lo) / st) * st + lo, lo, hi)), 6)
        out[s] = v
    return out


# --- data ---------------------------------------------------------------------


def config_variant(work: Path, variant: str) -> Path:
    text = DEMO.read_text()
    cut = text.find(MODELS_MARKER)
    if cut >= 0:
        text = text[:cut]
    for old, new in VARIANTS[variant]:
        assert text.count(old) >= 1, f"{variant}: `{old}` not in the demo config"
        text = text.replace(old, new, 1)
    p = work / f"plant.{variant}.toml"
    if not p.exists() or p.read_text() != text:
        p.write_text(text)
    return p


def sh(cmd: list) -> str:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}\n{p.stderr[-2000:]}")
    return p.stdout


def record(r: Run, work: Path, twin: str) -> None:
    rec, ev = work / f"{r.name}.mcap", work / f"{r.name}.jsonl"
    done = work / f"{r.name}.done"
    if done.exists():
        return
    cfg = config_variant(work, r.variant)
    cmd = [twin, "demo", "--headless", "--config", cfg, "--for", f"{r.duration_s}s", "--seed", r.seed,
           "--events", ev, "--labels", work / f"{r.name}.labels.jsonl", "--record", rec]
    if r.faults:
        sc = work / f"{r.name}.scenario.toml"
        write_scenario({"name": r.name, "faults": r.faults}, sc)
        cmd += ["--scenario", sc]
    sh(cmd)
    done.write_text("ok\n")
    print(f"  recorded {r.name} ({r.duration_s} s sim)", flush=True)


def grid_args() -> list[str]:
    out = []
    for s, (lo, hi, st) in GRID.items():
        out += ["--grid", f"{s}={lo:g}:{hi:g}:{st:g}"]
    return out


def forecast_grid(r: Run, t_s: int, work: Path, twin: str) -> Path:
    out = work / "grids" / f"{r.name}@{t_s}.jsonl"
    if out.exists():
        return out
    cfg = config_variant(work, r.variant)
    text = sh([twin, "whatif", cfg, "--at", f"{work / (r.name + '.mcap')}@{t_s}s", "--horizon", f"{HORIZON_S}s",
               "--json", *grid_args()])
    tmp = out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.rename(out)
    return out


def forecast_one(r: Run, t_s: int, values: dict, work: Path, twin: str) -> dict:
    """The forecast of one candidate (a step-limited proposal), cached."""
    key = "_".join(f"{values[s]:.3f}" for s in SETPOINTS)
    out = work / "proposals" / f"{r.name}@{t_s}_{key}.json"
    if not out.exists():
        cfg = config_variant(work, r.variant)
        sets = [a for s in SETPOINTS for a in ("--set", f"{s}={values[s]}")]
        text = sh([twin, "whatif", cfg, "--at", f"{work / (r.name + '.mcap')}@{t_s}s", "--horizon", f"{HORIZON_S}s",
                   "--json", *sets])
        out.write_text(text)
    return json.loads(out.read_text())["candidate"]


def read_grid_file(path: Path) -> tuple[dict, list[dict]]:
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    head = lines[0]
    assert head["type"] == "start", path
    return head, lines[1:]


def states(r: Run) -> list[int]:
    return list(range(FIRST_S, r.duration_s - HORIZON_S + 1, r.every_s))


def dataset(runs: list[Run], work: Path, twin: str, jobs: int) -> list[dict]:
    (work / "grids").mkdir(parents=True, exist_ok=True)
    (work / "proposals").mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(jobs) as ex:
        list(ex.map(lambda r: record(r, work, twin), runs))
    todo = [(r, t) for r in runs for t in states(r)]
    print(f"  {len(todo)} states, {np.prod([round((hi - lo) / st) + 1 for lo, hi, st in GRID.values()])} candidates each", flush=True)
    t0 = time.time()
    with ThreadPoolExecutor(jobs) as ex:
        paths = list(ex.map(lambda rt: forecast_grid(rt[0], rt[1], work, twin), todo))
    print(f"  forecasts: {time.time() - t0:.0f} s", flush=True)
    data = []
    for r in runs:
        g = grid_of(str(work / f"{r.name}.jsonl"))
        ts = states(r)
        X, good = rows_at(g, ts)
        for i, t in enumerate(ts):
            head, cands = read_grid_file(paths[todo.index((r, t))])
            current = {s: head["start"]["belt_speeds"][s] for s in SETPOINTS}
            b = best(cands)
            data.append(dict(run=r, t=t, x=X[i], good=bool(good[i]), head=head, cands=cands, current=current,
                             best=b, label=None if b is None else [b["set"][s] for s in SETPOINTS]))
    return data


# --- model --------------------------------------------------------------------


def fit(X, y):
    from sklearn.ensemble import RandomForestRegressor

    m = RandomForestRegressor(**FOREST)
    m.fit(X, y)
    return m


def export(model, ranges, path: Path) -> int:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        model,
        initial_types=[("X", FloatTensorType([None, len(FEATURES)]))],
        # skl2onnx declares a regressor's output [N, 1] even when the forest
        # has several targets; the twin checks the declared width against
        # output.setpoints, so say what the model really gives.
        final_types=[("variable", FloatTensorType([None, len(SETPOINTS)]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    onx.doc_string = "twin demo line setpoint model (models/demo/train_setpoint.py)"
    onx.graph.name = "demo_setpoint"  # skl2onnx's default is a random uuid
    for k, v in {
        "twin.task": "setpoint",
        "twin.setpoints": json.dumps(SETPOINTS),
        "twin.units": json.dumps(["m/s"] * len(SETPOINTS)),
        "twin.features": json.dumps([f.label() for f in FEATURES]),
        # Per feature, the training rows' [min, max]: the parity test draws
        # its rows from these.
        "twin.feature_ranges": json.dumps(ranges),
    }.items():
        p = onx.metadata_props.add()
        p.key, p.value = k, v
    data = onx.SerializeToString()
    path.write_bytes(data)
    return len(data)


def onnx_predict(path: Path, X: np.ndarray) -> np.ndarray:
    sys.path.insert(0, str(ROOT / "models" / "tools"))
    from ort_run import session

    s = session(str(path))
    return s.run(None, {s.get_inputs()[0].name: X.astype(np.float32)})[0]


def lookup(cands: list[dict], values: dict) -> dict | None:
    for c in cands:
        if all(abs(c["set"][s] - values[s]) < 1e-6 for s in SETPOINTS):
            return c["candidate"]
    return None


def evaluate(held: list[dict], pred: np.ndarray, work: Path, twin: str, jobs: int) -> str:
    """The card's held-out table: per scenario, the proposal's forecast against
    the current setpoints and the grid's best."""
    def one(i_d):
        i, d = i_d
        p = {s: float(pred[i, j]) for j, s in enumerate(SETPOINTS)}
        snapped = legalise(d["current"], p, step=False)
        stepped = legalise(d["current"], p, step=True)
        return dict(d=d, p=p, snapped=snapped, f_snap=lookup(d["cands"], snapped),
                    f_step=forecast_one(d["run"], d["t"], stepped, work, twin), stepped=stepped)

    with ThreadPoolExecutor(jobs) as ex:
        rows = list(ex.map(one, enumerate(held)))
    groups: dict[str, list] = {}
    for r in rows:
        groups.setdefault(r["d"]["run"].scenario_kind, []).append(r)
    groups["**all**"] = rows
    out = [
        "| scenario | states | as-is throughput (/min) | grid best: gain | proposal on the grid: gain, regret, vetoed | proposal one step from now: gain, vetoed | label MAE in, out (m/s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, rs in groups.items():
        base = np.array([r["d"]["head"]["base"]["throughput_per_min"] for r in rs])
        bestt = np.array([r["d"]["best"]["candidate"]["throughput_per_min"] if r["d"]["best"] else np.nan for r in rs])
        snap = np.array([r["f_snap"]["throughput_per_min"] for r in rs])
        step = np.array([r["f_step"]["throughput_per_min"] for r in rs])
        regret = np.array([
            objective(r["d"]["best"]["set"], r["d"]["best"]["candidate"]) - objective(r["snapped"], r["f_snap"])
            if r["d"]["best"] else np.nan for r in rs])
        veto_snap = np.mean([not vetted(r["f_snap"]) for r in rs])
        veto_step = np.mean([not vetted(r["f_step"]) for r in rs])
        lab = [(r["p"], r["d"]["label"]) for r in rs if r["d"]["label"] is not None]
        mae = [np.mean([abs(p[s] - l[j]) for p, l in lab]) for j, s in enumerate(SETPOINTS)]
        out.append(
            f"| {name} | {len(rs)} | {base.mean():.1f} | {np.nanmean(bestt - base):+.2f} | "
            f"{np.mean(snap - base):+.2f}, {np.nanmean(regret):.2f}, {veto_snap:.0%} | "
            f"{np.mean(step - base):+.2f}, {veto_step:.0%} | {mae[0]:.2f}, {mae[1]:.2f} |"
        )
    return "\n".join(out)


def label_table(data: list[dict]) -> str:
    out = ["| split | scenario | states | vetoed entirely | label infeed (m/s) mean [min, max] | label outfeed (m/s) mean [min, max] | grid candidates vetoed |",
           "|---|---|---|---|---|---|---|"]
    keys = sorted({(d["run"].split, d["run"].scenario_kind) for d in data}, key=lambda k: (k[0] != "train", k[1]))
    for split, kind in keys:
        ds = [d for d in data if d["run"].split == split and d["run"].scenario_kind == kind]
        labs = np.array([d["label"] for d in ds if d["label"] is not None]).reshape(-1, len(SETPOINTS))
        none = sum(d["label"] is None for d in ds)
        vet = np.mean([not vetted(c["candidate"]) for d in ds for c in d["cands"]])
        cols = [f"{labs[:, j].mean():.2f} [{labs[:, j].min():.1f}, {labs[:, j].max():.1f}]" if len(labs) else "–"
                for j in range(len(SETPOINTS))]
        out.append(f"| {split} | {kind} | {len(ds)} | {none} | {cols[0]} | {cols[1]} | {vet:.0%} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(ROOT / "target" / "demo-setpoint"), help="folder for recordings and forecasts")
    ap.add_argument("--jobs", type=int, default=2, help="twin processes at once")
    ap.add_argument("--report", default=None, help="write the card's tables (markdown) here")
    a = ap.parse_args()
    t0 = time.time()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    twin = twin_binary()
    print(f"{len(PLAN)} runs ({sum(r.duration_s for r in PLAN) / 60:.0f} min of sim time) in {work}", flush=True)
    data = dataset(PLAN, work, twin, a.jobs)
    usable = [d for d in data if d["good"] and d["label"] is not None]
    train = [d for d in usable if d["run"].split == "train"]
    held = [d for d in data if d["run"].split == "heldout" and d["good"]]
    X = np.array([d["x"] for d in train], dtype=np.float32)
    y = np.array([d["label"] for d in train])
    print(f"training rows {len(train)} (of {sum(d['run'].split == 'train' for d in data)} states); held-out states {len(held)}")
    model = fit(X, y)
    ranges = [[float(X[:, j].min()), float(X[:, j].max())] for j in range(X.shape[1])]
    size = export(model, ranges, MODEL)
    print(f"wrote {MODEL} ({size} bytes; {len(FEATURES)} features -> {len(SETPOINTS)} setpoints)")
    block = (
        "# The demo setpoint model (models/demo_setpoint.md), written by\n"
        "# models/demo/train_setpoint.py: every 10 s, the best belt speeds for the\n"
        "# next minute as the physics lookahead would pick them. Needs [[setpoints]]\n"
        "# for infeed.speed and outfeed.speed (the optimiser's bounds and steps).\n" + models_toml()
    )
    TOML.write_text(block)
    print(f"wrote {TOML}")
    Xh = np.array([d["x"] for d in held], dtype=np.float32)
    pred = onnx_predict(MODEL, Xh)
    imp = sorted(zip(model.feature_importances_, [f.label() for f in FEATURES]), reverse=True)
    report = [
        f"### Data: {len(data)} states, {len(usable)} usable (a good feature row and a vetted candidate)",
        label_table(data),
        "",
        "### Held-out states: the model's proposal forecast by the physics (Python onnxruntime on the twin's rows)",
        evaluate(held, pred, work, twin, a.jobs),
        "",
        "### Feature importances (impurity)",
        "| feature | importance |",
        "|---|---|",
        *[f"| {n} | {v:.3f} |" for v, n in imp],
    ]
    print("\n".join(report))
    if a.report:
        Path(a.report).write_text("\n".join(report) + "\n")
    print(f"done in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
