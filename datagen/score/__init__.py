"""Scoring with models: a judge's rating read from its probabilities (:mod:`.rating`), best-of-n
by a judge (:mod:`.judge`), pairwise preference in both orders (:mod:`.pairwise`), Evol-Instruct's
equality verdict (:mod:`.equality`), IFD (:mod:`.ifd`), complexity (:mod:`.complexity`) and
embeddings (:mod:`.embeddings`). Curation, generation, the ablation and ``train eval`` all score
through here."""
