"""The dataset card: a ``README.md`` with the YAML front matter the Hugging Face Hub reads
(licence, languages, task, size, the data files), then what a reader needs to trust the data:
how many records, in which languages, made by which models, and the funnel of every run that made
them (in, out and the top reasons per stage) with the command lines.

Every finished run directory gets one (:meth:`datagen.core.rundir.RunDir.finalize`), and
``datagen convert --card`` writes one beside an export. A run reads the runs before it from its
input: an input ``DIR/records.jsonl`` beside a finished ``DIR/manifest.json`` is the previous step.
Nothing is invented: a licence that no one stated is written as unknown, with a note; the languages
are identified (:mod:`datagen.core.langid`) and the card says how.
"""

from __future__ import annotations

import json
import re
import shlex
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

from datagen.core.record import Record, RecordView

CARD = "README.md"
MARKER = "<!-- written by datagen: rewritten with the run; edit a copy -->"
LANGUAGE_SAMPLE = 10_000  # records whose language is counted
SCRIPT_CHARS = 2_000  # of each text: enough to tell its language
MIN_CONFIDENCE = 0.5  # the identification a language is counted from (as heuristics.language_min_confidence)
MIN_SHARE = 0.02  # of the identified records, for a language to be listed in the card's metadata
SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"),
         (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))
MAX_CHAIN = 32
GENERATORS = ("self-instruct", "evolve", "distill")  # their records were written by a model


def size_category(n: int) -> str:
    """The Hub's ``size_categories`` value for ``n`` records."""
    return next((label for bound, label in SIZES if n < bound), "n>1T" if n >= 10**12 else "1B<n<10B")


def ours(path: Path) -> bool:
    """Whether ``path`` is a card this tool wrote (it may be replaced; another README.md is never)."""
    try:
        with open(path, encoding="utf-8") as f:
            return MARKER in f.read(4096)
    except (OSError, UnicodeDecodeError):
        return False


# -- what the card says ----------------------------------------------------------------------------
def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def upstream(settings: dict[str, Any], seen: set[Path] | None = None) -> list[dict[str, Any]]:
    """The finished runs that made a run's input, oldest first: each ``{"dir", "manifest", "stats"}``."""
    seen = set() if seen is None else seen
    for key in ("input", "seeds", "pool"):
        src = settings.get(key)
        if not isinstance(src, str) or Path(src).name != "records.jsonl":
            continue
        folder = Path(src).parent.resolve()
        manifest = _read(folder / "manifest.json")
        if folder in seen or len(seen) >= MAX_CHAIN or not manifest or manifest.get("status") != "complete":
            return []
        seen.add(folder)
        before = upstream(manifest.get("settings") or {}, seen)
        return before + [{"dir": str(folder), "manifest": manifest, "stats": _read(folder / "stats.json") or {}}]
    return []


def _model_name(desc: Any) -> str:
    if isinstance(desc, dict):
        return str(desc.get("model_id") or desc.get("model") or desc)
    return str(desc)


def source_models(runs: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(command, role, model) of every model the runs name: the generator, the teacher, the judge..."""
    out = []
    for run in runs:
        for role, desc in ((run["manifest"].get("models")) or {}).items():
            item = (str(run["manifest"].get("command", "")), str(role), _model_name(desc))
            if item not in out:
                out.append(item)
    return out


def language_counts(records: Iterable[Record | RecordView]) -> Counter[str]:
    """The language of the first :data:`LANGUAGE_SAMPLE` records' answers (prompts when none):
    ``flags.language`` where the filter's heuristics wrote it, else identified here
    (:func:`datagen.core.langid.identify`); ``"none"`` for a text without letters or one the
    model is unsure of."""
    from datagen.core.langid import identify

    counts: Counter[str] = Counter()
    for i, rec in enumerate(records):
        if i >= LANGUAGE_SAMPLE:
            break
        code = (rec.flags or {}).get("language")
        if not isinstance(code, str) or not code:
            found = identify((rec.response or rec.instruction)[:SCRIPT_CHARS])
            code = found.code if found.confidence >= MIN_CONFIDENCE else ""
        counts[code or "none"] += 1
    return counts


def languages_of(counts: Counter[str]) -> list[str]:
    """The languages of at least :data:`MIN_SHARE` of the identified records, most frequent
    first (a stray answer in another language does not make the dataset multilingual)."""
    named = {code: c for code, c in counts.items() if code != "none"}
    total = sum(named.values())
    return [code for code, c in sorted(named.items(), key=lambda kv: (-kv[1], kv[0])) if total and c / total >= MIN_SHARE]


_URL_SECRETS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]*@|(?P<query>\?\S*)", re.I)


def command_line(manifest: dict[str, Any]) -> str:
    """The command as typed, for a card that may be published: URLs without credentials
    (``user:pass@``) or query strings."""
    argv = list(manifest.get("argv") or [])
    if not argv:
        return str(manifest.get("command", ""))
    if argv[0] in ("cli.py", "__main__.py", "datagen"):  # `python -m datagen.cli` names its file
        argv[0] = "datagen"
    argv = [_URL_SECRETS.sub(lambda m: m["scheme"] or "", a) if "://" in a else a for a in argv]
    return shlex.join(argv)


# -- the card --------------------------------------------------------------------------------------
def front_matter(*, n: int, data_file: str, name: str, license: str | None, languages: Sequence[str], synthetic: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"license": license or "unknown"}
    if languages:
        meta["language"] = list(languages)
    meta.update({
        "task_categories": ["text-generation"],
        "size_categories": [size_category(n)],
        "tags": ["sft", "instruction-tuning", "datagen"] + (["synthetic"] if synthetic else []),
        "pretty_name": name,
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": data_file}]}],
    })
    return meta


def _funnel(run: dict[str, Any]) -> list[str]:
    lines = ["| stage | in | out | removed | top reasons |", "|---|---:|---:|---:|---|"]
    for stage, s in (run["stats"].get("stages") or {}).items():
        reasons = sorted(((int(c), r) for r, c in (s.get("rejected") or {}).items() if c), reverse=True)
        top = ", ".join(f"{r} ({c})" for c, r in reasons[:3]) + (", ..." if len(reasons) > 3 else "")
        removed = sum(c for c, _ in reasons)
        lines.append(f"| {stage} | {s.get('in', 0)} | {s.get('out', 0)} | {removed} | {top or '-'} |")
    return lines


def render(*, n: int, data_file: str, name: str, runs: Sequence[dict[str, Any]], counts: Counter[str],
           license: str | None = None, languages: Sequence[str] | None = None) -> str:
    """The card's text. ``runs``: every step that made the data, oldest first, each ``{"manifest",
    "stats"}`` (``"dir"`` optional)."""
    import yaml

    models = source_models(runs)
    langs = list(languages) if languages else languages_of(counts)
    meta = front_matter(n=n, data_file=data_file, name=name, license=license, languages=langs,
                        synthetic=any(run["manifest"].get("command") in GENERATORS for run in runs))
    total = sum(counts.values()) or 1
    shares = ", ".join(f"{s} {100 * c / total:.0f}%" for s, c in counts.most_common())
    out = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(), "---", MARKER, "", f"# {name}", "",
           f"{n} records in `{data_file}`, for supervised fine-tuning; made with datagen.", "", "## Summary", ""]
    out.append(f"- **Records:** {n} ({size_category(n)})")
    sample = min(n, LANGUAGE_SAMPLE)
    if languages:
        out.append(f"- **Languages:** {', '.join(languages)} (as stated; identified in {sample} records: {shares or 'none'})")
    elif langs:
        out.append(f"- **Languages:** {', '.join(langs)} (identified in {sample} records by fastText lid.176 and the writing "
                   f"system: {shares}; listed at {MIN_SHARE:.0%} or more)")
    else:
        out.append(f"- **Languages:** not identified (identified in {sample} records: {shares or 'none'}); "
                   "state them in the `language` field")
    if license:
        out.append(f"- **Licence:** {license} (as stated)")
    else:
        out.append("- **Licence:** not stated (`license: unknown`). The records' terms follow from their sources: the seed or "
                   "input files and the terms of use of the models that wrote them; state the licence before publishing.")
    if models:
        out += ["", "## Source models", "", "| step | role | model |", "|---|---|---|"]
        out += [f"| {cmd} | {role} | `{model}` |" for cmd, role, model in models]
    else:
        out += ["", "## Source models", "", "No model is named in the runs' manifests (the records were read, not generated)."]
    out += ["", "## How it was made", "", "Each step, oldest first: the command, then records in and out per stage and the "
            "most frequent reasons a stage removed records (every removed record is in that run's `rejected.jsonl`, "
            "with its evidence)."]
    for i, run in enumerate(runs, 1):
        m = run["manifest"]
        where = f" (`{Path(run['dir']).name}`)" if run.get("dir") else ""
        out += ["", f"### {i}. {m.get('command', 'step')}{where}", "", "```", command_line(m), "```", ""]
        out += _funnel(run)
        if m.get("finished"):
            out += ["", f"Finished {m['finished']}; versions: "
                    + ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items() if k in ("datagen-train", "python", "transformers"))]
    return "\n".join(out) + "\n"


def write_card(path: Path, text: str) -> bool:
    """Write the card at ``path`` unless a README.md someone else wrote is there; atomic. Returns
    whether it was written."""
    from datagen.core.writing import atomic_open

    if path.exists() and not ours(path):
        return False
    with atomic_open(path) as f:
        f.write(text)
    return True


def export_card(path: Path, out: Path, records: Sequence[Record], stats: dict[str, Any], *, input: str, argv: list[str],
                license: str | None = None, languages: Sequence[str] | None = None) -> bool:
    """The card of an export (``datagen convert --card``): the file ``out``, the runs that made its
    ``input``, and the conversion (``stats``: its read stage; ``argv``: its command line)."""
    import os

    step = {"manifest": {"command": "convert", "argv": argv}, "stats": stats}
    text = render(n=len(records), data_file=os.path.relpath(out, path.parent), name=out.name.split(".")[0],
                  runs=upstream({"input": input}) + [step], counts=language_counts(records), license=license, languages=languages)
    return write_card(path, text)


def run_card(folder: Path, manifest: dict[str, Any], stats: dict[str, Any]) -> bool:
    """The card of a finished run directory: its ``records.jsonl``, and every run that made it."""
    def sample() -> Iterable[RecordView]:
        with open(folder / "records.jsonl", encoding="utf-8") as f:
            yield from (RecordView(line) for line in f if line.strip())

    runs = upstream(manifest.get("settings") or {}) + [{"manifest": manifest, "stats": stats}]
    text = render(n=int(stats.get("records", 0)), data_file="records.jsonl", name=folder.resolve().name, runs=runs,
                  counts=language_counts(sample()))
    return write_card(folder / CARD, text)
