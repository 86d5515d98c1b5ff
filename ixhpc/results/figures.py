"""What every report plot shares: the concurrency axis and how a figure is finished and written."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ixhpc import atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def conc_axis(ax: Axes) -> None:
    """Concurrencies double from point to point: a log2 axis labelled with the plain numbers."""
    import matplotlib.ticker

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))


def save(fig: Figure, ax: Axes, path: Path) -> Path:
    """Grid, a legend when anything is labelled, the PNG written atomically, the figure freed."""
    import matplotlib.pyplot as plt

    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    plt.close(fig)
    return path
