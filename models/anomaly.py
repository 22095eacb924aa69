"""Dynamic-PCA anomaly detection for any plant: data loading, fitting, scoring, ONNX export.

The training command (train_anomaly.py), the evaluation script (evaluate.py) and the
self-test (tests/test_anomaly.py) share this module, so the NumPy reference scorer
the parity test checks the ONNX graph against is the same code the trainer fits with.

Feature semantics follow the twin's (docs/anomaly.md, ML_DESIGN.md): every tag is
sampled onto a regular grid of step `every` from its current (last received) value,
and lag k is the grid value k steps ago. The model's input row at grid step i is
lag-major: the V tag values at i, then the V values at i-1, ..., then at i-(K-1),
where K = lags + smooth (see `Model.n_blocks`).
"""

from __future__ import annotations

import csv
import fnmatch
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

NS = 1_000_000_000
TIME_COLUMNS = ("time", "timestamp", "ts", "datetime", "date_time", "date", "t")


class DataError(Exception):
    """Input data the trainer cannot use, with a sentence that says how to fix it."""


# ---------------------------------------------------------------------------
# Times and durations
# ---------------------------------------------------------------------------

_DUR = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_DUR_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": NS, "m": 60 * NS,
           "h": 3600 * NS, "d": 86400 * NS}


def parse_duration_ns(text: str) -> int:
    """`1s`, `250ms`, `1h30m` → nanoseconds (the twin's duration syntax)."""
    s = text.strip()
    pos, total = 0, 0
    for m in _DUR.finditer(s):
        if m.start() != pos:
            break
        total += round(float(m.group(1)) * _DUR_NS[m.group(2)])
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"not a duration: {text!r} (expected e.g. 1s, 500ms, 2m, 1h30m)")
    return total


def format_duration(ns: int) -> str:
    """Nanoseconds → the shortest exact twin duration (`2s`, `1500ms`, `2m`)."""
    for unit, size in (("h", 3600 * NS), ("m", 60 * NS), ("s", NS), ("ms", 1_000_000),
                       ("us", 1_000)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


def parse_time_ns(text: str) -> int:
    """RFC 3339 (`2026-01-01T00:00:00.001Z`, nanosecond fractions kept) → epoch ns."""
    s = text.strip()
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$", s)
    if not m:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    base, frac, tz = m.group(1), m.group(2) or "", m.group(3) or "Z"
    tz = "+00:00" if tz == "Z" else tz
    dt = datetime.fromisoformat(base + tz)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    whole = int(dt.timestamp())
    frac_ns = int((frac + "000000000")[:9]) if frac else 0
    return whole * NS + frac_ns


def format_time_ns(ns: int) -> str:
    """Epoch ns → RFC 3339 UTC with milliseconds, as the twin writes times."""
    sec, rem = divmod(int(ns), NS)
    dt = datetime.fromtimestamp(sec, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{rem // 1_000_000:03d}Z"


# ---------------------------------------------------------------------------
# Data: samples per tag → a regular grid
# ---------------------------------------------------------------------------

@dataclass
class Samples:
    """Per-tag sample streams: tag → (times ns sorted, values float64, good bool)."""

    tags: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]
    source: str
    tick_ns: int | None = None
    epoch_ns: int | None = None
    skipped_text: list[str] = field(default_factory=list)

    def span(self) -> tuple[int, int]:
        firsts = [t[0] for t, _, _ in self.tags.values() if len(t)]
        lasts = [t[-1] for t, _, _ in self.tags.values() if len(t)]
        if not firsts:
            raise DataError(f"{self.source}: no numeric samples")
        return min(firsts), max(lasts)


def _cell(text: str) -> float | None:
    """A CSV cell as a number: booleans as 0/1, empty as missing; None for text."""
    s = text.strip()
    if s == "":
        return math.nan
    low = s.lower()
    if low == "true":
        return 1.0
    if low == "false":
        return 0.0
    try:
        return float(s)
    except ValueError:
        return None


def _time_cell(text: str, unit_ns: int | None) -> int:
    s = text.strip()
    try:
        v = float(s)
    except ValueError:
        return parse_time_ns(s)
    if unit_ns is None:
        # By magnitude, as `twin import` guesses: s, ms, us, ns since the epoch.
        a = abs(v)
        unit_ns = NS if a < 1e11 else 1_000_000 if a < 1e14 else 1_000 if a < 1e17 else 1
    return int(round(v * unit_ns))


def read_wide_csv(path: str, time_column: str | None = None,
                  time_unit: str | None = None) -> Samples:
    """A wide CSV (a time column, one column per tag) as sample streams.

    A row's empty cell means "no new sample" (forward-filled later), `true`/`false`
    are 1/0, and a column holding any other text is left out (reported).
    """
    unit_ns = {"s": NS, "ms": 1_000_000, "us": 1_000, "ns": 1, None: None}[time_unit]
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        try:
            header = next(rows)
        except StopIteration:
            raise DataError(f"{path}: empty file") from None
        names = [h.strip() for h in header]
        if time_column is None:
            lower = [n.lower() for n in names]
            hits = [i for i, n in enumerate(lower) if n in TIME_COLUMNS]
            ti = hits[0] if hits else 0
        else:
            if time_column not in names:
                raise DataError(f"{path}: no column {time_column!r} (columns: {', '.join(names[:8])}...)")
            ti = names.index(time_column)
        cols = [i for i in range(len(names)) if i != ti]
        times: list[int] = []
        vals: list[list[float]] = [[] for _ in cols]
        text_cols: set[int] = set()
        for line_no, row in enumerate(rows, start=2):
            if not row or all(not c.strip() for c in row):
                continue
            if len(row) != len(names):
                raise DataError(f"{path}:{line_no}: {len(row)} cells, the header has {len(names)}")
            try:
                times.append(_time_cell(row[ti], unit_ns))
            except ValueError as e:
                raise DataError(f"{path}:{line_no}: {e}") from None
            for j, c in enumerate(cols):
                v = _cell(row[c])
                if v is None:
                    text_cols.add(j)
                    v = math.nan
                vals[j].append(v)
    if not times:
        raise DataError(f"{path}: no data rows")
    t = np.asarray(times, dtype=np.int64)
    order = np.argsort(t, kind="stable")
    t = t[order]
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for j, c in enumerate(cols):
        if j in text_cols:
            continue
        v = np.asarray(vals[j], dtype=np.float64)[order]
        keep = ~np.isnan(v)
        out[names[c]] = (t[keep], v[keep], np.ones(int(keep.sum()), dtype=bool))
    return Samples(out, path, skipped_text=[names[cols[j]] for j in sorted(text_cols)])


def _protobuf_class(schema, cache: dict):
    """The message class of a protobuf schema, built from the FileDescriptorSet
    the recording carries (as Foxglove decodes it), once per schema."""
    if schema.id not in cache:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        pool = descriptor_pool.DescriptorPool()
        for fd in descriptor_pb2.FileDescriptorSet.FromString(schema.data).file:
            pool.Add(fd)
        cache[schema.id] = message_factory.GetMessageClass(pool.FindMessageTypeByName(schema.name))
    return cache[schema.id]


def read_mcap(path: str) -> Samples:
    """A twin recording's `/tag/<tag>` samples, by receive time (when the core got them).

    Samples are protobuf (format version 2) or JSON (version 1), decoded lazily: only the last message of a tag before each grid point
    matters, but the grid is not known yet, so every message is kept as bytes and
    decoded in one pass per tag.
    """
    try:
        from mcap.reader import make_reader
    except ImportError as e:  # pragma: no cover - the venv pins mcap
        raise DataError("reading .mcap needs the `mcap` package (models/requirements.txt)") from e
    raw: dict[str, tuple[list[int], list[bytes]]] = {}
    # Per tag: the protobuf message class of its samples (format version 2),
    # or None for JSON samples (version 1).
    decoders: dict[str, object] = {}
    classes: dict[int, object] = {}
    tick_ns = epoch_ns = None
    with open(path, "rb") as f:
        reader = make_reader(f)
        for md in reader.iter_metadata():
            if md.name == "twin.recording":
                tick_ns = int(md.metadata.get("tick_ns", "0")) or None
                epoch_ns = int(md.metadata.get("epoch_ns", "0"))
        f.seek(0)
        reader = make_reader(f)
        for schema, channel, msg in reader.iter_messages(log_time_order=False):
            topic = channel.topic
            if not topic.startswith("/tag/"):
                continue
            tag = topic[5:]
            if tag not in decoders:
                decoders[tag] = (
                    _protobuf_class(schema, classes) if channel.message_encoding == "protobuf" else None
                )
            ts, bs = raw.setdefault(tag, ([], []))
            ts.append(msg.log_time)
            bs.append(msg.data)
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    skipped = []
    for tag, (ts, bs) in raw.items():
        vals = np.empty(len(bs))
        good = np.empty(len(bs), dtype=bool)
        numeric = True
        cls = decoders.get(tag)
        for i, b in enumerate(bs):
            if cls is not None:
                m = cls.FromString(b)
                which = m.WhichOneof("value")
                if which == "text":
                    numeric = False
                    break
                v = {"num": lambda: m.num, "flag": lambda: 1.0 if m.flag else 0.0}.get(which, lambda: math.nan)()
                vals[i] = float(v)
                good[i] = m.quality == 0 and math.isfinite(vals[i])
                continue
            d = json.loads(b)
            v = d.get("value")
            if v is None:
                if "text" in d:
                    numeric = False  # a text tag
                    break
                v = math.nan  # a bad sample carries no value
            if isinstance(v, bool):
                v = 1.0 if v else 0.0
            elif isinstance(v, str):
                v = {"NaN": math.nan, "inf": math.inf, "-inf": -math.inf}.get(v, math.nan)
            vals[i] = float(v)
            good[i] = d.get("quality", "good") == "good" and math.isfinite(vals[i])
        if not numeric:
            skipped.append(tag)
            continue
        t = np.asarray(ts, dtype=np.int64)
        order = np.argsort(t, kind="stable")
        out[tag] = (t[order], vals[order], good[order])
    return Samples(out, path, tick_ns=tick_ns, epoch_ns=epoch_ns, skipped_text=skipped)


def trim(samples: Samples, from_ns: int) -> Samples:
    """Samples from `from_ns` on; each tag's last earlier sample is kept (moved to
    `from_ns`) so that forward-filling still knows its value there."""
    out = {}
    for tag, (t, v, g) in samples.tags.items():
        i = max(0, int(np.searchsorted(t, from_ns, side="right")) - 1)
        t2 = t[i:].copy()
        if len(t2) and t2[0] < from_ns:
            t2[0] = from_ns
        out[tag] = (t2, v[i:], g[i:])
    return Samples(out, samples.source, samples.tick_ns, samples.epoch_ns, samples.skipped_text)


def read_one(path: str, time_column: str | None = None, time_unit: str | None = None) -> Samples:
    if path.lower().endswith(".mcap"):
        return read_mcap(path)
    return read_wide_csv(path, time_column, time_unit)


def read_data(paths: str | list[str], time_column: str | None = None,
              time_unit: str | None = None) -> Samples:
    """One file, or several read as one (a rotated recording's parts, a CSV per day):
    each tag's samples are merged in time order."""
    if isinstance(paths, str):
        paths = [paths]
    parts = [read_one(p, time_column, time_unit) for p in paths]
    if len(parts) == 1:
        return parts[0]
    tags: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name in dict.fromkeys(n for p in parts for n in p.tags):
        got = [p.tags[name] for p in parts if name in p.tags]
        t = np.concatenate([g[0] for g in got])
        order = np.argsort(t, kind="stable")
        tags[name] = (t[order], np.concatenate([g[1] for g in got])[order],
                      np.concatenate([g[2] for g in got])[order])
    first = parts[0]
    skipped = list(dict.fromkeys(n for p in parts for n in p.skipped_text))
    return Samples(tags, ", ".join(paths), first.tick_ns, first.epoch_ns, skipped)


@dataclass
class Grid:
    """Tag values on a regular grid: `values[i, v]` is tag v's current value at `t0 + i*step`."""

    t0_ns: int
    step_ns: int
    tags: list[str]
    values: np.ndarray  # [N, V] float64; NaN before a tag's first sample
    good: np.ndarray  # [N, V] bool: the current sample exists and is good

    @property
    def times_ns(self) -> np.ndarray:
        return self.t0_ns + self.step_ns * np.arange(self.values.shape[0], dtype=np.int64)


def to_grid(samples: Samples, step_ns: int, tags: list[str] | None = None,
            t0_ns: int | None = None) -> Grid:
    """Forward-fill each tag onto the grid: the value at grid time g is the tag's last
    sample at or before g, as the twin's feature stage sees it at that tick."""
    first, last = samples.span()
    if t0_ns is None:
        anchor = samples.epoch_ns if samples.epoch_ns is not None else first
        # The first grid point at or after the first sample, on the anchor's grid.
        k = -(-(first - anchor) // step_ns)
        t0_ns = anchor + k * step_ns
    n = int((last - t0_ns) // step_ns) + 1
    if n < 2:
        raise DataError(f"{samples.source}: shorter than two grid steps of {format_duration(step_ns)}")
    grid_t = t0_ns + step_ns * np.arange(n, dtype=np.int64)
    names = list(samples.tags) if tags is None else tags
    values = np.full((n, len(names)), np.nan)
    good = np.zeros((n, len(names)), dtype=bool)
    for j, name in enumerate(names):
        if name not in samples.tags:
            raise DataError(f"{samples.source}: no tag {name!r}, which the model needs")
        t, v, g = samples.tags[name]
        idx = np.searchsorted(t, grid_t, side="right") - 1
        has = idx >= 0
        values[has, j] = v[idx[has]]
        good[has, j] = g[idx[has]]
    return Grid(t0_ns, step_ns, names, values, good)


def lagged_rows(grid: Grid, n_blocks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The model's input rows: for each grid step i ≥ n_blocks-1, the lag-major row
    [x(i), x(i-1), ..., x(i-n_blocks+1)]. Returns (rows [M, V*K], grid index [M],
    valid [M] — every value in the row is present and good)."""
    n, v = grid.values.shape
    if n < n_blocks:
        raise DataError(f"only {n} grid steps, fewer than the {n_blocks} a row spans")
    idx = np.arange(n_blocks - 1, n)
    rows = np.concatenate([grid.values[idx - k] for k in range(n_blocks)], axis=1)
    ok = np.all(np.concatenate([grid.good[idx - k] for k in range(n_blocks)], axis=1), axis=1)
    ok &= np.all(np.isfinite(rows), axis=1)
    return rows, idx, ok


# ---------------------------------------------------------------------------
# Column choice
# ---------------------------------------------------------------------------

def choose_tags(grid: Grid, fit_rows: slice, include: list[str] | None,
                exclude: list[str]) -> tuple[list[str], dict[str, str]]:
    """The tags the model uses, and why each other one was left out.

    Constant tags carry no information and break standardisation; counters (never
    decreasing, and growing) are not stationary, so a model fitted on one shift would
    call the next shift's higher counts anomalous. Both are left out, and said so.
    """
    dropped: dict[str, str] = {}
    kept = []
    for j, name in enumerate(grid.tags):
        if include is not None and not any(fnmatch.fnmatchcase(name, p) for p in include):
            dropped[name] = "not in --tags"
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            dropped[name] = "--exclude"
            continue
        col = grid.values[fit_rows, j]
        col = col[np.isfinite(col)]
        if len(col) < 2:
            dropped[name] = "no samples in the fit part"
            continue
        if np.std(col) <= 1e-9 * max(1.0, np.abs(col).max()):
            dropped[name] = "constant in the fit part"
            continue
        d = np.diff(col)
        if np.all(d >= 0) and np.count_nonzero(d) >= 2:
            dropped[name] = "a counter (never decreases): not stationary"
            continue
        kept.append(name)
    if not kept:
        raise DataError("no usable tags left (all constant, counters, or excluded)")
    return kept, dropped


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------

@dataclass
class Model:
    """A fitted dynamic-PCA detector (see docs/anomaly.md for the method)."""

    tags: list[str]
    every_ns: int
    lags: int  # L: a DPCA vector is [x(i), ..., x(i-L)]
    smooth: int  # m: the score is the mean of the combined index over m grid steps
    mean: np.ndarray  # [V]
    sd: np.ndarray  # [V]
    p: np.ndarray  # [D, r] principal directions, D = V*(L+1)
    eig: np.ndarray  # [r]
    t2_lim: float  # the fit part's T² quantile that scales T² in the combined index
    q_lim: float  # the same for SPE
    variance_share: float
    threshold: float = math.nan

    @property
    def n_vars(self) -> int:
        return len(self.tags)

    @property
    def n_blocks(self) -> int:
        """K = L + m: the lags one input row carries (0 .. K-1 grid steps ago)."""
        return self.lags + self.smooth

    @property
    def n_features(self) -> int:
        return self.n_vars * self.n_blocks

    @property
    def dim(self) -> int:
        return self.n_vars * (self.lags + 1)

    def residual_matrix(self) -> np.ndarray:
        return np.eye(self.dim) - self.p @ self.p.T

    def parts(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """T² and SPE of each of the m DPCA vectors a row holds: ([M, m], [M, m]),
        column j being the vector that ends j grid steps ago."""
        v = self.n_vars
        z = (rows - np.tile(self.mean, self.n_blocks)) / np.tile(self.sd, self.n_blocks)
        r = self.residual_matrix()
        t2 = np.empty((rows.shape[0], self.smooth))
        q = np.empty_like(t2)
        for j in range(self.smooth):
            u = z[:, j * v:(j + self.lags + 1) * v]
            t = u @ self.p
            t2[:, j] = np.sum(t * t / self.eig, axis=1)
            e = u @ r
            q[:, j] = np.sum(e * e, axis=1)
        return t2, q

    def score(self, rows: np.ndarray) -> np.ndarray:
        """The NumPy reference of the ONNX graph, in float64."""
        t2, q = self.parts(rows)
        return np.mean(t2 / self.t2_lim + q / self.q_lim, axis=1)


def fit(fit_rows: np.ndarray, tags: list[str], every_ns: int, lags: int, smooth: int,
        variance_share: float, limit_quantile: float = 0.99) -> Model:
    """Fits the DPCA model on rows of normal operation (lag-major, K = lags + smooth
    blocks; only the first L+1 blocks of each row are needed, the rest repeat them)."""
    v = len(tags)
    x = fit_rows[:, : v * (lags + 1)]
    # Standardise with the lag-0 statistics: every lag block is the same tag, so one
    # mean and sd per tag keep the graph's Sub/Div a plain tile.
    cur = fit_rows[:, :v]
    mean = cur.mean(axis=0)
    sd = cur.std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    z = (x - np.tile(mean, lags + 1)) / np.tile(sd, lags + 1)
    cov = (z.T @ z) / max(1, z.shape[0] - 1)
    w, vec = np.linalg.eigh(cov)
    order = np.argsort(w)[::-1]
    w, vec = w[order], vec[:, order]
    # A deterministic sign per component, so the same data always gives the same bytes.
    signs = np.sign(vec[np.argmax(np.abs(vec), axis=0), np.arange(vec.shape[1])])
    vec = vec * np.where(signs == 0, 1.0, signs)
    share = np.cumsum(w) / np.sum(w)
    r = int(np.searchsorted(share, variance_share) + 1)
    r = max(1, min(r, z.shape[1] - 1))
    floor = 1e-9 * max(w[0], 1e-12)
    model = Model(tags, every_ns, lags, smooth, mean, sd, vec[:, :r], np.maximum(w[:r], floor),
                  1.0, 1.0, variance_share)
    t2, q = model.parts(fit_rows)
    model.t2_lim = float(max(np.quantile(t2[:, 0], limit_quantile), 1e-12))
    model.q_lim = float(max(np.quantile(q[:, 0], limit_quantile), 1e-12))
    return model


def calibrate(scores: np.ndarray, false_alarm_rate: float) -> float:
    """The threshold above which `false_alarm_rate` of held-out normal rows lie."""
    if len(scores) == 0:
        raise DataError("no valid held-out rows to calibrate the threshold on")
    return float(np.quantile(scores, 1.0 - false_alarm_rate, method="higher"))


# ---------------------------------------------------------------------------
# ONNX
# ---------------------------------------------------------------------------

def to_onnx(model: Model, metadata: dict[str, str], input_name: str = "X"):
    """The detector as an ONNX graph of plain operators (opset 17).

    Everything between the float32 input and the float32 output runs in float64: the
    residual E is a small difference of large terms, and float32 there alone would
    put the score's error near 1e-5 of its value, the parity budget twin promises
    across hosts. In float64 the only roundings left are the input's and the
    output's, so the NumPy reference (float64, on the float32 input) agrees to ~1e-7.

    X [batch, V*K] → Z = (X - mean) / sd → for each of the m DPCA vectors j (a Slice
    of L+1 lag blocks): T = U_j · (P / sqrt(eig * t2_lim)), E = U_j · (I - P Pᵀ) / sqrt(q_lim)
    → score = mean over j of (ΣT² + ΣE²). One weight pair serves all m vectors, so
    the file grows with V·(L+1), not with the smoothing length.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    v, k, m, d = model.n_vars, model.n_blocks, model.smooth, model.dim
    f64 = np.float64
    wt = (model.p / np.sqrt(model.eig * model.t2_lim)).astype(f64)
    we = (model.residual_matrix() / math.sqrt(model.q_lim)).astype(f64)
    inits = [
        numpy_helper.from_array(np.tile(model.mean, k).astype(f64), "mean"),
        numpy_helper.from_array(np.tile(model.sd, k).astype(f64), "sd"),
        numpy_helper.from_array(wt, "w_t2"),
        numpy_helper.from_array(we, "w_spe"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([1, 2], dtype=np.int64), "axes12"),
        numpy_helper.from_array(np.array([m], dtype=f64), "m"),
    ]
    nodes = [
        helper.make_node("Sub", ["X_in", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "sd"], ["Z"]),
    ]
    windows = []
    for j in range(m):
        s, e = f"start_{j}", f"end_{j}"
        inits.append(numpy_helper.from_array(np.array([j * v], dtype=np.int64), s))
        inits.append(numpy_helper.from_array(np.array([(j + model.lags + 1) * v], dtype=np.int64), e))
        nodes.append(helper.make_node("Slice", ["Z", s, e, "axis1"], [f"U_{j}"]))
        nodes.append(helper.make_node("Unsqueeze", [f"U_{j}", "axis1"], [f"U3_{j}"]))
        windows.append(f"U3_{j}")
    nodes += [
        helper.make_node("Concat", windows, ["U"], axis=1),  # [batch, m, D]
        helper.make_node("MatMul", ["U", "w_t2"], ["T"]),  # [batch, m, r]
        helper.make_node("MatMul", ["U", "w_spe"], ["E"]),  # [batch, m, D]
        helper.make_node("Mul", ["T", "T"], ["T_sq"]),
        helper.make_node("Mul", ["E", "E"], ["E_sq"]),
        helper.make_node("ReduceSum", ["T_sq", "axes12"], ["t2_sum"], keepdims=0),
        helper.make_node("ReduceSum", ["E_sq", "axes12"], ["spe_sum"], keepdims=0),
        helper.make_node("Add", ["t2_sum", "spe_sum"], ["combined"]),
        helper.make_node("Div", ["combined", "m"], ["score64"]),
        helper.make_node("Cast", ["score64"], ["score"], to=TensorProto.FLOAT),
    ]
    nodes.insert(0, helper.make_node("Cast", [input_name], ["X_in"], to=TensorProto.DOUBLE))
    graph = helper.make_graph(
        nodes, "twin_dpca_anomaly",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", v * k])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])],
        initializer=inits,
    )
    onnx_model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17)],
        producer_name="twin models/train_anomaly.py", producer_version="1",
        doc_string="Dynamic PCA anomaly score (T² and SPE combined, smoothed); see the model card.",
    )
    # IR 9 (ONNX 1.15): old enough for any onnxruntime the twin loads (1.16+).
    onnx_model.ir_version = 9
    helper.set_model_props(onnx_model, metadata)
    onnx.checker.check_model(onnx_model, full_check=True)
    return onnx_model


# ---------------------------------------------------------------------------
# Alarms (a Python mirror of the twin's ISA-18.2 habits, for metrics before a replay)
# ---------------------------------------------------------------------------

def alarm_states(scores: np.ndarray, valid: np.ndarray, step_ns: int, threshold: float,
                 deadband: float, on_delay_ns: int, off_delay_ns: int) -> np.ndarray:
    """Alarm active per row: raised once the score has stayed ≥ threshold for on_delay,
    cleared once it has stayed < threshold - deadband for off_delay. Invalid rows
    (uncertain input) hold the state and restart neither timer."""
    on_need = on_delay_ns // step_ns
    off_need = off_delay_ns // step_ns
    active = np.zeros(len(scores), dtype=bool)
    state, above, below = False, 0, 0
    for i, (s, ok) in enumerate(zip(scores, valid)):
        if ok:
            if not state:
                above = above + 1 if s >= threshold else 0
                if above > on_need:
                    state, below = True, 0
            else:
                below = below + 1 if s < threshold - deadband else 0
                if below > off_need:
                    state, above = False, 0
        active[i] = state
    return active
