"""Forget loss against retain loss along training, one panel per method (unlearning/main.cpp).

Usage: plot.py DIR   (reads DIR/results.json, writes DIR/unlearning.png)
"""

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "results")
    rows = json.loads((out / "results.json").read_text())
    curves: dict[str, dict[int, list[tuple[float, float]]]] = {}
    finals: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        if r.get("kind") == "curve":
            curves.setdefault(r["method"], {}).setdefault(r["seed"], []).append(
                (r["retain_loss"], r["forget_loss"])
            )
        elif r.get("kind") == "final":
            finals.setdefault(r["method"], []).append((r["retain_loss"], r["forget_loss"]))
    methods = list(curves)
    cols = 4
    rows_n = (len(methods) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3.3 * rows_n), squeeze=False)
    for ax, method in zip(axes.flat, methods):
        for seed, points in sorted(curves[method].items()):
            xs = [p[0] for p in points if p[0] is not None and p[1] is not None]
            ys = [p[1] for p in points if p[0] is not None and p[1] is not None]
            ax.plot(xs, ys, "-", lw=1, alpha=0.8, label=f"seed {seed}")
            if xs:
                ax.plot(xs[0], ys[0], "ko", ms=3)
        for name, marker in (("retrained", "r*"),):
            for x, y in finals.get(name, []):
                ax.plot(x, y, marker, ms=8)
        ax.set_title(method)
        ax.set_xlabel("retain cross-entropy")
        ax.set_ylabel("forget cross-entropy")
        ax.set_yscale("symlog")
    for ax in list(axes.flat)[len(methods):]:
        ax.axis("off")
    fig.suptitle("Unlearning one class: path from the original model (black dot); "
                 "red star = retrained without the class")
    fig.tight_layout()
    fig.savefig(out / "unlearning.png", dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
