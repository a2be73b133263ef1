"""Runs as library functions: a notebook calls them exactly as the binaries do.

    from rfspec import runs
    settings = runs.figures.settings_from_config(config)       # validated whole, loads nothing
    with runs.Store(workdir, weights_sha256=rfspec.weights_sha256(src), schema=runs.figures.SCHEMA) as store:
      result = runs.run_figures(params, settings, store)        # FiguresResult, a NamedTuple of arrays

Each run returns a NamedTuple (`FiguresResult`, `AtlasResult`, `SweepResult`, `CensusResult`) whose
docstring gives every field's shape and conventions; `Store` makes it resumable and verified.
"""

from rfspec.runs import atlas, census, figures, store, sweep
from rfspec.runs.atlas import AtlasResult, run_atlas
from rfspec.runs.census import CensusResult, run_census
from rfspec.runs.figures import FiguresResult, run_figures
from rfspec.runs.store import Store
from rfspec.runs.sweep import SweepResult, run_sweep

__all__ = ["AtlasResult", "CensusResult", "FiguresResult", "Store", "SweepResult", "atlas", "census", "figures",
           "run_atlas", "run_census", "run_figures", "run_sweep", "store", "sweep"]
