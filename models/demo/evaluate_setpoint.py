"""Evaluate the demo setpoint optimiser as the twin runs it:

    .venv/bin/python models/demo/evaluate_setpoint.py      # TWIN=path/to/twin to pick the binary

Runs the demo line headless with the shipped demo config, its models and
`[models.optimise]` included (plant-configs/packaging-line.toml), from
several line states: the line as shipped, a filler slower than the
arrivals, arrivals close to the filler's rate, a jam and a slipping belt
(the shipped scenario files). Seeds no training run uses.

From each run's own events it reports what the issue asks of the
optimiser: the forecast throughput gain of each proposal against the
current setpoints (`proposal` events), and how many candidates the physics
vetoed and why (the run's `optimiser` summary). `--report FILE` writes the
table (markdown) for the model card.

Deterministic: the same binary, config and models give the same table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runs import DEMO, ROOT, SCENARIOS, twin_binary  # noqa: E402
from train_setpoint import VARIANTS  # noqa: E402

# (name, config variant, shipped scenario file or None, seconds, seed)
RUNS = [
    ("line as shipped", "demo", None, 600, 61),
    ("slow filler", "slow_filler", None, 600, 62),
    ("busy arrivals", "busy", None, 600, 63),
    ("transfer jam", "demo", "transfer_jam.toml", 300, 64),
    ("belt slip", "demo", "belt_slip.toml", 300, 65),
]
VETOES = ["lost_product", "jam_risk", "no_gain", "bounds", "step", "forecast_failed"]


def config(work: Path, variant: str) -> Path:
    """The shipped demo config, models and all, with the variant's changes
    and the model paths made absolute (the file lives in `work`)."""
    text = DEMO.read_text().replace('"../models/', json.dumps(str(ROOT / "models")).rstrip('"') + "/")
    for old, new in VARIANTS[variant]:
        assert text.count(old) >= 1, f"{variant}: `{old}` not in the demo config"
        text = text.replace(old, new, 1)
    p = work / f"plant.{variant}.toml"
    p.write_text(text)
    return p


def run(work: Path, twin: str, spec) -> tuple[str, list[dict]]:
    name, variant, scenario, seconds, seed = spec
    ev = work / f"{name.replace(' ', '_')}.jsonl"
    cmd = [twin, "demo", "--headless", "--config", str(config(work, variant)), "--for", f"{seconds}s",
           "--seed", str(seed), "--events", str(ev)]
    if scenario:
        cmd += ["--scenario", str(SCENARIOS / scenario)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}\n{p.stderr[-2000:]}")
    events = []
    with open(ev, "rb") as fh:
        for line in fh:
            if b'"type":"proposal"' in line or b'"type":"optimiser"' in line:
                events.append(json.loads(line))
    return name, events


def row(name: str, events: list[dict]) -> str:
    props = [e for e in events if e["type"] == "proposal"]
    summary = next((e for e in events if e["type"] == "optimiser"), None)
    if summary is None:
        return f"| {name} | no optimiser in this run | | | | | |"
    c = summary["candidates"]
    gains = [p["throughput_gain_per_min"] for p in props]
    gain = f"{sum(gains) / len(gains):+.1f} [{min(gains):+.1f}, {max(gains):+.1f}]" if gains else "–"
    origins = {o: sum(1 for p in props if p["origin"] == o) for o in ("model", "neighbour")}
    share = (c["tried"] - c["passed"]) / c["tried"] if c["tried"] else 0.0
    vetoed = ", ".join(f"{k} {c['vetoed'][k]}" for k in VETOES if c["vetoed"].get(k))
    skipped = sum(summary["skipped"].values())
    return (f"| {name} | {summary['rounds']} ({skipped} skipped) | {len(props)} (model {origins['model']}, "
            f"neighbour {origins['neighbour']}) | {gain} | {c['tried']} | {share:.0%} | {vetoed or '–'} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(ROOT / "target" / "demo-setpoint-eval"), help="folder for the runs")
    ap.add_argument("--jobs", type=int, default=2, help="twin processes at once")
    ap.add_argument("--report", default=None, help="write the table (markdown) here")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    twin = twin_binary()
    with ThreadPoolExecutor(a.jobs) as ex:
        results = list(ex.map(lambda s: run(work, twin, s), RUNS))
    lines = [
        "| line state | rounds | proposals | forecast throughput gain, bottles/min: mean [min, max] | candidates tried | vetoed | vetoes by reason |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [row(name, events) for name, events in results]
    text = "\n".join(lines)
    print(text)
    if a.report:
        Path(a.report).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
