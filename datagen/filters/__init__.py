"""Curation filters: each scores and annotates records; only thresholds and select drop them."""
