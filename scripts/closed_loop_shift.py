"""Closed loop against the commissioning setpoints on a shift where setpoints
matter (issue 12; docs/writeback.md, "Closed loop on the demo line").

    python3 scripts/closed_loop_shift.py                 # 30 min, both runs at once
    TWIN=target/release/twin python3 scripts/closed_loop_shift.py --for 10m

Runs `twin demo` (the virtual plant and the twin in one process, real Modbus
and MQTT on loopback, in real time) twice on the same scenario
(plant-configs/scenarios/variable_shift.toml by default), side by side:

- **fixed**: the demo config as shipped: every setpoint in shadow mode, so
  the plant keeps its commissioning values (belts 0.6 m/s, filler 0.8 s);
- **closed loop**: the same config with the filler's cycle setpoint
  (`filler.cycle_sp`) in `closed_loop`: the demo's setpoint model and
  optimiser propose, the physics lookahead vets, the guard decides and
  writes, and the plant follows.

Then it prints, per run, the plant's own counts (the virtual plant's line
summary: bottles taken, out, lost, refused at the infeed, belt energy) and
the guard's decisions, and checks the audit log with `twin audit verify`.
Exit status 0 when both runs completed and the audit log verifies.

Standard library only; needs a built twin (TWIN, else target/release/twin,
else target/debug/twin) and the project venv's ONNX Runtime (`make
setup-build`).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "plant-configs" / "packaging-line.toml"
SHADOW = 'tag = "filler.cycle_sp"\nmode = "shadow"'


def twin_binary() -> str:
    for c in (os.environ.get("TWIN"), ROOT / "target" / "release" / "twin", ROOT / "target" / "debug" / "twin"):
        if c and Path(c).is_file():
            return str(c)
    sys.exit("no twin binary: build one (cargo build --release) or set TWIN")


def configs(work: Path) -> tuple[Path, Path]:
    text = DEMO.read_text().replace('path = "../models/', f'path = "{ROOT}/models/')
    if SHADOW not in text:
        sys.exit(f"{DEMO}: the filler's cycle setpoint is not in shadow mode as shipped")
    fixed, closed = work / "fixed.toml", work / "closed_loop.toml"
    fixed.write_text(text)
    closed.write_text(text.replace(SHADOW, 'tag = "filler.cycle_sp"\nmode = "closed_loop"'))
    return fixed, closed


SUMMARY = re.compile(r"Virtual plant line summary\. line=(\S+) sim_s=(\S+) spawned=(\d+) out=(\d+) lost=(\d+) infeed_blocked=(\d+) belt_energy_kj=(.*)$")


def summary(log: Path) -> dict:
    for line in log.read_text().splitlines():
        m = SUMMARY.search(line)
        if m:
            return {
                "sim_s": float(m[2]),
                "taken": int(m[3]),
                "out": int(m[4]),
                "lost": int(m[5]),
                "refused": int(m[6]),
                "energy_kj": m[7].strip(),
            }
    sys.exit(f"{log}: no line summary from the virtual plant (did the run end early?)")


def decisions(events: Path) -> collections.Counter:
    c: collections.Counter = collections.Counter()
    for raw in events.read_text().splitlines():
        if '"type":"setpoint"' not in raw:
            continue
        e = json.loads(raw)
        c[(e["tag"], e["decision"], e.get("rule", ""))] += 1
    return c


def written_values(events: Path) -> list[tuple[str, float, float]]:
    out = []
    for raw in events.read_text().splitlines():
        if '"decision":"written"' in raw:
            e = json.loads(raw)
            out.append((e["t"], e["old"], e["value"]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--for", dest="span", default="30m", help="run length (a twin duration), default 30m")
    ap.add_argument("--scenario", default=str(ROOT / "plant-configs" / "scenarios" / "variable_shift.toml"))
    ap.add_argument("--seed", default="1")
    ap.add_argument("--work", default=None, help="keep the runs' files here (default: a temp folder)")
    a = ap.parse_args()
    twin = twin_binary()
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="closed-loop-"))
    work.mkdir(parents=True, exist_ok=True)
    fixed, closed = configs(work)
    runs = {}
    for name, cfg in (("fixed", fixed), ("closed_loop", closed)):
        cmd = [twin, "demo", "--no-table", "--config", str(cfg), "--scenario", a.scenario, "--seed", a.seed,
               "--for", a.span, "--events", str(work / f"{name}.jsonl"), "--log", "info"]
        if name == "closed_loop":
            cmd += ["--audit", str(work / "audit.jsonl")]
        log = open(work / f"{name}.log", "w")
        runs[name] = (subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log), log)
    print(f"running both for {a.span} of real time in {work} ...", flush=True)
    ok = True
    for name, (p, log) in runs.items():
        rc = p.wait()
        log.close()
        if rc != 0:
            print(f"{name}: twin demo exited {rc}; see {work / (name + '.log')}")
            ok = False
    if not ok:
        return 1
    s = {n: summary(work / f"{n}.log") for n in runs}
    for n in runs:
        r = s[n]
        print(f"{n:12} sim {r['sim_s']:.0f} s: taken {r['taken']}, out {r['out']}, lost {r['lost']}, "
              f"refused at the infeed {r['refused']}, belt energy {r['energy_kj']} kJ")
    gain = (s["closed_loop"]["out"] - s["fixed"]["out"]) / max(1, s["fixed"]["out"]) * 100
    print(f"closed loop against fixed: {gain:+.1f} % out")
    d = decisions(work / "closed_loop.jsonl")
    print("closed-loop run, guard decisions (tag, decision, rule): count")
    for k in sorted(d):
        print(f"  {k}: {d[k]}")
    for t, old, v in written_values(work / "closed_loop.jsonl"):
        print(f"  written at {t}: {old} -> {v}")
    verify = subprocess.run([twin, "audit", "verify", str(work / "audit.jsonl")], capture_output=True, text=True)
    print(f"twin audit verify: exit {verify.returncode} {verify.stdout.strip()} {verify.stderr.strip()}")
    return 0 if verify.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
