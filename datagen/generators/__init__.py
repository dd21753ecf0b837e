"""Generators: Self-Instruct, Evol-Instruct and strong-model distillation."""
