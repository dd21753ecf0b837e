"""A pool with semantic near-duplicates of graded closeness, for ``bench/semantic.py``.

Real sentences (the bundled seed tasks and standard-library docstrings, as in ``bench/dedup.py``)
recombined into answers, each asked about by an instruction that quotes its opening words; about 12% of the rows (``variants``) are variants of an earlier row,
of four kinds from very close to loosely related, and about 2% answer another row's question:

* ``reworded``: the same answer under another instruction template;
* ``shuffled``: the answer's sentences in another order;
* ``trimmed``: one answer sentence dropped, a closing sentence added;
* ``mixed``: half of the answer's sentences replaced by others (mostly *not* a duplicate);
* ``off_topic``: a new instruction whose answer is another row's.

No row is an exact copy of another (the exact stage would take those first).
"""

from __future__ import annotations

import random

from dedup import passages

TEMPLATES = ("Explain this in your own words: {}", "Describe, in plain terms, what this means: {}",
             "Summarise the idea behind: {}", "What is meant by the following? {}")
CLOSINGS = ("Hope this helps.", "Let me know if you need more detail.", "That is the short version.")
KINDS = ("reworded", "shuffled", "trimmed", "mixed")


def make_pool(n: int, seed: int = 0, variants: float = 0.12) -> tuple[list[dict], list[str]]:
    """(rows ``{instruction, input, output}``, the kind of each row: ``original`` or a variant kind);
    ``variants``: the share of variant rows."""
    rng = random.Random(seed)
    sentences = [s.strip().rstrip(".") + "." for p in passages() for s in p.split(". ") if len(s.split()) >= 5]
    rows: list[dict] = []
    kinds: list[str] = []
    seen: set[tuple[str, str]] = set()
    originals: list[tuple[str, list[str]]] = []  # (topic, answer sentences)
    while len(rows) < n:
        r = rng.random()
        if originals and r < variants:
            kind = KINDS[int((r / variants) * len(KINDS))]
            topic, body = rng.choice(originals)
            instruction = rng.choice(TEMPLATES).format(topic)
            body = list(body)
            if kind == "shuffled":
                rng.shuffle(body)
            elif kind == "trimmed" and len(body) > 2:
                body.pop(rng.randrange(len(body)))
                body.append(rng.choice(CLOSINGS))
            elif kind == "mixed":
                for i in rng.sample(range(len(body)), max(1, len(body) // 2)):
                    body[i] = rng.choice(sentences)
            elif kind == "reworded":
                instruction = rng.choice([t for t in TEMPLATES if t.format(topic) != instruction]).format(topic)
        elif originals and r < variants + 0.02:
            kind = "off_topic"
            instruction = rng.choice(TEMPLATES).format(" ".join(rng.choice(sentences).split()[:6]))
            body = rng.choice(originals)[1]
        else:
            kind = "original"
            body = [rng.choice(sentences) for _ in range(rng.randint(2, 8))]
            topic = " ".join(body[0].split()[:6])  # the question is about the answer's opening
            instruction = TEMPLATES[0].format(topic)
            originals.append((topic, body))
        row = {"instruction": instruction, "input": "", "output": " ".join(body)}
        key = (row["instruction"], row["output"])
        if key in seen:
            continue
        seen.add(key)
        rows.append(row)
        kinds.append(kind)
    return rows, kinds
