"""Level of detail: a run's training rows at bounded memory, for plots of any width. The newest
points are kept in full; older ones in buckets of equal count (first and last step, min, max and
mean), merged pairwise as the run grows. TrainFold, the fold of the training rows that every view
shares (live, attach, show, the summary), keeps one, with the run's rate and the recent steps for
the ETA. Plain Python, no torch: the control server and the front ends both use it."""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right

RAW = 1024  # the newest points kept in full: between RAW and 2 * RAW of them
BUCKETS = 512  # the older points in between BUCKETS and 2 * BUCKETS buckets of equal count
RAW_COLUMNS = ("step", "samples", "time", "loss", "acc")
VALUES = ("loss", "acc")
# A bucket: its first and last step, the samples seen and the clock at its last point, how many
# points it holds, and per value the finite ones' count, sum, min and max.
BUCKET_COLUMNS = ("first", "step", "samples", "time", "n") + tuple(
    f"{v}_{s}" for v in VALUES for s in ("n", "sum", "lo", "hi")
)
X_AXES = ("step", "samples", "time")


def _finite(v: float) -> bool:
    return v - v == 0  # false for nan and both infinities


class Lod:
    """Training points (step, samples seen, clock, loss, accuracy %) in arrival order: the newest
    `raw` to 2 * `raw` in full, the older ones in buckets of `width` points each. Memory and the
    cost of reading it for a plot are bounded whatever the run's length; two Lods fed the same
    points (and cuts) hold the same numbers, so every view of a run draws the same curve."""

    def __init__(self, raw: int = RAW, buckets: int = BUCKETS):
        self.raw_cap, self.bucket_cap = raw, buckets
        self.r = {c: array("d") for c in RAW_COLUMNS}
        self._appends = [self.r[c].append for c in RAW_COLUMNS]
        self.b = {c: array("d") for c in BUCKET_COLUMNS}
        self.width = 1  # points in a full bucket: doubles each time the buckets are merged pairwise
        self.lo_pos = math.inf  # the smallest and largest finite positive loss kept (a log axis)
        self.hi_pos = 0.0
        self.version = 0  # bumped at every change

    # ---- adding and cutting -------------------------------------------------------------

    def add(self, step: float, samples: float, time_s: float, loss: float, acc: float) -> None:
        a_step, a_samples, a_time, a_loss, a_acc = self._appends
        a_step(step)
        a_samples(samples)
        a_time(time_s)
        a_loss(loss)
        a_acc(acc)
        if 0 < loss < math.inf:
            if loss < self.lo_pos:
                self.lo_pos = loss
            if loss > self.hi_pos:
                self.hi_pos = loss
        self.version += 1
        if len(self.r["step"]) > 2 * self.raw_cap:
            self._fold(self.raw_cap)

    def _fold(self, n: int) -> None:
        """Move the oldest n raw points into the buckets, filling the last one first."""
        r, b = self.r, self.b
        i = 0
        while i < n:
            if not b["n"] or b["n"][-1] >= self.width:
                for c in BUCKET_COLUMNS:
                    b[c].append(0.0)
                b["first"][-1] = r["step"][i]
                for v in VALUES:
                    b[f"{v}_lo"][-1], b[f"{v}_hi"][-1] = math.inf, -math.inf
            j = min(n, i + int(self.width - b["n"][-1]))
            b["step"][-1], b["samples"][-1], b["time"][-1] = r["step"][j - 1], r["samples"][j - 1], r["time"][j - 1]
            b["n"][-1] += j - i
            for v in VALUES:
                vals = [x for x in r[v][i:j] if _finite(x)]
                if vals:
                    b[f"{v}_n"][-1] += len(vals)
                    b[f"{v}_sum"][-1] += sum(vals)
                    b[f"{v}_lo"][-1] = min(b[f"{v}_lo"][-1], min(vals))
                    b[f"{v}_hi"][-1] = max(b[f"{v}_hi"][-1], max(vals))
            i = j
        for c in RAW_COLUMNS:
            del r[c][:n]
        if len(b["n"]) > 2 * self.bucket_cap:
            self._merge()

    def _merge(self) -> None:
        """Merge the buckets pairwise: half as many, each twice as wide."""
        b = self.b
        k = len(b["n"])
        out = {c: array("d") for c in BUCKET_COLUMNS}
        for i in range(0, k, 2):
            j = min(i + 1, k - 1)
            out["first"].append(b["first"][i])
            for c in ("step", "samples", "time"):
                out[c].append(b[c][j])
            out["n"].append(b["n"][i] + (b["n"][j] if j != i else 0))
            for v in VALUES:
                two = j != i
                out[f"{v}_n"].append(b[f"{v}_n"][i] + (b[f"{v}_n"][j] if two else 0))
                out[f"{v}_sum"].append(b[f"{v}_sum"][i] + (b[f"{v}_sum"][j] if two else 0))
                out[f"{v}_lo"].append(min(b[f"{v}_lo"][i], b[f"{v}_lo"][j]))
                out[f"{v}_hi"].append(max(b[f"{v}_hi"][i], b[f"{v}_hi"][j]))
        self.b = out
        self.width *= 2

    def cut(self, step: float) -> None:
        """Drop the points past `step` (a rewind or a resume went back there). Within the points
        kept in full the cut is exact; a bucket that straddles `step` is kept, ending there."""
        r, b = self.r, self.b
        if r["step"] and r["step"][0] <= step:
            keep = bisect_right(r["step"], step)
            if keep == len(r["step"]):
                return
            for c in RAW_COLUMNS:
                del r[c][keep:]
        else:
            for c in RAW_COLUMNS:
                del r[c][:]
            keep = bisect_right(b["first"], step)
            for c in BUCKET_COLUMNS:
                del b[c][keep:]
            if keep and b["step"][-1] > step:
                b["step"][-1] = step
                b["n"][-1] = max(b["n"][-1], self.width)  # the next point starts a bucket of its own
        self._bounds()
        self.version += 1

    def _bounds(self) -> None:
        pos = [x for x in self.r["loss"] if 0 < x < math.inf]
        pos += [x for x in self.b["loss_lo"] if 0 < x < math.inf] + [x for x in self.b["loss_hi"] if 0 < x < math.inf]
        self.lo_pos, self.hi_pos = (min(pos), max(pos)) if pos else (math.inf, 0.0)

    # ---- reading ------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.b["n"]) + len(self.r["step"])

    @property
    def points(self) -> int:
        """How many training points it stands for (bucketed ones included)."""
        return int(sum(self.b["n"])) + len(self.r["step"])

    def weights(self) -> list[float]:
        """How many rows each entry stands for, in column() order: a bucket's count, then 1 each."""
        return list(self.b["n"]) + [1.0] * len(self.r["step"])

    def last(self, column: str) -> float:
        """The newest point's value (a bucket's mean, or its last x, when a deep cut left none in full)."""
        if self.r["step"]:
            return self.r[column][-1]
        if not self.b["n"]:
            return math.nan
        if column in VALUES:
            n = self.b[f"{column}_n"][-1]
            return self.b[f"{column}_sum"][-1] / n if n else math.nan
        return self.b[column][-1]

    def column(self, name: str, kind: str = "mean") -> list[float]:
        """One column over every entry, buckets then points in full: an x column (step, samples,
        time; `kind` "first" gives a bucket's first step), or a value's mean, lo or hi."""
        b, r = self.b, self.r
        if name in VALUES:
            if kind == "mean":
                head = [s / n if n else math.nan for s, n in zip(b[f"{name}_sum"], b[f"{name}_n"])]
            else:
                head = [x if _finite(x) else math.nan for x in b[f"{name}_{kind}"]]
        else:
            head = list(b["first"] if kind == "first" else b[name])
        return head + list(r[name])

    def step_to(self, axis: str, step: float) -> float:
        """Where `step` lies on another x axis (samples, time), from the nearest point at or after it."""
        if axis == "step":
            return step
        steps = self.column("step")
        i = min(bisect_right(steps, step - 1e-9), len(steps) - 1) if steps else -1
        if i < 0:
            return math.nan
        return self.column(axis)[i]

    # ---- the wire form ------------------------------------------------------------------

    def state(self) -> dict:
        """Plain lists, for a Digest event: load() on a new Lod gives back the same numbers."""
        return {
            "width": self.width,
            "raw": {c: self.r[c].tolist() for c in RAW_COLUMNS},
            "buckets": {c: self.b[c].tolist() for c in BUCKET_COLUMNS},
        }

    def load(self, state: dict) -> None:
        self.width = int(state.get("width", 1))
        self.r = {c: array("d", (float(x) for x in state["raw"][c])) for c in RAW_COLUMNS}
        self._appends = [self.r[c].append for c in RAW_COLUMNS]
        self.b = {c: array("d", (float(x) for x in state["buckets"][c])) for c in BUCKET_COLUMNS}
        self._bounds()
        self.version += 1

    def __eq__(self, other) -> bool:
        return isinstance(other, Lod) and repr(self.state()) == repr(other.state())

    __hash__ = None


class TrainFold:
    """The fold of a run's training rows (StepMetrics) that every view shares: the Lod of its
    points, the run's rate over training time (samples/s summed over the rows) and the recent
    (step, training seconds) pairs the ETA reads. `cut(step)` drops a branch a rewind left."""

    RECENT = 6  # rows the ETA's pace is measured over

    def __init__(self):
        self.lod = Lod()
        self.step_times: list[tuple[int, float]] = []
        self.trained_samples = 0.0
        self.trained_s = 0.0
        self.rows = 0  # rows ever folded

    def add(
        self, step: int, samples_seen: float, time_s: float, loss: float, accuracy: float, train_s: float, rate: float
    ) -> None:
        self.lod.add(step, samples_seen, time_s, loss, 100.0 * accuracy)
        times = self.step_times
        if times and train_s > times[-1][1]:
            dt = train_s - times[-1][1]
            self.trained_samples += rate * dt
            self.trained_s += dt
        times.append((step, train_s))
        if len(times) > self.RECENT:
            del times[0]
        self.rows += 1

    def add_row(self, ev) -> None:
        """A StepMetrics event."""
        self.add(ev.step, ev.samples_seen, ev.time_s, ev.loss, ev.accuracy, ev.train_s, ev.samples_per_s)

    def cut(self, step: int) -> None:
        self.lod.cut(step)
        self.step_times.clear()

    def state(self) -> dict:
        return {
            "lod": self.lod.state(),
            "step_times": [list(p) for p in self.step_times],
            "trained_samples": self.trained_samples,
            "trained_s": self.trained_s,
            "rows": self.rows,
        }

    def load(self, state: dict) -> None:
        self.lod.load(state["lod"])
        self.step_times = [(int(s), float(t)) for s, t in state.get("step_times", ())]
        self.trained_samples = float(state.get("trained_samples", 0.0))
        self.trained_s = float(state.get("trained_s", 0.0))
        self.rows = int(state.get("rows", 0))

    def __eq__(self, other) -> bool:
        return isinstance(other, TrainFold) and repr(self.state()) == repr(other.state())

    __hash__ = None
