"""Deduplication: exact, MinHash (shingles, signatures, LSH, verified Jaccard) and semantic, with
one survivor rule (:mod:`.groups`)."""
