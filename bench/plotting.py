"""What the plot scripts share: writing a figure (atomically, named in its manifest), the signed
numbers BENCHMARKS.md writes, and the bar-and-dots drawing of SSL leads against the targets.

matplotlib is imported inside the functions: ``pip install -e ".[bench]"`` brings it.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from bench.harness import record_output, write_bytes


def save_png(fig: Any, out: Path, command: str | None = None) -> Path:
    """Lay out a matplotlib figure, write it as a PNG atomically, close it, and name it in its
    folder's manifest (default: this process's command); returns ``out``."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes(out, buf.getvalue())
    record_output(out, command)
    return out


def signed(x: float) -> str:
    """+1.2 / −0.6 with a typographic minus, as BENCHMARKS.md writes differences."""
    return f"{x:+.1f}".replace("-", "−")


def mean_bar(ax: Any, x: float, values: list[float], width: float, color: str, label: str | None):
    """A bar at the mean of ``values`` and a black dot for each of them."""
    mean = sum(values) / len(values)
    ax.bar(x, mean, width=width * 0.95, color=color, alpha=0.6, label=label)
    ax.scatter([x] * len(values), values, color="black", s=12, zorder=3)


def target_axes(ax: Any, ks: list[int]) -> None:
    """The issue's margins (K = 10: +5, K = 50: +3 mIoU) dashed, a zero line, one tick per K."""
    for j, k in enumerate(ks):
        target = {10: 5, 50: 3}.get(k)
        if target:
            ax.hlines(target, j - 0.45, j + 0.45, colors="tab:red", linestyles="dashed")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(ks)), [f"K = {k}" for k in ks])
