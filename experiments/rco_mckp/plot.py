#!/usr/bin/env python3
"""Plots loss and budget residual per iteration, RCO against the penalty baseline, from the
curves.csv that rco_mckp writes. Usage: plot.py DIR  (writes DIR/rco_vs_penalty.png)."""
import csv
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(out_dir):
    curves = defaultdict(lambda: defaultdict(list))
    with open(f"{out_dir}/curves.csv") as f:
        for row in csv.DictReader(f):
            key = (row["family"], row["method"])
            for col in ("iteration", "loss", "best_loss", "constraint_residual"):
                curves[key][col].append(float(row[col]))
    families = sorted({fam for fam, _ in curves})
    fig, axes = plt.subplots(2, len(families), figsize=(5 * len(families), 7), squeeze=False)
    for j, fam in enumerate(families):
        for method, colour in (("rco", "tab:blue"), ("penalty", "tab:red")):
            c = curves.get((fam, method))
            if not c:
                continue
            axes[0][j].plot(c["iteration"], c["loss"], color=colour, alpha=0.5,
                            label=("rco: mean sampled hard loss" if method == "rco"
                                   else "penalty: soft loss L(p)"))
            if method == "rco":  # best feasible hard answer so far (penalty has no such thing)
                axes[0][j].plot(c["iteration"], c["best_loss"], color=colour, linestyle="--",
                                label="rco: best hard answer within budget")
            residual = [max(abs(r), 1e-17) for r in c["constraint_residual"]]
            axes[1][j].semilogy(c["iteration"], residual, color=colour, label=method)
        axes[0][j].set_title(f"{fam}: loss per iteration")
        axes[1][j].set_title(f"{fam}: |C - B| per iteration")
        axes[1][j].set_xlabel("iteration")
        axes[0][j].legend(fontsize=7)
        axes[1][j].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(f"{out_dir}/rco_vs_penalty.png", dpi=110)


if __name__ == "__main__":
    main(sys.argv[1])
