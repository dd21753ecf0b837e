"""What every command stands on: the run directory (:mod:`.rundir`), the runner that drives a
step through it (:mod:`.runner`), the ledger of a run (:mod:`.stats`), progress bars
(:mod:`.progress`) and the on-disk caches (:mod:`.kvcache`). Nothing here imports a model."""
