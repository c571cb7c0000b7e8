"""simplexity_lab: the experiments beside the library — data, training engine, models, experiments, plots, CLI.

It imports :mod:`simplexity`; the library never imports it. Installed with ``pip install 'simplexity[lab]'``.
"""

from __future__ import annotations

__all__: list[str] = []
