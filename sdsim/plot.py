"""Where the predicted time goes, as a picture (`sdsim predict --plot out.png`): one horizontal
bar per component (all its calls), split by kernel class.

matplotlib is the `plot` extra; it is imported only here, and drawn through its Agg canvas
without pyplot, so a caller's own matplotlib backend and figures are left alone.
"""

from __future__ import annotations

from sdsim.cost.predict import Prediction
from sdsim.cost.report import LABELS, timed
from sdsim.errors import SdsimError
from sdsim.kernels import KERNEL_CLASSES

#: one colour per kernel class, the same in every plot
COLORS = dict(zip(KERNEL_CLASSES, ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3",
                                   "#937860")))


def breakdown(p: Prediction) -> dict[str, dict[str, float]]:
    """Seconds over the whole run per component (all its calls) and, within it, per kernel
    class, in the pipeline's order."""
    out: dict[str, dict[str, float]] = {c.name: {} for c in p.components}
    for c, k, t in timed(p):
        by = out[c.name]
        by[k.call.kernel_class] = by.get(k.call.kernel_class, 0.0) + t
    return out


def figure(p: Prediction):
    """The breakdown as a matplotlib Figure (not attached to pyplot)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise SdsimError("drawing a plot needs matplotlib: pip install sdsim[plot]") from None

    data = breakdown(p)
    calls = {c.name: c.calls for c in p.components}
    names = list(data)[::-1]                      # barh draws bottom up: first component on top
    fig = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    left = [0.0] * len(names)
    for cls in KERNEL_CLASSES:
        widths = [data[n].get(cls, 0.0) for n in names]
        if any(widths):
            ax.barh(range(len(names)), widths, left=left, color=COLORS[cls], label=cls,
                    gid=cls)
            left = [a + w for a, w in zip(left, widths)]
    for i, (n, total) in enumerate(zip(names, left)):
        ax.annotate(f" {total:.3g} s ({100 * total / p.total_s:.0f}%)", (total, i),
                    va="center", fontsize=9)
    ax.set_yticks(range(len(names)),
                  [f"{LABELS[n]}\n({calls[n]} call{'s' * (calls[n] > 1)})" for n in names])
    ax.set_xlabel("predicted time, s")
    ax.set_xlim(0, max(left) * 1.25)
    ax.legend(title="kernel class", loc="lower right", fontsize=8)
    ax.set_title(f"{p.device}: {p.total_s:.3g} s predicted, {p.resolution}x{p.resolution}, "
                 f"{p.steps} steps {p.scheduler}, {p.precision}\nopt {p.options.describe()}",
                 fontsize=10)
    return fig


def write(p: Prediction, path) -> None:
    """The breakdown as a PNG at `path`, written atomically."""
    from sdsim import atomic

    fig = figure(p)
    with atomic.atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
