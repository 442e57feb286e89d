"""Batch runs: RunConfig (the one description of a run), its plan, the run, Dask."""
