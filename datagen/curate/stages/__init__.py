"""The per-record curation stages: heuristics, instruction checks, quality scores."""
