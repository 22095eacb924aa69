"""Scoring shared by training (on validation runs, from Python predictions)
and evaluation (on held-out runs, from the twin's own `alarm` events): the
ISA-18.2 alarm as the twin runs it (docs/ml.md, "Alarms"), episodes detected,
lead times, false alarms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fault_features import CLASSES, TICK_S
from runs import Episode

# An alarm of the right class raised this long after an episode ends still
# counts as detecting it (the features' 30 s windows still hold the fault).
GRACE_S = 60.0


@dataclass
class Alarm:
    cls: str
    raised_s: float
    cleared_s: float | None


def simulate_alarms(
    ticks: np.ndarray,
    probs: np.ndarray,
    good: np.ndarray,
    threshold: float,
    deadband: float,
    on_delay_s: float,
    off_delay_s: float,
) -> list[Alarm]:
    """The twin's alarm state machine on rows (one per model run)."""
    on_t, off_t = round(on_delay_s / TICK_S), round(off_delay_s / TICK_S)
    clear_level = threshold - deadband
    out = []
    for c in range(1, len(CLASSES)):
        raised, since, cur = False, None, None
        for k, p, g in zip(ticks, probs[:, c], good):
            if not g or not np.isfinite(p):
                continue
            if not raised:
                if p >= threshold:
                    since = k if since is None else since
                    if k - since >= on_t:
                        raised, since = True, None
                        cur = Alarm(CLASSES[c], k * TICK_S, None)
                        out.append(cur)
                else:
                    since = None
            else:
                if p < clear_level:
                    since = k if since is None else since
                    if k - since >= off_t:
                        raised, since = False, None
                        cur.cleared_s = k * TICK_S
                else:
                    since = None
    out.sort(key=lambda a: a.raised_s)
    return out


@dataclass
class RunScore:
    detected: list  # (episode, first matching alarm raise time or None)
    false_alarms: int
    wrong_class: int
    healthy_s: float


def score_run(alarms: list[Alarm], eps: list[Episode], duration_s: float, warmup_s: float = 30.0) -> RunScore:
    """Episodes detected by an alarm of their class; alarms that fall in no
    episode's window are false alarms (per hour of time outside episodes)."""
    windows = []
    for ep in eps:
        end = ep.effective_end()
        windows.append((ep.start, (end if end is not None else duration_s) + GRACE_S, ep))
    detected = []
    for ep in eps:
        if ep.cls is None:
            continue
        end = ep.effective_end()
        hi = (end if end is not None else duration_s) + GRACE_S
        hit = [a.raised_s for a in alarms if a.cls == ep.cls and ep.start <= a.raised_s <= hi]
        # an alarm already up when the episode starts counts too
        held = [a for a in alarms if a.cls == ep.cls and a.raised_s < ep.start and (a.cleared_s is None or a.cleared_s > ep.start)]
        detected.append((ep, min(hit) if hit else (ep.start if held else None)))
    fa = wrong = 0
    for a in alarms:
        inside = [w for w in windows if w[0] <= a.raised_s <= w[1]]
        if not inside:
            fa += 1
        elif not any(w[2].cls == a.cls for w in inside):
            wrong += 1
    covered = 0.0
    for lo, hi, _ in windows:
        covered += max(0.0, min(hi, duration_s) - lo)
    return RunScore(detected, fa, wrong, max(0.0, duration_s - warmup_s - covered))


def table(scores: dict[str, RunScore]) -> str:
    """Markdown: per scenario, episodes detected, median delay from the
    cause and (bearing wear) median lead before failure; false alarms."""
    lines = [
        "| run | episodes | detected | median delay after start (s) | median lead before failure (min) | wrong-class alarms | false alarms | fault-free hours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    tot_ep = tot_det = tot_fa = 0
    tot_h = 0.0
    for name, s in scores.items():
        eps = s.detected
        det = [(ep, t) for ep, t in eps if t is not None]
        delays = [t - ep.start for ep, t in det]
        leads = [(ep.failed_at() - t) / 60 for ep, t in det if ep.failed_at() is not None]
        tot_ep += len(eps)
        tot_det += len(det)
        tot_fa += s.false_alarms
        tot_h += s.healthy_s / 3600
        classes = ", ".join(sorted({ep.cls for ep, _ in eps}))
        what = f"{len(eps)} ({classes})" if classes else "0"
        delay = f"{np.median(delays):.0f}" if delays else "–"
        lead = f"{np.median(leads):.0f}" if leads else "–"
        lines.append(
            f"| {name} | {what} | {len(det)} | {delay} | {lead} | {s.wrong_class} | {s.false_alarms} | {s.healthy_s / 3600:.2f} |"
        )
    recall = tot_det / tot_ep if tot_ep else float("nan")
    per8 = tot_fa / tot_h * 8 if tot_h else float("nan")
    lines.append(
        f"| **all** | {tot_ep} | {tot_det} ({100 * recall:.0f} %) | | | | {tot_fa} | {tot_h:.2f} (= {per8:.2f} false alarms per 8 h) |"
    )
    return "\n".join(lines)


def per_class(y: np.ndarray, pred: np.ndarray) -> str:
    """Markdown: per-class precision and recall of the rows' most likely class."""
    lines = ["| class | rows | precision | recall |", "|---|---|---|---|"]
    for c, name in enumerate(CLASSES):
        tp = int(((pred == c) & (y == c)).sum())
        p = int((pred == c).sum())
        n = int((y == c).sum())
        prec = f"{tp / p:.3f}" if p else "–"
        rec = f"{tp / n:.3f}" if n else "–"
        lines.append(f"| {name} | {n} | {prec} | {rec} |")
    return "\n".join(lines)
