#!/usr/bin/env python3
"""Plots LV-HBA's validation accuracy along its iterations (seed 1 of each dataset), against the
validation accuracy of the baselines on the same split, from the curves.csv and results.json that
svm_hyperparameter writes. Usage: plot.py DIR  (writes DIR/lvhba_validation.png)."""
import csv
import json
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

BASELINES = {
    "svm_hyperparameter": (("grid_search", "tab:red"),),
    "hyper_cleaning": (("no_cleaning", "tab:red"), ("oracle", "tab:green")),
}
TITLES = {"svm_hyperparameter": "SVM hyperparameter selection",
          "hyper_cleaning": "data hyper-cleaning (40% labels flipped)"}


def main(out_dir):
    curves = defaultdict(lambda: defaultdict(list))
    with open(f"{out_dir}/curves.csv") as f:
        for row in csv.DictReader(f):
            key = (row["experiment"], row["dataset"])
            curves[key]["iteration"].append(int(row["iteration"]))
            curves[key]["validation_accuracy"].append(float(row["validation_accuracy"]))
    with open(f"{out_dir}/results.json") as f:
        rows = json.load(f)
    experiments = list(BASELINES)
    datasets = sorted({d for _, d in curves})
    fig, axes = plt.subplots(len(experiments), len(datasets),
                             figsize=(5.5 * len(datasets), 3.8 * len(experiments)), squeeze=False)
    for i, experiment in enumerate(experiments):
        for j, dataset in enumerate(datasets):
            ax = axes[i][j]
            c = curves.get((experiment, dataset))
            if c:
                ax.plot(c["iteration"], c["validation_accuracy"], color="tab:blue",
                        label="LV-HBA: y_k")
            for method, colour in BASELINES[experiment] + (("lvhba_refit", "tab:purple"),):
                accs = [r["validation_accuracy"] for r in rows
                        if r["experiment"] == experiment and r["dataset"] == dataset
                        and r["method"] == method and r["seed"] == 1]
                if accs:
                    label = ("LV-HBA: exact y*(x) at the last x" if method == "lvhba_refit"
                             else method.replace("_", " "))
                    ax.axhline(accs[0], color=colour, linestyle="--", label=label)
            ax.set_title(f"{TITLES[experiment]}\n{dataset}-like, seed 1", fontsize=9)
            ax.set_xlabel("iteration")
            ax.set_ylabel("validation accuracy")
            ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(f"{out_dir}/lvhba_validation.png", dpi=110)


if __name__ == "__main__":
    main(sys.argv[1])
