"""What each view of the quality report shows, computed from run directories.

Pure functions over plain data (the rows of ``records.jsonl`` / ``rejected.jsonl`` as dicts, and
``stats.json`` / ``manifest.json``), so every number in the report can be unit-tested without a
browser. Nothing here loads a model; embeddings are read from the on-disk cache only.

Several run directories given in pipeline order (``evolve``, ``distill``, ``filter``, ``select``)
are read as one history: a record (keyed by its content-hash id) collects one :class:`Event` per
run in which it appears, kept or rejected, and its *fate* is its last event. A record is *curated*
when its fate is "kept" by the last (primary) run.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datagen.errors import UserError
from datagen.text import detect_language

if TYPE_CHECKING:
    from datagen.report.ablation import AblationView
    from datagen.report.training import EvalView, TrainingView

MAX_TEXT_CHARS = 4000  # text kept per record in the report (the run directory keeps all of it)
PREVIEW_CHARS = 160  # instruction shown per row of the record browser
NONE_LABEL = "(none)"
QUALITY_SCORES = ("judge", "ifd", "complexity", "complexity_features", "relevance")
DEDUP_KINDS = {"exact": "exact", "minhash": "minhash", "semantic": "semantic", "select": "too similar"}


# -- reading run directories -------------------------------------------------------------------
@dataclass
class Run:
    """One run directory as read from disk. ``records``/``rejected`` are the raw JSON rows."""

    path: Path
    label: str
    manifest: dict[str, Any]
    stats: dict[str, Any]
    records: list[dict[str, Any]]
    rejected: list[dict[str, Any]]

    @property
    def command(self) -> str:
        return str(self.manifest.get("command") or self.stats.get("command") or "")

    @property
    def complete(self) -> bool:
        return self.manifest.get("status") == "complete"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: not valid JSON ({e.msg})") from None
    return rows


def load_run(path: str | Path, label: str | None = None) -> Run:
    """Read a run directory. It needs ``stats.json`` or ``manifest.json``; missing record files
    read as empty (an unfinished run)."""
    p = Path(path)
    if not p.is_dir():
        raise UserError(f"{p}: no such directory")
    stats_p, man_p = p / "stats.json", p / "manifest.json"
    if not stats_p.is_file() and not man_p.is_file():
        raise UserError(f"{p}: not a datagen run directory (no stats.json or manifest.json)")
    manifest = _read_json(man_p) if man_p.is_file() else {}
    stats = _read_json(stats_p) if stats_p.is_file() else {}
    return Run(p, label or p.name, manifest, stats, _read_jsonl(p / "records.jsonl"), _read_jsonl(p / "rejected.jsonl"))


def load_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Read the run directories in pipeline order, labelling each by its directory name (made
    unique with its parent's name when two are alike)."""
    paths = [Path(p) for p in paths]
    names = [p.resolve().name for p in paths]
    labels = []
    for p, name in zip(paths, names):
        label = name if names.count(name) == 1 else f"{p.resolve().parent.name}/{name}"
        while label in labels:
            label += "'"
        labels.append(label)
    return [load_run(p, lab) for p, lab in zip(paths, labels)]


# -- funnel ------------------------------------------------------------------------------------
@dataclass
class FunnelRow:
    """One stage of one run: records in, out, and rejections per reason (from ``stats.json``)."""

    run: str
    stage: str
    n_in: int
    n_out: int
    rejected: dict[str, int]

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


def funnel(runs: Sequence[Run]) -> list[FunnelRow]:
    """Every stage of every run, in order, with the counts of its ``stats.json``."""
    rows = []
    for run in runs:
        for name, s in run.stats.get("stages", {}).items():
            rejected = {str(k): int(v) for k, v in (s.get("rejected") or {}).items()}
            rows.append(FunnelRow(run.label, name, int(s.get("in", 0)), int(s.get("out", 0)), rejected))
    return rows


def top_reasons(rows: Sequence[FunnelRow], n: int = 10) -> list[tuple[str, str, str, int]]:
    """The ``n`` most frequent (run, stage, reason, count), most frequent first."""
    items = [(r.run, r.stage, reason, c) for r in rows for reason, c in r.rejected.items() if c]
    return sorted(items, key=lambda t: (-t[3], t[0], t[1], t[2]))[:n]


# -- the record index --------------------------------------------------------------------------
@dataclass
class Event:
    """What one run did with a record: kept it, or rejected it at ``stage`` for ``reason``."""

    run: str
    status: str  # "kept" | "rejected"
    stage: str = ""
    reason: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class Entry:
    """One record across the runs: its latest content and every event, in run order."""

    id: str
    record: dict[str, Any]
    events: list[Event] = field(default_factory=list)

    @property
    def fate(self) -> Event:
        return self.events[-1]

    @property
    def scores(self) -> dict[str, float]:
        return self.record.get("scores") or {}

    @property
    def meta(self) -> dict[str, Any]:
        return self.record.get("meta") or {}

    @property
    def source(self) -> str:
        return str(self.record.get("source") or NONE_LABEL)

    @property
    def parent_id(self) -> str | None:
        return self.record.get("parent_id")

    @property
    def instruction(self) -> str:
        return last_turn(self.record, "user")

    @property
    def response(self) -> str:
        msgs = self.record.get("messages") or []
        return msgs[-1].get("content", "") if msgs and msgs[-1].get("role") == "assistant" else ""


def last_turn(record: dict[str, Any], role: str) -> str:
    for m in reversed(record.get("messages") or []):
        if m.get("role") == role:
            return str(m.get("content", ""))
    return ""


def _row_record(row: dict[str, Any], run: str, n: int) -> dict[str, Any]:
    """The record of a rejection row; a bad input row (no record) becomes a stand-in record that
    shows the raw row."""
    rec = row.get("record")
    if isinstance(rec, dict) and rec.get("messages"):
        return rec
    raw = row.get("raw")
    text = raw if isinstance(raw, str) else json.dumps(raw, ensure_ascii=False)
    where = row.get("location") or f"{run}:rejected:{n}"
    return {"id": f"row:{where}", "messages": [{"role": "user", "content": text or ""}], "source": "input", "parent_id": None,
            "scores": {}, "flags": {}, "meta": {"location": where}}


@dataclass
class Index:
    """Every record of the runs, by id, in first-seen order; ``primary`` is the last run."""

    entries: dict[str, Entry]
    runs: list[str]

    @property
    def primary(self) -> str:
        return self.runs[-1] if self.runs else ""

    def curated(self, e: Entry) -> bool:
        return e.fate.status == "kept" and e.fate.run == self.primary

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def totals(self) -> dict[str, int]:
        """Distinct records seen, how many are curated, rejected, or kept by an earlier run and
        not passed on to a later one ("other")."""
        curated = sum(1 for e in self if self.curated(e))
        rejected = sum(1 for e in self if e.fate.status == "rejected")
        return {"records": len(self), "curated": curated, "rejected": rejected, "other": len(self) - curated - rejected}


def build_index(runs: Sequence[Run]) -> Index:
    """Merge the runs' records and rejections by id. Within a run, rejections are read before the
    kept records, so when one conversation was both kept and rejected (identical copies), kept
    wins; across runs, the later run's event and content come last."""
    entries: dict[str, Entry] = {}

    def add(rec: dict[str, Any], ev: Event) -> None:
        rid = str(rec.get("id") or "")
        e = entries.get(rid)
        if e is None:
            entries[rid] = Entry(rid, rec, [ev])
        else:
            e.record = rec
            e.events.append(ev)

    for run in runs:
        for n, row in enumerate(run.rejected, 1):
            ev = Event(run.label, "rejected", str(row.get("stage", "")), str(row.get("reason", "")), row.get("evidence") or {})
            add(_row_record(row, run.label, n), ev)
        for rec in run.records:
            add(rec, Event(run.label, "kept"))
    return Index(entries, [r.label for r in runs])


def lineage(index: Index, rid: str, limit: int = 50) -> list[tuple[str, bool]]:
    """The parent chain of record ``rid`` (nearest parent first), following ``parent_id`` across
    the runs: ``(id, found in the runs)``. The chain stops at a parent the runs do not hold (a seed,
    say), at a cycle, or after ``limit`` steps."""
    chain: list[tuple[str, bool]] = []
    seen = {rid}
    e = index.entries.get(rid)
    pid = e.parent_id if e else None
    while pid and pid not in seen and len(chain) < limit:
        parent = index.entries.get(pid)
        chain.append((pid, parent is not None))
        if parent is None:
            break
        seen.add(pid)
        pid = parent.parent_id
    return chain


# -- score histograms --------------------------------------------------------------------------
@dataclass
class Threshold:
    score: str
    bound: str  # "min" | "max"
    value: float
    origin: str  # e.g. "filter: quality.max_ifd", "select: --min judge"


@dataclass
class Histogram:
    """Equal-width bins over [lo, hi]; ``curated``/``other`` count the records per bin."""

    score: str
    edges: list[float]
    curated: list[int]
    other: list[int]
    thresholds: list[Threshold]

    @property
    def count(self) -> int:
        return sum(self.curated) + sum(self.other)


def _stage_settings(run: Run, name: str) -> dict[str, Any] | None:
    """The ``describe()`` of stage ``name`` in a filter run's manifest, if present."""
    for s in run.manifest.get("stages") or (run.manifest.get("settings") or {}).get("describe") or []:
        if isinstance(s, dict) and s.get("name") == name:
            return s
    return None


def thresholds(runs: Sequence[Run]) -> list[Threshold]:
    """Score thresholds the runs applied: ``datagen filter``'s quality and semantic sections
    (effective values, as the manifest describes them) and ``datagen select``'s ``--min``/``--max``."""
    from datagen.filters import quality, semantic

    out = []
    for run in runs:
        for stage, fields in (("quality", quality.THRESHOLDS), ("semantic", semantic.THRESHOLDS)):
            q = _stage_settings(run, stage)
            for key, (score, bound, _) in fields.items() if q else ():
                v = q.get(key)
                if isinstance(v, (int, float)) and score in (q.get("scorers") or [score]):
                    out.append(Threshold(score, bound, float(v), f"{run.label}: {stage}.{key}"))
        for t in run.manifest.get("thresholds") or []:
            for bound in ("min", "max"):
                if isinstance(t, dict) and isinstance(t.get(bound), (int, float)):
                    out.append(Threshold(str(t.get("score")), bound, float(t[bound]), f"{run.label}: --{bound} {t.get('score')}"))
    return out


def histogram(index: Index, score: str, limits: Sequence[Threshold] = (), bins: int = 20) -> Histogram | None:
    """Histogram of ``score`` over the records that have it (their latest value), split into
    curated and not; None when no record has the score. Thresholds widen the range so that their
    markers stay on the chart."""
    pairs = [(float(e.scores[score]), index.curated(e)) for e in index
             if isinstance(e.scores.get(score), (int, float)) and math.isfinite(e.scores[score])]
    if not pairs:
        return None
    marks = [t for t in limits if t.score == score]
    values = [v for v, _ in pairs]
    lo, hi = min(values + [t.value for t in marks]), max(values + [t.value for t in marks])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    width = (hi - lo) / bins
    curated, other = [0] * bins, [0] * bins
    for v, cur in pairs:
        i = min(int((v - lo) / width), bins - 1)
        (curated if cur else other)[i] += 1
    edges = [round(lo + i * width, 6) for i in range(bins + 1)]
    return Histogram(score, edges, curated, other, marks)


# -- MinHash detection curve -------------------------------------------------------------------
@dataclass
class DetectionCurve:
    """P(candidate | Jaccard s) = 1 - (1 - s**rows)**bands, sampled on [0, 1]."""

    bands: int
    rows: int
    threshold: float
    points: list[tuple[float, float]]
    observed: list[float]  # verified Jaccards of the near duplicates found

    @property
    def at_threshold(self) -> float:
        from datagen.filters.lsh import detection_probability

        return float(detection_probability(self.threshold, self.bands, self.rows))


def detection_curve(runs: Sequence[Run], points: int = 101) -> DetectionCurve | None:
    """The curve of the last run with a MinHash stage (bands and rows as stored in its manifest),
    with the Jaccards of the near duplicates it rejected; None when no run used MinHash."""
    for run in reversed(runs):
        m = _stage_settings(run, "minhash")
        if not m or not m.get("bands") or not m.get("rows"):
            continue
        from datagen.filters.lsh import detection_probability

        b, r, t = int(m["bands"]), int(m["rows"]), float(m.get("threshold", 0.0))
        pts = [(i / (points - 1), float(detection_probability(i / (points - 1), b, r))) for i in range(points)]
        observed = sorted(float(x["evidence"]["jaccard"]) for x in run.rejected
                          if x.get("stage") == "minhash" and isinstance((x.get("evidence") or {}).get("jaccard"), (int, float)))
        return DetectionCurve(b, r, t, pts, observed)
    return None


# -- duplicate clusters ------------------------------------------------------------------------
@dataclass
class Member:
    id: str
    kind: str  # "exact" | "minhash" | "semantic" | "too similar"
    similarity: float | None  # Jaccard (minhash), cosine (semantic, too similar); None for exact


@dataclass
class Cluster:
    """A survivor and the records rejected as its duplicates."""

    survivor: str
    members: list[Member]

    @property
    def size(self) -> int:
        return 1 + len(self.members)

    @property
    def kinds(self) -> list[str]:
        return sorted({m.kind for m in self.members})


def _duplicate_link(stage: str, reason: str, ev: dict[str, Any], flags: dict[str, Any]) -> tuple[str, str, float | None] | None:
    """(survivor id, kind, similarity) of a duplicate rejection, else None."""
    base = stage.split(".")[0]
    if base == "select":
        if reason == "too_similar" and ev.get("most_similar_id"):
            return str(ev["most_similar_id"]), DEDUP_KINDS["select"], ev.get("cosine")
        return None
    if base not in ("exact", "minhash", "semantic"):
        return None
    dup = ev.get("duplicate_of") or (flags.get("semantic_duplicate_of") if base == "semantic" else None)
    if not dup:
        return None
    sim = ev.get("jaccard") if base == "minhash" else ev.get("cosine") if base == "semantic" else None
    return str(dup), DEDUP_KINDS[base], float(sim) if isinstance(sim, (int, float)) else None


def duplicate_clusters(index: Index) -> list[Cluster]:
    """Rejected duplicates grouped by the survivor they point at (``duplicate_of``,
    ``semantic_duplicate_of``, select's ``most_similar_id`` for ``too_similar``), largest first,
    then by survivor id."""
    groups: dict[str, list[Member]] = defaultdict(list)
    for e in index:
        for ev in e.events:
            if ev.status != "rejected":
                continue
            link = _duplicate_link(ev.stage, ev.reason, ev.evidence, e.record.get("flags") or {})
            if link and link[0] != e.id:
                groups[link[0]].append(Member(e.id, link[1], link[2]))
    clusters = [Cluster(s, sorted(ms, key=lambda m: (-(m.similarity or 1.0), m.id))) for s, ms in groups.items()]
    return sorted(clusters, key=lambda c: (-c.size, c.survivor))


_WORD = re.compile(r"\s+|[^\s]+")


def word_diff(a: str, b: str) -> list[tuple[str, str]]:
    """Word-level diff of ``a`` -> ``b`` as ``(op, text)`` pieces, op in ``"="`` (both), ``"-"``
    (only in ``a``), ``"+"`` (only in ``b``). Whitespace is kept, so joining the ``=`` and ``-``
    pieces gives ``a`` back and the ``=`` and ``+`` pieces give ``b``."""
    ta, tb = _WORD.findall(a), _WORD.findall(b)
    out: list[tuple[str, str]] = []
    sm = difflib.SequenceMatcher(None, ta, tb, autojunk=False)
    for op, i1, i2, j1, j2 in sm.get_opcodes():
        if op == "equal":
            out.append(("=", "".join(ta[i1:i2])))
            continue
        if i2 > i1:
            out.append(("-", "".join(ta[i1:i2])))
        if j2 > j1:
            out.append(("+", "".join(tb[j1:j2])))
    return out


# -- breakdowns --------------------------------------------------------------------------------
@dataclass
class Group:
    key: str
    total: int = 0
    curated: int = 0
    reasons: Counter[str] = field(default_factory=Counter)  # "stage: reason" of the rejected

    @property
    def rejected(self) -> int:
        return sum(self.reasons.values())


LANGUAGE_SAMPLE = 200  # characters of the instruction the language guess looks at


def language(e: Entry) -> str:
    """:func:`datagen.text.detect_language` of the instruction's beginning."""
    return detect_language(e.instruction[:LANGUAGE_SAMPLE]) or NONE_LABEL


def dimensions(e: Entry) -> dict[str, str]:
    """The keys a record is broken down by: source, evolution operation and round, language."""
    meta = e.meta
    op = meta.get("operation")
    rnd = meta.get("round")
    return {"source": e.source, "operation": str(op) if op else NONE_LABEL,
            "round": str(rnd) if rnd is not None else NONE_LABEL, "language": language(e)}


def breakdowns(index: Index, dims: dict[str, dict[str, str]] | None = None) -> dict[str, list[Group]]:
    """For each dimension, one :class:`Group` per value (most records first): records, curated,
    and rejections per ``stage: reason``. ``dims`` (id -> dimensions) saves recomputing them."""
    out: dict[str, dict[str, Group]] = defaultdict(dict)
    for e in index:
        d = dims[e.id] if dims is not None else dimensions(e)
        cur = index.curated(e)
        fate = e.fate
        for name, key in d.items():
            g = out[name].setdefault(key, Group(key))
            g.total += 1
            g.curated += cur
            if fate.status == "rejected":
                g.reasons[f"{fate.stage}: {fate.reason}"] += 1
    return {name: sorted(groups.values(), key=lambda g: (-g.total, g.key)) for name, groups in out.items()}


# -- embedding map -----------------------------------------------------------------------------
PCA_FIT_ROWS = 10_000  # rows the principal axes are fitted on (every row is projected)
@dataclass
class EmbeddingMap:
    """2-D PCA projection of the cached embeddings; ``ids[i]`` sits at ``xy[i]``."""

    ids: list[str]
    xy: list[tuple[float, float]]
    explained: tuple[float, float]  # variance ratio of the two components
    total: int  # records with an answer (the ones that could have an embedding)
    model: str


def embedding_settings(runs: Sequence[Run]) -> tuple[str, str | None]:
    """(embedding model, cache dir) named by the runs' manifests (select's ``embeddings`` note,
    filter's semantic stage), defaulting to the embedded model and the default cache."""
    from datagen.filters.embeddings import DEFAULT_EMBED_MODEL

    for run in reversed(runs):
        emb = run.manifest.get("embeddings")
        if isinstance(emb, dict) and emb.get("model"):
            return str(emb["model"]), emb.get("cache_dir")
        sem = _stage_settings(run, "semantic")
        if sem and sem.get("model"):
            return str(sem["model"]), None
    return DEFAULT_EMBED_MODEL, None


def embedding_map(index: Index, cache_dir: Path, model: str) -> tuple[EmbeddingMap | None, str]:
    """PCA of the vectors the embedding cache holds for the records (never loads a model).
    Returns (map, note); the map is None, with the note saying why, when nothing is cached."""
    import numpy as np

    from datagen.filters.embeddings import EmbeddingStore

    entries = [e for e in index if e.response]
    if not entries:
        return None, "no record has an answer to embed"
    store = EmbeddingStore.open_cached(cache_dir, model)
    if store is None:
        return None, f"no {model} embedding cache under {cache_dir}; run datagen filter (semantic) or datagen select to compute embeddings"
    # the text datagen.filters.embeddings.embed_text embeds: last instruction, blank line, answer
    texts = [e.instruction + "\n\n" + e.response for e in entries]
    found, vectors = store.lookup_some(texts)
    if len(found) < 3:
        return None, f"{len(found)} of {len(entries)} records have a cached {model} embedding under {cache_dir}; run datagen filter (semantic) or datagen select to compute them"
    x = vectors.astype(np.float64)
    # Principal axes from at most PCA_FIT_ROWS evenly spaced rows (plenty for a 2-D picture), then
    # every row projected. The SVD of the d x d scatter matrix X'X gives X's right singular vectors
    # and squared singular values: the same axes as svd(X), without an (n x d) decomposition.
    fit = x[:: max(1, len(x) // PCA_FIT_ROWS)]
    mean = fit.mean(axis=0, keepdims=True)
    centred = fit - mean
    _, var, vt = np.linalg.svd(centred.T @ centred)
    xy = (x - mean) @ vt[:2].T
    if xy.shape[1] < 2:
        xy = np.c_[xy, np.zeros(len(xy))]
    total = float(var.sum()) or 1.0
    explained = tuple(float(var[i] / total) if i < len(var) else 0.0 for i in range(2))
    pts = [(a, b) for a, b in np.round(xy, 5).tolist()]
    missing = len(entries) - len(found)
    note = f"{missing} of {len(entries)} records have no cached embedding and are not shown" if missing else ""
    return EmbeddingMap([entries[i].id for i in found], pts, (explained[0], explained[1]), len(entries), store.model_id), note


# -- the record browser's data -----------------------------------------------------------------
def clip(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to ``limit`` characters, and whether it was cut."""
    return (text, False) if len(text) <= limit else (text[:limit], True)


def clip_messages(messages: Iterable[dict[str, Any]], limit: int = MAX_TEXT_CHARS) -> tuple[list[list[str]], int]:
    """``[[role, content]]`` with at most ``limit`` characters of content in all; the number of
    characters left out."""
    out, left, dropped = [], limit, 0
    for m in messages:
        content = str(m.get("content", ""))
        kept, _ = clip(content, max(left, 0))
        dropped += len(content) - len(kept)
        left -= len(kept)
        out.append([str(m.get("role", "?")), kept])
    return out, dropped


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def fate_label(ev: Event) -> str:
    """``"select: kept"``, ``"filter › heuristics"``: the facet a record's fate is filed under."""
    return f"{ev.run}: kept" if ev.status == "kept" else f"{ev.run} \u203a {ev.stage}"


@dataclass
class Browser:
    """The compact arrays the record browser pages through.

    ``facets`` lists the values of each filter; a row is ``[id, curated (0/1), status index, stage
    index, reason index, source index, language, preview]`` where status is ``kept``/``rejected``;
    ``details[i]`` (a separate, lazily parsed array) holds row ``i``'s messages, scores, events,
    lineage, flags and meta."""

    facets: dict[str, list[str]]
    rows: list[list[Any]]
    details: list[dict[str, Any]]
    truncated: int  # records whose text was cut to MAX_TEXT_CHARS


def _compact(value: Any, limit: int = 2000) -> Any:
    """``value`` itself when its JSON is short, else its JSON cut to ``limit`` characters."""
    if isinstance(value, dict) and len(value) < 20 and all(
            v is None or isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) < 100) for v in value.values()):
        return value  # short for sure: skip the encoding
    s = json.dumps(value, ensure_ascii=False, default=str)
    return value if len(s) <= limit else s[:limit] + "\u2026"


def browser(index: Index, dims: dict[str, dict[str, str]] | None = None, max_chars: int = MAX_TEXT_CHARS) -> Browser:
    """Rows and details of every record, for the client-side browser."""
    facet_lists: dict[str, list[str]] = {"status": ["kept", "rejected"], "stage": [], "reason": [], "source": []}
    pos: dict[str, dict[str, int]] = {k: {v: i for i, v in enumerate(vs)} for k, vs in facet_lists.items()}

    def code(facet: str, value: str) -> int:
        table = pos[facet]
        if value not in table:
            table[value] = len(facet_lists[facet])
            facet_lists[facet].append(value)
        return table[value]

    rows, details, truncated = [], [], 0
    for e in index:
        d = dims[e.id] if dims is not None else dimensions(e)
        fate = e.fate
        msgs, dropped = clip_messages(e.record.get("messages") or [], max_chars)
        truncated += dropped > 0
        rows.append([e.id, int(index.curated(e)), code("status", fate.status), code("stage", fate_label(fate)),
                     code("reason", fate.reason or "kept"), code("source", e.source), d["language"], preview(e.instruction or last_turn(e.record, "assistant"))])
        lin = []
        for pid, found in lineage(index, e.id):
            lin.append([pid, preview(index.entries[pid].instruction, 100) if found else ""])
        meta = {k: e.meta[k] for k in ("operation", "round", "root_id", "teacher", "origin", "location") if k in e.meta}
        details.append({
            "m": msgs, "x": dropped, "s": e.scores, "f": _compact(e.record.get("flags") or {}),
            "e": [[ev.run, ev.status, ev.stage, ev.reason, _compact(ev.evidence)] for ev in e.events],
            "l": lin, "p": e.parent_id, "meta": meta,
        })
    return Browser(facet_lists, rows, details, truncated)


# -- everything --------------------------------------------------------------------------------
@dataclass
class ReportData:
    """All the views of one report."""

    runs: list[Run]
    funnel: list[FunnelRow]
    totals: dict[str, int]
    histograms: list[Histogram]
    thresholds: list[Threshold]
    detection: DetectionCurve | None
    clusters: list[Cluster]
    breakdowns: dict[str, list[Group]]
    embedding: EmbeddingMap | None
    embedding_note: str
    browser: Browser
    index: Index
    training: TrainingView | None = None
    evaluation: EvalView | None = None
    ablation: AblationView | None = None
    warnings: list[str] = field(default_factory=list)


def build(paths: Sequence[str | Path], cache_dir: Path | None = None, train: str | Path | None = None,
          eval_path: str | Path | None = None, embeddings: bool = True, ablation: str | Path | dict[str, Any] | None = None) -> ReportData:
    """Read the run directories (pipeline order) and compute every view. ``ablation`` is an
    ablation directory, its ``ablation.json``, or the document itself (as ``datagen ablate`` has it)."""
    from datagen.report.ablation import parse_ablation, read_ablation
    from datagen.report.training import read_eval, read_training

    runs = load_runs(paths)
    abl = None if ablation is None else parse_ablation(ablation) if isinstance(ablation, dict) else read_ablation(ablation)
    index = build_index(runs)
    dims = {e.id: dimensions(e) for e in index}
    limits = thresholds(runs)
    hists = [h for h in (histogram(index, s, limits) for s in QUALITY_SCORES) if h is not None]
    emb, note = None, "embedding map not requested"
    if embeddings:
        model, cached_at = embedding_settings(runs)
        if cache_dir is None:
            from datagen.commands_select import default_cache_dir

            cache_dir = Path(cached_at) if cached_at else default_cache_dir()
        emb, note = embedding_map(index, cache_dir, model)
    warnings = [f"{r.label}: the run is not complete (status {r.manifest.get('status', 'unknown')!r}); its files may be partial"
                for r in runs if not r.complete]
    return ReportData(
        runs=runs, funnel=funnel(runs), totals=index.totals(), histograms=hists, thresholds=limits,
        detection=detection_curve(runs), clusters=duplicate_clusters(index), breakdowns=breakdowns(index, dims),
        embedding=emb, embedding_note=note, browser=browser(index, dims), index=index,
        training=read_training(train) if train else None, evaluation=read_eval(eval_path) if eval_path else None,
        ablation=abl, warnings=warnings,
    )
