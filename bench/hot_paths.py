"""The filter's per-text hot paths against an earlier revision of the same functions, and
MinHash signatures against rensa, in one process on the same texts.

* ``detect_language`` (:mod:`datagen.core.text`) and exact dedup's ``normalize``: this tree's
  against the code at ``--baseline`` (loaded from ``git show``), same texts, same answers checked;
* MinHash signatures of the same shingle sets: the numpy datasketch engine (the default),
  rensa's Rust engine (``--minhash-engine rensa``) and datasketch's own ``MinHash.update_batch``
  per document (the peer it is equal to).

Texts: the instructions and answers of the first ``--n`` records of ``runs/bench/scale-100000.jsonl``
(``bench/filter_scale.py`` writes it). Each timing is the median of ``--repeat`` runs.

    .venv/bin/python bench/hot_paths.py --baseline 7632543 --n 20000
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from timing import timed  # noqa: E402


def old_module(rev: str, path: str, name: str):
    """The module at ``path`` as of ``rev``, imported under ``name``."""
    src = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    file = Path(tempfile.mkdtemp()) / f"{name}.py"
    file.write_text(src, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, file)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", required=True, help="git revision of the earlier code")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    texts: list[str] = []
    with open(ROOT / "runs" / "bench" / "scale-100000.jsonl", encoding="utf-8") as f:
        for line in itertools.islice(f, args.n):
            row = json.loads(line)
            texts += [row["instruction"], row["output"]]
    print(f"{len(texts)} texts ({args.n} records), median of {args.repeat}")

    from datagen.core import text as new_text
    from datagen.curate.dedup import exact as new_exact

    old_text = old_module(args.baseline, "datagen/core/text.py", "old_text")
    old_exact = old_module(args.baseline, "datagen/curate/dedup/exact.py", "old_exact")
    for label, old, new in (("detect_language", old_text.detect_language, new_text.detect_language),
                            ("normalize", old_exact.normalize, new_exact.normalize)):
        old("warm é"), new("warm é")
        t_old, a = timed(lambda: [old(t) for t in texts], args.repeat)
        t_new, b = timed(lambda: [new(t) for t in texts], args.repeat)
        assert a == b, f"{label}: answers differ"
        print(f"{label}: {args.baseline} {t_old:.3f} s, now {t_new:.3f} s: {t_old / t_new:.1f}x (same answers)")

    from datasketch import MinHash

    from datagen.curate.dedup.shingles import Shingler
    from datagen.curate.dedup.signatures import low32, signatures_datasketch, signatures_rensa

    docs = [a + "\n\n" + b for a, b in zip(texts[::2], texts[1::2])]
    sets = Shingler(5).many(docs)
    num_perm, seed = 128, 1
    t_np, sig = timed(lambda: signatures_datasketch(sets, num_perm, seed), args.repeat)
    t_rs, _ = timed(lambda: signatures_rensa(sets, num_perm, seed), args.repeat)

    def peer():
        out = []
        for s in sets:
            m = MinHash(num_perm=num_perm, seed=seed, scheme="affine32", hashfunc=lambda x: x)
            m.update_batch(low32(s).tolist())
            out.append(m.hashvalues)
        return np.array(out, dtype=np.uint32)

    t_ds, ref = timed(peer, max(1, args.repeat // 2))
    assert np.array_equal(sig, ref), "numpy engine differs from datasketch"
    print(f"MinHash signatures of {len(docs)} documents ({num_perm} permutations): numpy engine {t_np:.3f} s, "
          f"rensa {t_rs:.3f} s ({t_np / t_rs:.1f}x faster than numpy), datasketch update_batch {t_ds:.3f} s "
          f"({t_ds / t_np:.1f}x slower than numpy; equal signatures)")


if __name__ == "__main__":
    main()
