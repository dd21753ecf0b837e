"""Curation as a library: stages that annotate then decide (:mod:`.base`, :mod:`.pipeline`,
``run_filter``), built from one validated config (:mod:`.config`, :mod:`.registry`); the stages
(:mod:`.stages`), deduplication (:mod:`.dedup`) and selection (:mod:`.select`)."""
