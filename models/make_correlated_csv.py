#!/usr/bin/env python3
"""Wide CSVs of a made-up plant with 50 correlated, dynamic process variables.

    .venv/bin/python models/make_correlated_csv.py --out /tmp/plant --seed 7

writes, in --out:
- `normal.csv`         normal operation (`--normal-hours`, default 4 h at 1 s);
- `faulty.csv`         the same plant with a new noise draw and faults injected
                       (`--faulty-hours`, default 4 h), a fault every 40 minutes, each lasting 20;
- `faulty.labels.jsonl` the faults' start and end, in the twin's label format
                       (docs/lockstep.md), so models/evaluate.py reads them.

The plant: a few latent drivers (feed rate, composition, ambient, ...) follow a
stable linear dynamic system h(t) = A h(t-1) + w(t), with slow and oscillating
modes. Each variable mixes the drivers now and one step ago, some pass through a
first-order lag of their own (a tank, a thermal mass), and each has its own
offset, scale and sensor noise. So the variables are strongly correlated, with
lagged structure, as in a real process. Faults (kind, tag):
  bias            a sensor's offset steps by 3 sd;
  drift           a sensor drifts, reaching 8 sd after its 20 minutes;
  decouple        a sensor stops following the process (same mean and variance);
  noise           five sensors' noise grows fourfold;
  process_step    a latent driver shifts by 4 of its sd (every variable it drives moves);
  sluggish        a lagged variable's time constant grows tenfold (a fouled exchanger).

Same seed, same bytes: the plant structure comes from --seed, the noise of each
file from its own stream derived from it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from anomaly import NS, format_time_ns, parse_time_ns  # noqa: E402

START = "2026-01-01T00:00:00Z"
N_LATENT = 6
FAULT_EVERY_S = 40 * 60
FAULT_FOR_S = 20 * 60
FAULT_FIRST_S = 20 * 60


class Plant:
    def __init__(self, seed: int, n_vars: int):
        rng = np.random.default_rng([seed, 0])
        k = N_LATENT
        a = np.zeros((k, k))
        # Two slow first-order modes, two oscillating pairs: realistic slow plant dynamics.
        a[0, 0], a[1, 1] = 0.995, 0.98
        for i, (r, th) in zip((2, 4), ((0.97, 0.05), (0.93, 0.2))):
            a[i:i + 2, i:i + 2] = r * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
        self.a = a
        # Innovation sizes chosen so each driver's stationary sd is about 1.
        self.w_sd = np.sqrt(1 - np.abs(np.linalg.eigvals(a)) ** 2).real
        self.c0 = rng.normal(0, 1, (n_vars, k)) * (rng.random((n_vars, k)) < 0.5)
        self.c1 = rng.normal(0, 0.4, (n_vars, k)) * (rng.random((n_vars, k)) < 0.3)
        for j in range(n_vars):  # every variable sees at least one driver
            if not self.c0[j].any():
                self.c0[j, j % k] = 1.0
        self.lag = np.where(rng.random(n_vars) < 0.3, rng.uniform(0.6, 0.9, n_vars), 0.0)
        self.offset = rng.uniform(-50, 200, n_vars).round(1)
        self.scale = 10 ** rng.uniform(-1, 1.5, n_vars)
        self.noise = rng.uniform(0.05, 0.15, n_vars)
        self.n_vars = n_vars

    def names(self) -> list[str]:
        return [f"x{j + 1:02d}" for j in range(self.n_vars)]

    def run(self, n: int, seed: int, stream: int, faults: list[dict]) -> np.ndarray:
        rng = np.random.default_rng([seed, stream])
        k, v = N_LATENT, self.n_vars
        w = rng.normal(0, 1, (n + 200, k)) * self.w_sd
        e = rng.normal(0, 1, (n + 200, v)) * self.noise
        h = np.zeros(k)
        prev_h = np.zeros(k)
        y = np.zeros(v)
        out = np.empty((n, v))
        lag = self.lag.copy()
        # 200 warm-up steps so the file starts in the stationary regime.
        for i in range(-200, n):
            latent_shift = np.zeros(k)
            noise_gain = np.ones(v)
            lag = self.lag.copy()
            for f in faults:
                if f["start"] <= i < f["end"]:
                    if f["kind"] == "process_step":
                        latent_shift[f["latent"]] = f["size"]
                    elif f["kind"] == "noise":
                        noise_gain[f["vars"]] = f["gain"]
                    elif f["kind"] == "sluggish":
                        lag[f["var"]] = f["lag"]
            prev_h = h
            h = self.a @ h + w[i + 200]
            drive = self.c0 @ (h + latent_shift) + self.c1 @ prev_h
            y = lag * y + (1 - lag) * drive
            x = y + e[i + 200] * noise_gain
            if i >= 0:
                out[i] = x
        for f in faults:
            s, t = f["start"], min(f["end"], n)
            j = f.get("var")
            if f["kind"] == "bias":
                out[s:t, j] += f["size"] * out[:s, j].std()
            elif f["kind"] == "drift":
                out[s:t, j] += np.linspace(0, f["size"], f["end"] - f["start"])[: t - s] * out[:s, j].std()
            elif f["kind"] == "decouple":
                ref = out[:s, j]
                out[s:t, j] = ref.mean() + ref.std() * rng.normal(0, 1, t - s)
        return self.offset + self.scale * out


def fault_plan(plant: Plant, n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng([seed, 9])
    lagged = [int(j) for j in np.flatnonzero(plant.lag > 0)]
    picks = rng.permutation(plant.n_vars)
    kinds = [
        {"kind": "bias", "var": int(picks[0]), "size": 3.0},
        {"kind": "drift", "var": int(picks[1]), "size": 8.0},
        {"kind": "decouple", "var": int(picks[2])},
        {"kind": "noise", "vars": [int(j) for j in picks[3:8]], "gain": 4.0},
        {"kind": "process_step", "latent": 1, "size": 4.0},
        {"kind": "sluggish", "var": lagged[0] if lagged else int(picks[8]), "lag": 0.99},
    ]
    plan = []
    for i, f in enumerate(kinds):
        start = FAULT_FIRST_S + i * FAULT_EVERY_S
        if start + FAULT_FOR_S > n:
            break
        plan.append(dict(f, start=start, end=start + FAULT_FOR_S))
    return plan


def label_lines(plan: list[dict], names: list[str], t0: int, step_ns: int) -> list[str]:
    lines = []
    for i, f in enumerate(plan):
        if "var" in f:
            target = {"tag": names[f["var"]]}
        elif "vars" in f:
            target = {"tags": [names[j] for j in f["vars"]]}
        else:
            target = {"latent": f["latent"]}
        params = {k: v for k, v in f.items() if k not in ("kind", "var", "vars", "latent", "start", "end")}
        for edge, at in (("start", f["start"]), ("end", f["end"])):
            lines.append((at, i, edge, json.dumps({
                "edge": edge, "fault": i, "kind": f["kind"], "params": params,
                "sim_t": at * step_ns / NS, "t": format_time_ns(t0 + at * step_ns),
                "target": target, "v": 1}, sort_keys=True)))
    return [line for *_, line in sorted(lines, key=lambda x: (x[0], x[2] == "start", x[1]))]


def write_csv(path: str, names: list[str], t0: int, step_ns: int, data: np.ndarray) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("time," + ",".join(names) + "\n")
        for i, row in enumerate(data):
            f.write(format_time_ns(t0 + i * step_ns) + "," + ",".join(f"{x:.6g}" for x in row) + "\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--out", required=True, help="directory to write into")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--vars", type=int, default=50)
    ap.add_argument("--normal-hours", type=float, default=4.0)
    ap.add_argument("--faulty-hours", type=float, default=4.0)
    a = ap.parse_args(argv)
    step_ns = NS
    t0 = parse_time_ns(START)
    plant = Plant(a.seed, a.vars)
    names = plant.names()
    os.makedirs(a.out, exist_ok=True)
    n_norm = int(a.normal_hours * 3600)
    n_fault = int(a.faulty_hours * 3600)
    write_csv(os.path.join(a.out, "normal.csv"), names, t0, step_ns, plant.run(n_norm, a.seed, 1, []))
    plan = fault_plan(plant, n_fault, a.seed)
    write_csv(os.path.join(a.out, "faulty.csv"), names, t0, step_ns, plant.run(n_fault, a.seed, 2, plan))
    with open(os.path.join(a.out, "faulty.labels.jsonl"), "w", encoding="utf-8") as f:
        for line in label_lines(plan, names, t0, step_ns):
            f.write(line + "\n")
    print(f"wrote {a.out}/normal.csv ({n_norm} rows), faulty.csv ({n_fault} rows, {len(plan)} faults), "
          f"faulty.labels.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
