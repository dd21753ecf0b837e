"""``datagen ablate``: does the curation help? Train on curated vs. random data and compare.

From one pool, :func:`build_arms` makes the arms:

* ``curated``: ``datagen filter`` (``--stages``, ``--filter-config``) then ``datagen select
  --budget N``, run in-process as run directories under ``DIR/arms/curated/{filter,select}``;
  deterministic, so one set serves every seed;
* ``random``: as many records as the curated arm holds, drawn uniformly from the pool with
  ``random.Random(seed)``: a new draw per seed (``DIR/arms/random-s<seed>/records.jsonl``);
* ``filtered`` (``--filtered``): as many records, drawn uniformly from the filter's survivors, a
  new draw per seed: it splits the curation's effect into the filter's (``filtered`` against
  ``random``) and the selection's (``curated`` against ``filtered``);
* ``removed`` (``--removed``): as many records, drawn uniformly from what the filter removed
  (its ``rejected.jsonl``), a new draw per seed: the positive control. If the trained models'
  metrics cannot tell this arm from ``random``, they cannot see the data's defects at all, and a
  tie between ``curated`` and ``random`` says nothing;
* ``full`` (``--full``): the whole pool.

Every (arm, seed) trains with the same recipe, the same ``--set`` overrides and the SAME number of
optimizer steps (``max_steps = --steps``; no evaluation during training), with training seed
``seed``. The arms therefore see the same number of tokens per step and of steps; a smaller arm
is repeated over more epochs (``epochs`` in ablation.json says how many).

Each trained model is then scored on the gold set (``DIR/runs/<arm>-s<seed>/eval.json``):

* ``loss``: held-out NLL of the gold answers (:func:`train.evaluate.heldout_loss`), lower is better;
* greedy answers to the first ``--answer-prompts`` gold prompts (default 40) and what a user sees
  in them (:mod:`train.behaviour`): ``defect_rate``, the share of answers that never end their
  turn, are empty, refuse, stop mid-sentence, loop or answer in another language, and a rate per
  kind; the untrained base model is answered too, as the reference. Answers may run to
  ``--max-new-tokens``, by default twice the longest gold answer in the base model's tokens (at
  least 64, :func:`answer_limit`): a model that answers at the references' length always has
  room to end its turn, so ``no_stop`` means it did not, not that the limit was short;
* with ``--judge-prompts K`` (default 0: no judge), a judge LLM compares each of the first K
  answers of an arm with the random arm's of the same seed (:func:`datagen.score.pairwise.judge_pairs`, both
  answer orders, ``prompts/train/pairwise.j2``). :func:`strict_scores` counts a prompt as a win
  (1) only when the arm wins in BOTH orders, a loss (0) only when it loses in both, and anything
  else (a split, a tie, an unreadable verdict) as a tie (0.5). ``win_rate`` is the mean: 0.5 means
  no difference, the random arm against itself is 0.5 by definition. ``debiased_win_rate`` reads
  the judge's probabilities instead of its verdicts, with position bias cancelled between the two
  orders (:func:`datagen.score.pairwise.debiased_preference`): a small judge that always writes "A" gives
  only ties by the strict rule, but its probabilities can still tell the answers apart.

The verdict compares each arm with the random arm on gold loss and on defect rate (lower is
better for both) against the seed noise, with a paired comparison item by item for each
(:func:`paired_loss` over gold items, :func:`paired_defects` over answers to the same prompt by
models of the same seed), then reads the two together.

``DIR/ablation.json`` holds per arm the mean, std (sample, ddof=1), min and max over seeds of
each metric, the per-seed values and the item-by-item comparison with the random arm
(:func:`paired_loss`); the untrained base model's gold loss (``base``, the reference); what each
arm, the gold set and the pool are made of (:func:`composition`); the curation funnel, and, when
the pool's records carry ``meta["injected"]`` (a known defect, see ``bench/noisy_pool.py``), how
many of each defect the filter removed, by which stage, and how many ended in each arm.
``DIR/report.html`` is the quality report of the curated arm's filter and select runs with the
ablation section (the one renderer, :mod:`datagen.report`); the command prints the same summary
as ``datagen report --ablation DIR --text``.

Resuming: each step leaves a marker holding the fingerprint of what it depends on (arm data
digest, training config, gold set, evaluation settings): ``train.json`` after training,
``eval.json`` after evaluation, ``DIR/judge/<arm>-s<seed>.json`` after judging. A rerun with the
same settings skips every finished step; a changed setting is refused unless ``--force``.

The command line is :mod:`datagen.commands.ablate`; nothing here parses arguments.
"""

from datagen.ablate.experiment import ablate
from datagen.ablate.settings import AblationSettings

__all__ = ["AblationSettings", "ablate"]
