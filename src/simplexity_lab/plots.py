"""Plots as pure functions: data in, a matplotlib ``Figure`` out (nothing is shown or saved).

matplotlib is an optional extra (``pip install 'simplexity[demo]'``), imported when a function is
called, with the non-interactive Agg backend. Save with ``fig.savefig(path)``, or with
:func:`save_png` for a file whose bytes depend on the figure only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "curve_panels",
    "curves",
    "densities",
    "image_rows",
    "pmf_panels",
    "prior_bars",
    "save_png",
]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as error:  # optional extra
        raise ImportError("plots need matplotlib: pip install 'simplexity[demo]'") from error
    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure


def _numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)


def image_rows(
    rows: Sequence[Any], labels: Sequence[str] | None = None, *, title: str | None = None
) -> Any:
    """A grid of grey images: one row per entry of ``rows`` (each ``(n, H, W)``, values in [0, 1]).

    Example:
        >>> fig = image_rows([np.zeros((3, 4, 4)), np.ones((3, 4, 4))], ["a", "b"])
        >>> len(fig.axes)
        6
    """
    Figure = _pyplot()
    arrays = [_numpy(r) for r in rows]
    cols = max(len(a) for a in arrays)
    fig = Figure(figsize=(1.0 * cols + 1.2, 1.05 * len(arrays) + (0.4 if title else 0.1)))
    axes = fig.subplots(len(arrays), cols, squeeze=False)
    for i, images in enumerate(arrays):
        for j in range(cols):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(images):
                ax.imshow(images[j], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        if labels is not None:
            axes[i][0].set_ylabel(labels[i], rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def prior_bars(
    priors: Mapping[str, Any],
    *,
    xlabel: str = "category",
    title: str | None = None,
    targets: Mapping[str, Any] | None = None,
    count_nonzero: bool = True,
) -> Any:
    """Bar charts of probability vectors, one panel per entry (exact zeros show as no bar).

    Args:
        priors: ``{panel title: probabilities (K,)}``.
        xlabel: label of the categories.
        title: figure title.
        targets: optional ``{panel title: target probabilities}`` drawn as outlines.
        count_nonzero: add the number of nonzero entries to each panel's title.

    Example:
        >>> fig = prior_bars({"p": [0.5, 0.5, 0.0]})
        >>> len(fig.axes)
        1
    """
    Figure = _pyplot()
    names = list(priors)
    cols = min(len(names), 4)
    rows = (len(names) + cols - 1) // cols
    fig = Figure(figsize=(3.0 * cols, 2.3 * rows + (0.3 if title else 0)))
    axes = fig.subplots(rows, cols, squeeze=False)
    for index, ax in enumerate(axes.flat):
        if index >= len(names):
            ax.set_visible(False)
            continue
        name = names[index]
        p = _numpy(priors[name])
        k = np.arange(len(p))
        ax.bar(k, p, color=np.where(p > 0, "#3465a4", "#bbbbbb"))
        if targets is not None and name in targets:
            ax.bar(k, _numpy(targets[name]), fill=False, edgecolor="#cc0000", linewidth=1.0)
        ax.set_ylim(0, 1)
        ax.set_xticks(k)
        label = f"{name}\n{int((p > 0).sum())} of {len(p)} nonzero" if count_nonzero else name
        ax.set_title(label, fontsize=8)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


Series = Mapping[str, Sequence[Any]]  # {label: (x, y)} or {label: (x, y, standard error)}


def _draw_series(ax: Any, series: Series) -> None:
    for label, curve in series.items():
        if len(curve) not in (2, 3):
            raise ValueError(
                f"series[{label!r}] must be (x, y) or (x, y, standard error), "
                f"got a tuple of {len(curve)}"
            )
        x, y = _numpy(curve[0]), _numpy(curve[1])
        (line,) = ax.plot(x, y, marker="o", markersize=3, label=label)
        if len(curve) == 3:
            se = _numpy(curve[2])
            ax.fill_between(x, y - se, y + se, color=line.get_color(), alpha=0.2, linewidth=0)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)


def curves(
    series: Series,
    *,
    xlabel: str = "step",
    ylabel: str = "",
    title: str | None = None,
) -> Any:
    """Line plot of ``{label: (x, y)}``; a third entry ``(x, y, se)`` shades ``y ± se`` (e.g. the
    output of :func:`simplexity_lab.engine.table.seed_mean`).

    Example:
        >>> fig = curves({"a": ([0, 1], [1.0, 0.5]), "b": ([0, 1], [2.0, 1.0], [0.1, 0.2])},
        ...              ylabel="loss")
        >>> fig.axes[0].get_ylabel(), len(fig.axes[0].collections)
        ('loss', 1)
    """
    return curve_panels({title or "": series}, xlabel=xlabel, ylabel=ylabel, figsize=(5, 3.2))


def curve_panels(
    panels: Mapping[str, Series],
    *,
    xlabel: str = "step",
    ylabel: str = "",
    figsize: tuple[float, float] | None = None,
) -> Any:
    """Line plots side by side: ``{panel title: series}``, each series as in :func:`curves`.

    Example:
        >>> fig = curve_panels({"mnist": {"a": ([0, 1], [1.0, 0.5])}, "omniglot": {}})
        >>> [ax.get_title() for ax in fig.axes]
        ['mnist', 'omniglot']
    """
    if not panels:
        raise ValueError("curve_panels needs at least one panel, got none")
    Figure = _pyplot()
    fig = Figure(figsize=figsize or (4.2 * len(panels), 3.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, series) in zip(axes, panels.items()):
        if series:
            _draw_series(ax, series)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if name:
            ax.set_title(name, fontsize=9)
    fig.tight_layout()
    return fig


def densities(
    grids: Mapping[str, tuple[Any, Any, Any]],
    *,
    points: Any | None = None,
    title: str | None = None,
) -> Any:
    """Density heat maps ``{panel: (xs, ys, density[len(ys), len(xs)])}``, plus data points.

    Example:
        >>> xs = np.linspace(-1, 1, 5)
        >>> fig = densities({"flow": (xs, xs, np.ones((5, 5)))}, points=np.zeros((3, 2)))
        >>> len(fig.axes)
        2
    """
    Figure = _pyplot()
    panels = list(grids)
    extra = points is not None
    n = len(panels) + int(extra)
    fig = Figure(figsize=(3.2 * n, 3.3 + (0.3 if title else 0)))
    axes = fig.subplots(1, n, squeeze=False)[0]
    limits = None
    for ax, name in zip(axes, panels):
        xs, ys, z = (_numpy(a) for a in grids[name])
        ax.pcolormesh(xs, ys, z, shading="auto", cmap="magma")
        ax.set_title(name, fontsize=9)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        limits = (xs.min(), xs.max(), ys.min(), ys.max())
    if extra:
        ax = axes[-1]
        pts = _numpy(points)
        ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4, color="#204a87")
        ax.set_title("data", fontsize=9)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        if limits is not None:
            ax.set_xlim(limits[0], limits[1])
            ax.set_ylim(limits[2], limits[3])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def pmf_panels(
    panels: Mapping[str, Any], truth: Any, *, title: str | None = None, width: float = 3.2
) -> Any:
    """Bar charts of probability mass functions ``{panel title: pmf}`` over ``0, 1, …``, each
    against the same ``truth`` (a pmf drawn as a black line; the x range is its length).

    Example:
        >>> fig = pmf_panels({"a": [0.5, 0.5], "b": [1.0]}, [0.4, 0.6], title="target")
        >>> [ax.get_title() for ax in fig.axes]
        ['a', 'b']
    """
    if not panels:
        raise ValueError("pmf_panels needs at least one panel, got none")
    Figure = _pyplot()
    reach = len(_numpy(truth))
    fig = Figure(figsize=(width * len(panels), 2.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, pmf) in zip(axes, panels.items()):
        values = _numpy(pmf)[:reach]
        ax.bar(range(len(values)), values, width=1.0, alpha=0.6)
        ax.plot(range(reach), _numpy(truth), "k.-", ms=2, lw=0.7)
        ax.set_title(name, fontsize=8)
        ax.set_xlim(-1, reach)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def save_png(fig: Any, path: Any, *, dpi: float) -> None:
    """Write ``fig`` as a PNG at ``dpi`` without the software version in its metadata, so that the
    file's bytes depend on the figure (and the fonts and renderer), not on the matplotlib release.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.png"
        >>> save_png(curves({"a": ([0, 1], [1.0, 0.5])}), path, dpi=50)
        >>> first = path.read_bytes()
        >>> save_png(curves({"a": ([0, 1], [1.0, 0.5])}), path, dpi=50)
        >>> path.read_bytes() == first
        True
    """
    fig.savefig(path, dpi=dpi, format="png", metadata={"Software": None})
