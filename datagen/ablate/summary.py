"""What the numbers say: the spread over seeds, the item-by-item comparisons with the random arm,
the curation's defect accounting and each set's composition."""

from __future__ import annotations

import json
import random
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datagen.core.summary import spread
from datagen.report.ablation import BASELINE
from datagen.ablate.settings import AblationSettings

if TYPE_CHECKING:
    from datagen.core.record import Record


# -- summary --------------------------------------------------------------------------------------------
def injected_counts(records: Sequence[Record]) -> dict[str, int]:
    """Records per ``meta["injected"]`` tag ("clean" when untagged)."""
    counts: dict[str, int] = {}
    for r in records:
        tag = str(r.meta.get("injected") or "clean")
        counts[tag] = counts.get(tag, 0) + 1
    return dict(sorted(counts.items()))


def composition(groups: dict[str, Sequence[Sequence[Record]]]) -> dict[str, dict[str, Any]]:
    """What each record set is made of, as spreads over its draws (one draw for the gold set, the
    pool and the curated arm; one per seed for a random arm): the share of each instruction
    language (:func:`datagen.core.text.detect_language`) and the mean answer length in English-word
    equivalents. A gold loss rewards matching the gold set's mix, so read it next to this."""
    from datagen.core.text import detect_language, word_equivalents

    langs = sorted({detect_language(r.instruction) or "none" for draws in groups.values() for d in draws for r in d})
    out: dict[str, dict[str, Any]] = {}
    for name, draws in groups.items():
        row: dict[str, Any] = {}
        for lang in langs:
            row[f"share_{lang}"] = spread([sum((detect_language(r.instruction) or "none") == lang for r in d) / len(d) for d in draws if d])
        row["answer_words"] = spread([statistics.fmean(word_equivalents(r.response) for r in d) for d in draws if d])
        out[name] = row
    return out


def curation_summary(s: AblationSettings, pool_records: Sequence[Record], draws: dict[str, list[list[Record]]]) -> dict[str, Any]:
    """The filter's funnel and, for a pool with tagged defects, what each step let through:
    per tag, the share the filter removed (or, for clean records, kept) and the count in each arm;
    which stage removed what (``removed_by``); and how the near-duplicate groups (a clean record
    and its tagged near-copies) fared, since dedup keeps one record of a group, the copy or the
    original, and either way the group is reduced to one. ``draws`` holds each arm's records, one
    list per distinct file (one per seed for a random draw, one for the curated arm)."""
    from datagen.core.io import read_records

    base = s.out / "arms" / "curated"
    stats = json.loads((base / "filter" / "stats.json").read_text(encoding="utf-8"))
    doc: dict[str, Any] = {"filter_funnel": {k: {"in": v["in"], "out": v["out"], "rejected": v["rejected"]} for k, v in stats["stages"].items()}}
    pool = injected_counts(pool_records)
    if set(pool) == {"clean"}:
        return doc
    kept_records = list(read_records(base / "filter" / "records.jsonl"))
    after_filter = injected_counts(kept_records)
    per_arm = {name: [injected_counts(d) for d in group] for name, group in draws.items()}
    defects = {}
    for tag, n in pool.items():
        kept = after_filter.get(tag, 0)
        row: dict[str, Any] = {"pool": n, "after_filter": kept}
        if tag == "clean":
            row["kept_by_filter"] = kept / n
        else:
            row["removed_by_filter"] = (n - kept) / n
        row["in_arm"] = {name: spread([c.get(tag, 0) for c in counts]) for name, counts in per_arm.items()}
        defects[tag] = row
    total_bad = sum(n for t, n in pool.items() if t != "clean")
    kept_bad = sum(n for t, n in after_filter.items() if t != "clean")
    doc["defects"] = defects
    doc["removed_by_filter_all_defects"] = (total_bad - kept_bad) / total_bad
    doc["filter_precision"] = _precision(pool, after_filter)
    doc["removed_by"] = removed_by(base / "filter" / "rejected.jsonl")
    groups = near_duplicate_groups(pool_records, {r.id for r in kept_records})
    if groups["groups"]:
        doc["near_duplicate_pairs"] = groups
        clean_removed = pool["clean"] - after_filter.get("clean", 0)
        doc["notes"] = [
            (f"{groups['groups']} near-duplicate groups (a clean record and its tagged near-copies): "
             f"{groups['reduced_to_one']} reduced to one record, {groups['all_removed']} removed entirely, "
             f"{groups['more_than_one_kept']} left with more than one."),
            (f"Of the {clean_removed} clean records the filter removed, {groups['clean_removed_copy_kept']} were the original of "
             "a group whose near-copy was kept: the content stayed in the set."),
        ]
    return doc


def removed_by(rejected: Path) -> dict[str, dict[str, int]]:
    """Per pool tag, how many records each ``stage/reason`` removed (from ``rejected.jsonl``)."""
    out: dict[str, dict[str, int]] = {}
    if not rejected.is_file():
        return out
    with rejected.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            tag = str((row.get("record", {}).get("meta") or {}).get("injected") or "clean")
            key = f"{row.get('stage')}/{row.get('reason')}"
            out.setdefault(tag, {})[key] = out.get(tag, {}).get(key, 0) + 1
    return {t: dict(sorted(v.items())) for t, v in sorted(out.items())}


def near_duplicate_groups(pool: Sequence[Record], kept_ids: set[str]) -> dict[str, int]:
    """How the filter treated each group of a clean record and its ``near_duplicate`` copies
    (``meta["injected_from"]`` names the original)."""
    groups: dict[str, list[str]] = {}
    for r in pool:
        if r.meta.get("injected") == "near_duplicate" and r.meta.get("injected_from"):
            groups.setdefault(str(r.meta["injected_from"]), []).append(r.id)
    out = dict.fromkeys(("groups", "reduced_to_one", "all_removed", "more_than_one_kept", "clean_removed_copy_kept"), 0)
    for original, copies in groups.items():
        survivors = sum(i in kept_ids for i in [original, *copies])
        out["groups"] += 1
        out["reduced_to_one" if survivors == 1 else "all_removed" if survivors == 0 else "more_than_one_kept"] += 1
        if original not in kept_ids and any(c in kept_ids for c in copies):
            out["clean_removed_copy_kept"] += 1
    return out


def _precision(pool: dict[str, int], kept: dict[str, int]) -> float | None:
    """Of the records the filter removed, the share that were injected defects."""
    removed = sum(pool.values()) - sum(kept.values())
    removed_bad = sum(n - kept.get(t, 0) for t, n in pool.items() if t != "clean")
    return removed_bad / removed if removed else None


def paired_loss(evals: dict[tuple[str, int], dict[str, Any]], name: str, seeds: Sequence[int]) -> dict[str, Any] | None:
    """The arm against the random arm item by item: per gold item, the arm's loss minus the random
    arm's of the same seed, averaged over seeds. How many items are lower and higher, a two-sided
    sign test, and the mean difference with a 95% bootstrap interval over items (2,000 resamples,
    seeded). None when an evaluation holds no per-item losses."""
    rows = []
    for k in seeds:
        mine, theirs = evals[name, k].get("per_sample_loss"), evals[BASELINE, k].get("per_sample_loss")
        if not mine or not theirs or len(mine) != len(theirs):
            return None
        rows.append([None if a is None or b is None else a - b for a, b in zip(mine, theirs)])
    per_item = [statistics.fmean(col) for col in zip(*rows) if None not in col]
    if not per_item:
        return None
    rng = random.Random(0)
    boots = sorted(statistics.fmean(rng.choices(per_item, k=len(per_item))) for _ in range(2000))
    lower, higher = sum(d < 0 for d in per_item), sum(d > 0 for d in per_item)
    return {
        "items": len(per_item), "seeds": len(seeds), "lower": lower, "higher": higher,
        "sign_test_p": sign_test(lower, higher), "mean_diff": statistics.fmean(per_item),
        "ci95": [boots[int(0.025 * len(boots))], boots[int(0.975 * len(boots)) - 1]],
    }


def paired_defects(evals: dict[tuple[str, int], dict[str, Any]], name: str, seeds: Sequence[int]) -> dict[str, Any] | None:
    """The arm against the random arm answer by answer: for each gold prompt and seed, whether the
    arm's answer has a defect and the random arm's (same prompt, same seed) has none (``more``), or
    the reverse (``fewer``); answers that agree carry no information. A two-sided sign test on the
    discordant pairs (McNemar's exact test), per kind as well. None without answers."""
    from train.behaviour import KINDS

    pairs = []
    for k in seeds:
        mine, theirs = evals[name, k].get("defects"), evals[BASELINE, k].get("defects")
        if not mine or not theirs or len(mine) != len(theirs):
            return None
        pairs += zip(mine, theirs)

    def count(has: Any) -> dict[str, Any]:
        fewer = sum(1 for a, b in pairs if not has(a) and has(b))
        more = sum(1 for a, b in pairs if has(a) and not has(b))
        return {"fewer": fewer, "more": more, "sign_test_p": sign_test(fewer, more)}

    return {"answers": len(pairs), "seeds": len(seeds), **count(bool),
            "kinds": {kind: count(lambda d, kind=kind: kind in d) for kind in KINDS}}


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven if both were equally likely."""
    import math

    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def behaviour_row(behaviour: dict[str, Any] | None) -> dict[str, Any]:
    """``defect_rate`` and ``defect_<kind>`` (a rate each) of one evaluation's behaviour summary."""
    from train.behaviour import KINDS

    if not behaviour:
        return {}
    return {"defect_rate": behaviour["defect_rate"], **{f"defect_{k}": behaviour["rates"][k] for k in KINDS}}


def summarize(per_run: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per arm: the spread over seeds of loss, perplexity, defect rates, win rate, train loss and epochs."""
    from train.behaviour import KINDS

    metrics = ("loss", "perplexity", "defect_rate", *(f"defect_{k}" for k in KINDS), "win_rate", "debiased_win_rate", "train_loss", "epochs")
    out = {}
    for name, rows in per_run.items():
        out[name] = {
            "records": rows[0]["records"], "steps": rows[0]["steps"],
            **{m: spread([r.get(m) for r in rows]) for m in metrics},
            "per_seed": rows,
        }
    return out
