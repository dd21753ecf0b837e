"""What everything else stands on: the one schema (:mod:`.record`), reading and writing records
(:mod:`.io`, :mod:`.writing`, :mod:`.formats`), errors that speak to the user (:mod:`.errors`,
:mod:`.cli`), text facts and the defect checks curation and evaluation share (:mod:`.text`,
:mod:`.checks`), one way to declare settings (:mod:`.settings`), the run directory and the runner
that drives a step through it (:mod:`.rundir`, :mod:`.runner`, :mod:`.stats`), progress bars and
the on-disk caches (:mod:`.progress`, :mod:`.kvcache`). It imports nothing else of the package,
and nothing here imports a model."""
