"""datagen: build and curate supervised fine-tuning data."""
__version__ = "0.1.0"
