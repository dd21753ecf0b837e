"""``datagen report``: a self-contained HTML quality report over one or more run directories.

* :mod:`.data` computes what each view shows (pure functions over the run directories: the funnel,
  score histograms, the MinHash detection curve, duplicate clusters, the embedding map, the
  breakdowns, the record index with lineage and evidence); :mod:`.training` reads a training run
  and eval results; :mod:`.ablation` reads a ``datagen ablate`` result and computes its verdict;
* :mod:`.html` (with :mod:`.svg`) renders it into one HTML file from ``report.html``,
  ``report.css`` and ``report.js`` (inline CSS, SVG and a small hand-written script; no network
  request, no JavaScript library);
* :mod:`.text` prints the funnel and the top reasons (and the ablation's arms and verdict) to a terminal;
* :mod:`.command` is the command line.

Nothing here loads a model: embeddings come from the on-disk cache only.
"""
