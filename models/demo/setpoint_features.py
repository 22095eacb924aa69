"""The demo setpoint model's features, and its `[[models]]` entry.

One source of truth, as fault_features.py is for the fault model:
`FEATURES` is what the model is trained on, `models_toml()` writes the
entry (models/demo_setpoint.toml) that makes the twin compute the same row,
and `rows_at()` rebuilds those rows from a twin event stream with the fault
model's grid code (fault_features.py: forward fill per tick, windows,
population std, slope per second).

The features describe the line's state as the twin sees it: the current
belt speeds (the setpoints being optimised), what is on the line and how
fast it leaves (physics WIP, throughput, slip), the flow in and out (count
slopes), where products stand (photo-eye occupancy: a queue in front of the
filler, a backlog at the transfer) and how hard the belts pull (a held
queue or a jam).
"""

from __future__ import annotations

import numpy as np

from fault_features import LINE, TICK_S, Feature, read_grid, rows_of

SETPOINTS = ["infeed.speed", "outfeed.speed"]
EVERY_S = 10  # the model's cadence: a proposal is for the next minute

FEATURES = [
    Feature("tag", "infeed.speed", "value"),
    Feature("tag", "outfeed.speed", "value"),
    Feature("physics", "wip"),
    Feature("physics", "throughput"),
    Feature("physics", "slip"),
    Feature("tag", "infeed.count", "slope", 30),
    Feature("tag", "outfeed.count", "slope", 30),
    Feature("tag", "infeed.eye_entry", "mean", 30),
    Feature("tag", "infeed.eye_filler", "mean", 30),
    Feature("tag", "outfeed.eye_transfer", "mean", 30),
    Feature("tag", "outfeed.eye_exit", "mean", 30),
    Feature("tag", "infeed.motor_current", "mean", 10),
    Feature("tag", "outfeed.motor_current", "mean", 10),
]
TAGS = sorted({f.name for f in FEATURES if f.source == "tag"})


def grid_of(events_path: str):
    return read_grid(events_path, TAGS)


def rows_at(grid, seconds) -> tuple[np.ndarray, np.ndarray]:
    """(X f32 [R, F], good [R]) on the ticks of whole `seconds`."""
    ticks = np.round(np.asarray(seconds, dtype=float) / TICK_S).astype(int)
    _, X, good = rows_of(grid, FEATURES, ticks)
    return X, good


def models_toml(path: str = "../models/demo_setpoint.onnx") -> str:
    out = [
        "[[models]]",
        'id = "line_setpoints"',
        f'path = "{path}"',
        'task = "setpoint"',
        f'every = "{EVERY_S}s"',
        # A proposal from a stale or half-filled window is worth nothing;
        # the optimiser waits for the next one.
        'on_bad_input = "suppress"',
    ]
    for f in FEATURES:
        out.append("  [[models.features]]")
        if f.source == "tag":
            out.append(f'  tag = "{f.name}"')
        else:
            out.append(f'  physics = "{f.name}"')
            out.append(f'  line = "{LINE}"')
        if f.stat != "value":
            out.append(f'  stat = "{f.stat}"')
            out.append(f'  window = "{f.window_s:g}s"')
    out.append("  [models.output]")
    out.append('  name = "variable"')
    out.append("  setpoints = [" + ", ".join(f'"{s}"' for s in SETPOINTS) + "]")
    return "\n".join(out) + "\n"
