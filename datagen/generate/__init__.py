"""The generators: Self-Instruct, Evol-Instruct and distillation, each a step of
:mod:`datagen.core.runner`."""
