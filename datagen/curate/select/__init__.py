"""LIMA-style selection: the algorithms (:mod:`.algorithms`) and the select run (:mod:`.run`)."""
