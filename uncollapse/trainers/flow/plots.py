"""The flow run's figure for ``uncollapse report``: trajectories from source to target.

A sample of held-out rows is drawn in one 2-D PCA (fitted on the sample's trajectory points,
the steering endpoints and the prototypes together, so both panels share axes). Left, the
flow: each row's input ``z`` (open circle), every Euler step's point, and the final ``z'`` (the
arrow's head), as one polyline; right, the steering baseline's straight move from the same
``z`` to ``normalize(z + P[target] - P[source])``. Lines take the colour of the row's target
combination and the prototypes of the bank are stars of the same colour, so a working flow ends
its arrows on the star of its own colour; a collapsed one ends them all in one place, or far
from their stars.
"""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = ["FIGURE", "FIGURE_INCHES", "TITLE", "check_arrays", "combination_label", "figure"]

TITLE = "Flow trajectories"
FIGURE = "flow-trajectories"
FIGURE_INCHES = (11.0, 5.5)
TRAJECTORY_ROWS = 40
MAX_LEGEND = 12
COLOURS = matplotlib.colormaps["tab20"].colors


def check_arrays(arrays: dict) -> None:
    """Raise ``ValueError`` unless the arrays fit together as the flow recipe writes them
    (``trajectory`` [steps + 1, n, D], ``steering`` [n, D], ``groups`` [n], and optionally
    ``prototypes`` [C, D] with ``prototype_ids`` [C]); the caller names the file."""
    if "trajectory" not in arrays:
        raise ValueError("has no 'trajectory' array; expected the flow recipe's arrays "
                         "(trajectory, steering, groups)")
    trajectory = arrays["trajectory"]
    if trajectory.ndim != 3 or trajectory.shape[0] < 2 or trajectory.shape[1] < 1:
        raise ValueError(f"trajectory has shape {list(trajectory.shape)}; expected "
                         "[flow_steps + 1, rows, dim] with at least one step and one row")
    _, n, dim = trajectory.shape
    expected = {"steering": (n, dim), "groups": (n,)}
    if "prototypes" in arrays:
        expected["prototype_ids"] = (len(arrays["prototypes"]),)
        if arrays["prototypes"].ndim != 2 or arrays["prototypes"].shape[1] != dim:
            raise ValueError(f"prototypes has shape {list(arrays['prototypes'].shape)}; "
                             f"expected [combinations, {dim}] like the trajectory")
    for key, shape in expected.items():
        if key not in arrays:
            raise ValueError(f"has a trajectory but no {key!r} array; expected the flow "
                             "recipe's arrays (trajectory, steering, groups)")
        if arrays[key].shape != shape:
            raise ValueError(f"{key} has shape {list(arrays[key].shape)}; expected "
                             f"{list(shape)} to match trajectory {list(trajectory.shape)}")
    for key in ("trajectory", "steering", "prototypes"):
        if key in arrays and not np.isfinite(arrays[key]).all():
            raise ValueError(f"{key} holds non-finite values (NaN or inf); the run's "
                             "evaluation diverged, so there is nothing to project")


def combination_label(combination: int, names: list[str]) -> str:
    """``attr0+attr2`` for the attributes set in a combination id (bit j = attribute j)."""
    if not names:
        return f"combination {combination}"
    on = [name for j, name in enumerate(names) if (combination >> j) & 1]
    return "+".join(on) if on else "none"


def figure(arrays: dict, project, *, rows: int = TRAJECTORY_ROWS, seed: int = 0) -> Figure:
    """The two-panel figure (flow, steering) of ``rows`` sampled rows; ``project`` is the PCA
    helper (arrays -> their 2-D coordinates in one shared basis)."""
    trajectory = arrays["trajectory"].astype(np.float64)
    steps, n, dim = trajectory.shape
    pick = np.sort(np.random.default_rng(seed).permutation(n)[:rows])
    path = trajectory[:, pick]
    prototypes = arrays.get("prototypes", np.zeros((0, dim)))
    prototype_ids = arrays.get("prototype_ids", np.zeros(0, dtype=np.int64))
    flat, steering, stars = project(path.reshape(-1, dim), arrays["steering"][pick], prototypes)
    path = flat.reshape(steps, len(pick), 2)
    groups = arrays["groups"][pick].astype(np.int64)
    names = [str(x) for x in arrays.get("attribute_names", [])]
    shown = sorted(set(groups.tolist()))
    colour = {c: COLOURS[i % len(COLOURS)] for i, c in enumerate(
        sorted(set(shown) | set(prototype_ids.tolist())))}

    drawing = Figure(figsize=FIGURE_INCHES, layout="constrained")
    flow_axis, steer_axis = drawing.subplots(1, 2, sharex=True, sharey=True)
    for row, group in enumerate(groups):
        c = colour[group]
        _arrow(flow_axis, path[:, row], c)
        _arrow(steer_axis, np.stack([path[0, row], steering[row]]), c)
    for axis in (flow_axis, steer_axis):
        for (x, y), combination in zip(stars, prototype_ids.tolist(), strict=True):
            axis.scatter(x, y, marker="*", s=260, color=colour[combination],
                         edgecolors="black", linewidths=0.8, zorder=4)
        axis.set_xlabel("PC 1")
        axis.grid(alpha=0.3)
    flow_axis.set_ylabel("PC 2")
    flow_axis.set_title(f"flow: z, {steps - 1} Euler step(s), z' ({len(pick)} held-out rows)")
    steer_axis.set_title("steering baseline: z -> normalize(z + P[target] - P[source])")
    if len(shown) <= MAX_LEGEND:
        handles = [Line2D([], [], color=colour[c], marker="*", markersize=10,
                          markeredgecolor="black", label=combination_label(c, names))
                   for c in shown]
        handles.append(Line2D([], [], color="grey", marker="o", markerfacecolor="none",
                              linestyle="", label="input z"))
        steer_axis.legend(handles=handles, title="target combination", fontsize=8,
                          loc="center left", bbox_to_anchor=(1.02, 0.5))
    drawing.suptitle("PCA of flow trajectories; stars: target prototypes (means of real "
                     "embeddings)")
    return drawing


def _arrow(axis, points: np.ndarray, colour) -> None:
    """A polyline through ``points`` [k, 2]: open circle at the start, dots at inner points,
    an arrow on the last segment."""
    axis.plot(*points[:1].T, marker="o", markerfacecolor="none", color=colour, markersize=4,
              linestyle="")
    axis.plot(*points.T, color=colour, linewidth=0.9, marker=".", markersize=3, alpha=0.8,
              markevery=slice(1, -1))
    axis.annotate("", xy=points[-1], xytext=points[-2],
                  arrowprops={"arrowstyle": "-|>", "color": colour, "linewidth": 0.9,
                              "alpha": 0.8, "shrinkA": 0, "shrinkB": 0})
