"""The result of ``datagen ablate`` for the report: its metrics, the arms, and the verdict computed
from their numbers; :mod:`.ablation_file` reads ``ablation.json`` into them.

The file is read by shape, as :mod:`.training` reads a training run, so that a new field or a
missing one never breaks a report: a metric of an arm is any value shaped like ``{"mean", "std",
"min", "max", "count"}`` (the spread over seeds, :func:`datagen.core.summary.spread`, which ``datagen ablate`` writes), per-seed
rows are any list of objects, and the curation's defect accounting, notes and near-duplicate
counts are shown when they are there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from datagen.core.summary import spread
from datagen.report.svg import fmt
from datagen.report.training import _num

BASELINE = "random"  # the arm every other is compared with


# metric key -> (label, decimals); the arms table shows these first, in this order, then any other
# spread-shaped metric under its raw key
METRICS: dict[str, tuple[str, int]] = {
    "epochs": ("epochs", 2), "loss": ("gold loss", 4), "win_rate": ("win rate vs random", 2),
    "calibrated_win_rate": ("calibrated win rate", 2), "debiased_win_rate": ("debiased win rate", 2),
    "defect_rate": ("defect rate", 3), "perplexity": ("gold perplexity", 3), "train_loss": ("train loss", 3),
    **{f"defect_{k}": (f"{k.replace('_', ' ')} rate", 3) for k in ("no_stop", "empty", "refusal", "truncated", "repetition", "wrong_language")},
}
# metrics a verdict compares with the baseline: lower is better for both
VERDICT_METRICS = {"loss": "gold loss", "defect_rate": "defect rate"}
ALWAYS_SHOWN = ("loss", "win_rate")  # columns of the arms table even when no arm has them
DEFAULT_DECIMALS = 3
# per-seed fields shown first, in this order; other scalar fields follow in the file's order
SEED_FIELDS = ("seed", "records", "steps", "epochs", "train_loss", "loss", "perplexity", "win_rate", "calibrated_win_rate", "debiased_win_rate",
               "wins", "losses", "ties")


def metric_label(key: str) -> str:
    """The column heading of a metric: a known label, else the raw key."""
    return METRICS[key][0] if key in METRICS else key


def format_value(key: str, value: Any) -> str:
    """A number with the decimals of its metric (integers as integers); anything else as text."""
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{METRICS.get(key, ('', DEFAULT_DECIMALS))[1]}f}"
    return str(value)


@dataclass
class Spread:
    """Mean, sample std, min and max of a metric over seeds; ``n`` seeds had a value."""

    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    n: int

    def format(self, key: str) -> str:
        """``mean ± std [min, max]`` with the decimals of metric ``key``; ``–`` without a mean."""
        if self.mean is None:
            return "–"
        text = format_value(key, self.mean)
        if self.std is not None:
            text += f" ± {format_value(key, self.std)}"
        if self.min is not None and self.max is not None:
            text += f" [{format_value(key, self.min)}, {format_value(key, self.max)}]"
        return text


def as_spread(value: Any) -> Spread | None:
    """``value`` as a :class:`Spread` if it has the spread shape (a dict with ``mean`` and
    ``std``), else None. Non-numeric parts read as missing."""
    if not isinstance(value, dict) or "mean" not in value or "std" not in value:
        return None
    n = _num(value.get("count", value.get("n")))  # "n" in files written before the summaries had one shape
    return Spread(_num(value.get("mean")), _num(value.get("std")), _num(value.get("min")), _num(value.get("max")), int(n) if n is not None else 0)


def _int(value: Any) -> int | None:
    n = _num(value)
    return int(n) if n is not None and n == int(n) else None


@dataclass
class ArmView:
    """One arm: its size, its steps, the spread of every metric over seeds, the per-seed rows."""

    name: str
    records: int | None
    steps: int | None
    metrics: dict[str, Spread]
    per_seed: list[dict[str, Any]]
    paired: dict[str, Any] = field(default_factory=dict)  # "paired_vs_random": the item-by-item gold loss comparison
    paired_defects: dict[str, Any] = field(default_factory=dict)  # "paired_defects_vs_random": answer by answer

    @property
    def seeds(self) -> int:
        """Seeds the arm was trained with: the gold loss's ``n``, else the per-seed rows."""
        loss = self.metrics.get("loss")
        return loss.n if loss is not None and loss.n else len(self.per_seed)

    def values(self, metric: str) -> list[tuple[Any, float]]:
        """``(seed, value)`` of ``metric`` in the per-seed rows that have a number for it (the
        row's position stands in for a missing seed)."""
        out = []
        for i, row in enumerate(self.per_seed):
            v = _num(row.get(metric))
            if v is not None:
                seed = row.get("seed")
                out.append((seed if isinstance(seed, (int, str)) and not isinstance(seed, bool) else i, v))
        return out

    def loss(self) -> Spread | None:
        """The gold loss's spread, computed from the per-seed rows when the arm has none."""
        if "loss" in self.metrics:
            return self.metrics["loss"]
        values = self.values("loss")
        return as_spread(spread([v for _, v in values])) if values else None


@dataclass
class DefectRow:
    """One ``meta["injected"]`` tag of the pool: how many, how many the filter let through, the
    share it removed (a defect) or kept (``clean``), and the count in each arm."""

    tag: str
    pool: int | None
    after_filter: int | None
    action: str  # "removed" | "kept" | ""
    rate: float | None
    in_arm: dict[str, Spread]
    removed_by: dict[str, int] = field(default_factory=dict)  # "stage/reason" -> records of the tag it removed


@dataclass
class Verdict:
    """An arm against the baseline on one metric (gold loss, or the behavioural defect rate; lower
    is better for both): in how many of the seeds both trained with it was lower, the difference
    of the means, and the seed noise it is compared with."""

    arm: str
    baseline: str
    lower: int
    paired: int
    diff: float | None  # arm mean - baseline mean
    baseline_std: float | None
    noise: float | None  # the larger of the two arms' std
    seeds: int  # the smaller of the two arms' seed counts
    items: dict[str, Any] = field(default_factory=dict)  # the item-by-item comparison (``paired_vs_random`` or ``paired_defects_vs_random``)
    metric: str = "loss"

    @property
    def label(self) -> str:
        return VERDICT_METRICS.get(self.metric, self.metric)

    @property
    def items_sentence(self) -> str:
        """``item by item: lower on k of n gold items (sign test p = ...); mean difference d, 95% CI
        [a, b]`` for the loss, ``answer by answer ...`` for the defect rate, or '' without an
        item-by-item comparison."""
        if self.metric != "loss":
            return self.answers_sentence
        lower, higher, n = _int(self.items.get("lower")), _int(self.items.get("higher")), _int(self.items.get("items"))
        if lower is None or n is None:
            return ""
        text = f"item by item (gold items, averaged over seeds): lower on {lower} of {n}"
        if higher is not None and higher + lower < n:
            text += f" ({n - lower - higher} equal)"
        p = _num(self.items.get("sign_test_p"))
        if p is not None:
            text += f" (sign test p = {p:.2g})"
        diff, ci = _num(self.items.get("mean_diff")), self.items.get("ci95")
        if diff is not None:
            text += f"; mean difference {'+' if diff > 0 else ''}{fmt(round(diff, 10))}"
            if isinstance(ci, list) and len(ci) == 2 and all(_num(c) is not None for c in ci):
                lo, hi = float(ci[0]), float(ci[1])
                text += f", 95% CI [{fmt(lo)}, {fmt(hi)}]"
                text += ": the interval excludes 0" if lo > 0 or hi < 0 else ": the interval includes 0"
        return text

    @property
    def answers_sentence(self) -> str:
        """``answer by answer (n answers: gold prompt x seed): a defect where random's answer had
        none in k, none where random's had one in m (sign test p = ...)``, or ''."""
        fewer, more, n = _int(self.items.get("fewer")), _int(self.items.get("more")), _int(self.items.get("answers"))
        if fewer is None or more is None or n is None:
            return ""
        text = (f"answer by answer ({n} answers: gold prompt x seed): a defect where {self.baseline}'s answer had none in {more}, "
                f"none where {self.baseline}'s had one in {fewer}")
        p = _num(self.items.get("sign_test_p"))
        return text + (f" (sign test p = {p:.2g})" if p is not None else "")

    @property
    def beyond_noise(self) -> bool:
        """Whether the mean difference exceeds the larger std (never with fewer than two seeds)."""
        return self.diff is not None and self.noise is not None and self.seeds >= 2 and abs(self.diff) > self.noise

    @property
    def sentence(self) -> str:
        """One line: ``<arm>: lower gold loss than random in k of n seeds; mean difference d (random
        seed spread s): within seed noise (the larger std is x)`` (or ``lower/higher beyond seed
        noise``)."""
        parts = []
        if self.paired:
            parts.append(f"lower {self.label} than {self.baseline} in {self.lower} of {self.paired} seeds")
        if self.diff is None:
            parts.append(f"no {self.label} to compare")
            return f"{self.arm}: " + "; ".join(parts)
        diff = round(self.diff, 10)  # no float noise (a difference of 1e-16 is 0)
        std = f" ({self.baseline} seed spread {fmt(self.baseline_std)})" if self.baseline_std is not None else ""
        parts.append(f"mean difference {'+' if diff > 0 else ''}{fmt(diff)}{std}")
        text = f"{self.arm}: " + "; ".join(parts)
        if self.noise is None or self.seeds < 2:
            text += ": seed noise unknown with fewer than two seeds"
        elif self.beyond_noise:
            text += f": {'lower' if self.diff < 0 else 'higher'} beyond seed noise (the difference exceeds the larger std, {fmt(self.noise)})"
        else:
            text += f": within seed noise (the larger std is {fmt(self.noise)})"
        items = self.items_sentence
        return text + (f". {items[0].upper()}{items[1:]}" if items else "")


def verdicts(arms: Sequence[ArmView], baseline: str = BASELINE) -> list[Verdict]:
    """Per arm other than ``baseline``: a :class:`Verdict` on gold loss, and one on the defect rate
    when both arms have it, pairing seeds by their number; none when there is no baseline arm."""
    base = next((a for a in arms if a.name == baseline), None)
    if base is None:
        return []
    out = []
    for arm in arms:
        if arm is base:
            continue
        for metric in VERDICT_METRICS:
            if metric != "loss" and not (arm.values(metric) and base.values(metric)):
                continue
            theirs, base_spread = dict(base.values(metric)), _spread_of(base, metric)
            mine, spread = dict(arm.values(metric)), _spread_of(arm, metric)
            paired = [s for s in mine if s in theirs]
            diff = None
            if spread is not None and base_spread is not None and spread.mean is not None and base_spread.mean is not None:
                diff = spread.mean - base_spread.mean
            stds = [s.std for s in (spread, base_spread) if s is not None and s.std is not None]
            out.append(Verdict(arm.name, baseline, sum(mine[s] < theirs[s] for s in paired), len(paired), diff,
                               base_spread.std if base_spread is not None else None, max(stds) if stds else None,
                               min(arm.seeds, base.seeds), arm.paired if metric == "loss" else arm.paired_defects, metric))
    return out


def _spread_of(arm: ArmView, metric: str) -> Spread | None:
    return arm.loss() if metric == "loss" else arm.metrics.get(metric)


def overall(found: Sequence[Verdict]) -> list[str]:
    """Per arm with verdicts on both metrics, one sentence that reads them together: better on
    both beyond seed noise, on one only, or on neither."""
    out = []
    for arm in dict.fromkeys(v.arm for v in found):
        mine = {v.metric: v for v in found if v.arm == arm}
        if set(mine) != set(VERDICT_METRICS):
            continue
        better = [v.label for v in mine.values() if v.beyond_noise and v.diff is not None and v.diff < 0]
        worse = [v.label for v in mine.values() if v.beyond_noise and v.diff is not None and v.diff > 0]
        baseline = next(iter(mine.values())).baseline
        if len(better) == len(mine):
            text = f"{arm} beats {baseline} beyond seed noise on both gold loss and defect rate"
        elif better and not worse:
            text = f"{arm} beats {baseline} beyond seed noise on {better[0]} only; the other is within seed noise"
        elif better:
            text = f"{arm} is mixed against {baseline}: better on {better[0]}, worse on {worse[0]}, both beyond seed noise"
        elif worse:
            text = f"{arm} is worse than {baseline} beyond seed noise on {' and '.join(worse)}"
        else:
            text = f"{arm} and {baseline} differ within seed noise on both gold loss and defect rate"
        out.append(f"Overall: {text}.")
    return out
