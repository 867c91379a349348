"""Forget loss against retain loss along training (unlearning/main.cpp).

One row of panels per case (model x forget set present in the results), one panel per method,
one line per seed; black dot = the original model, red stars = the retrained models of that case.

Usage: plot.py DIR   (reads DIR/results.json, writes DIR/unlearning.png)
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

CASE_TITLES = {
    ("softmax", "class"): "softmax, forget class 0",
    ("softmax", "random"): "softmax, forget random 10%",
    ("mlp", "class"): "MLP, forget class 0",
    ("mlp", "random"): "MLP, forget random 10%",
}


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
    rows = json.loads((out / "results.json").read_text())
    # case -> method -> seed -> [(retain CE, forget CE)]
    curves: dict[tuple[str, str], dict[str, dict[int, list[tuple[float, float]]]]] = {}
    finals: dict[tuple[str, str], dict[str, list[tuple[float, float]]]] = {}
    methods: list[str] = []
    for r in rows:
        case = (r.get("model", "softmax"), r.get("forget_set", "class"))
        if r.get("kind") == "curve":
            if r["method"] not in methods:
                methods.append(r["method"])
            curves.setdefault(case, {}).setdefault(r["method"], {}).setdefault(
                r["seed"], []
            ).append((r["retain_loss"], r["forget_loss"]))
        elif r.get("kind") == "final":
            finals.setdefault(case, {}).setdefault(r["method"], []).append(
                (r["retain_loss"], r["forget_loss"])
            )
    order = [c for c in CASE_TITLES if c in curves] + [c for c in curves if c not in CASE_TITLES]
    if not order:
        print("plot.py: no curves in results.json", file=sys.stderr)
        return 1
    cols = len(methods)
    fig, axes = plt.subplots(
        len(order), cols, figsize=(2.7 * cols, 2.5 * len(order)), squeeze=False
    )
    for i, case in enumerate(order):
        title = CASE_TITLES.get(case, f"{case[0]}, forget {case[1]}")
        for j, method in enumerate(methods):
            ax = axes[i][j]
            for _seed, points in sorted(curves[case].get(method, {}).items()):
                pts = [p for p in points if p[0] is not None and p[1] is not None]
                xs = [p[0] for p in pts]
                ys = [p[1] for p in pts]
                ax.plot(xs, ys, "-", lw=0.8, alpha=0.8)
                if xs:
                    ax.plot(xs[0], ys[0], "ko", ms=2.5)
            for x, y in finals.get(case, {}).get("retrained", []):
                if x is not None and y is not None:
                    ax.plot(x, y, "r*", ms=6)
            if case[1] == "class":  # forget CE spans decades when a class is forgotten
                ax.set_yscale("log")
                ax.yaxis.set_minor_formatter(NullFormatter())
            ax.tick_params(labelsize=6)
            ax.set_title(method, fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{title}\nforget CE", fontsize=7)
            if i == len(order) - 1:
                ax.set_xlabel("retain CE", fontsize=7)
    fig.suptitle(
        "Unlearning: forget vs retain cross-entropy along each run from the original model "
        "(black dot); red stars = retrained without the forget set",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(out / "unlearning.png", dpi=90)
    return 0


if __name__ == "__main__":
    sys.exit(main())
