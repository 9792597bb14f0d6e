"""The page's figure: median seconds per reader, one panel per workload and endpoint; ours, peers and the two
floors each in a colour of their own, the higher floor also as a line across the panel."""

from __future__ import annotations

from pathlib import Path

from .report import WorkloadRuns, endpoint_label, higher_floor, summarize_workload

COLOURS = {"ours": "#1f77b4", "peer": "#ff7f0e", "memory-floor": "#2ca02c", "network-floor": "#7f7f7f"}


def write_plot(results: list[WorkloadRuns], path: Path) -> None:
    """A PNG of horizontal bars, one panel per (workload, endpoint); needs matplotlib (the ``bench`` extra)."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file is all we want
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    panels = [
        (result, endpoint)
        for result in results
        for endpoint in result.timing_endpoints
        if any(endpoint in summary.timings for summary in summarize_workload(result))  # a panel with bars
    ]
    heights = [0.9 + 0.28 * len(result.contenders) for result, _ in panels]
    figure, axes = plt.subplots(
        len(panels), 1, figsize=(10, sum(heights)), gridspec_kw={"height_ratios": heights}, squeeze=False
    )
    for axis, (result, endpoint) in zip(axes[:, 0], panels, strict=True):
        timed = [s for s in summarize_workload(result) if endpoint in s.timings]
        seconds = [s.timings[endpoint].seconds for s in timed]
        axis.barh(range(len(timed)), seconds, color=[COLOURS[s.kind] for s in timed])
        axis.set_yticks(range(len(timed)), [s.label.replace("`", "") for s in timed], fontsize=7)
        axis.invert_yaxis()
        axis.set_title(f"{result.workload.title.replace('`', '')} @{endpoint_label(endpoint)}", fontsize=9)
        floor = higher_floor(result, endpoint)
        if floor is not None:
            axis.axvline(floor[1], color=COLOURS[floor[0].kind], linestyle="--", linewidth=0.8)
        # One very slow reader would flatten every other bar to nothing: switch such a panel to a log scale.
        logarithmic = max(seconds) > 20 * min(seconds)
        if logarithmic:
            axis.set_xscale("log")
        axis.set_xlabel(f"median seconds{', log scale' if logarithmic else ''} (shorter is faster)", fontsize=7)
        axis.tick_params(axis="x", labelsize=7)
        for position, value in enumerate(seconds):
            axis.text(value, position, f" {value:.2f}", va="center", fontsize=6)
    legend = [Patch(color=colour, label=kind.replace("-", " ")) for kind, colour in COLOURS.items()]
    figure.legend(handles=legend, loc="upper right", fontsize=8)
    figure.tight_layout(rect=(0, 0, 0.92, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(figure)
