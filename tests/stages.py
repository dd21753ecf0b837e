"""Test-only filter stages for the resumption tests: one that is interrupted while annotating, one
that keeps every record (and scores it, so that its part differs from its input)."""


class Interrupt:
    """A stage that raises KeyboardInterrupt while annotating."""

    name = "quality"
    score_names = ()

    def annotate(self, records, ctx):
        raise KeyboardInterrupt

    def verdict(self, record):
        return None

    def describe(self):
        return {"name": self.name}


class KeepAll(Interrupt):
    def annotate(self, records, ctx):
        for r in records:
            r.scores["quality"] = float(len(r.response))
