"""Scoring with models: a judge's rating read from its probabilities (:mod:`.rating`) and
best-of-n by a judge (:mod:`.judge`). Curation (the quality stage) and generation (distillation)
both score through here."""
