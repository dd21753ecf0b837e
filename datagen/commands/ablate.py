"""``datagen ablate``: does the curation help? Curated vs random data, trained and measured
(:mod:`datagen.ablate`)."""

from __future__ import annotations

import argparse
import sys

from datagen.ablate.settings import AblationSettings, add_arguments

HELP = "prove the data: train on curated vs. random records of one pool (same steps, several seeds), compare gold loss and judged win rate"

__all__ = ["add_arguments", "cli"]


def cli(args: argparse.Namespace) -> int:
    from datagen.ablate import ablate
    from datagen.core.settings import build, given

    s = build(AblationSettings, file=args.config, flags=given(args, AblationSettings))
    from datagen.report.ablation_file import parse_ablation
    from datagen.report.text import ablation_summary

    doc = ablate(s)
    print(ablation_summary(parse_ablation(doc, str(s.out / "ablation.json"))))
    print(f"ablation written to {s.out / 'ablation.json'}; the report (the curated arm's records, and the ablation): {s.out / 'report.html'}",
          file=sys.stderr)
    return 0
