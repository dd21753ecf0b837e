"""train: fine-tune a model on curated SFT data."""
