#!/usr/bin/env python3
"""Plots the task-arithmetic proxy against lambda (OrthoReg's weight) from the results.json that
task_arithmetic writes: merged normalised accuracy, mean |cosine| between task vectors, the
disentanglement error and the negation accuracies, mean and 95% Student-t interval over seeds,
one series per (suite, form) that the run wrote (form: full fine-tuning or LoRA).
Usage: plot.py DIR  (writes DIR/task_arithmetic.png)."""
import json
import math
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# Two-sided 95% Student-t quantiles t_{0.975, n-1}, n - 1 = 1..30 (beyond: 1.96).
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def interval(xs):
    n = len(xs)
    m = sum(xs) / n
    if n < 2:
        return m, 0.0
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1))
    t = T975[n - 2] if n - 2 < len(T975) else 1.96
    return m, t * s / math.sqrt(n)


def main(out_dir):
    with open(f"{out_dir}/results.json") as f:
        rows = json.load(f)
    keys = ("merged_normalized_accuracy", "mean_abs_cosine", "disentanglement_error",
            "negation_target_accuracy", "negation_control_accuracy")
    # by[(suite, form)][key][lambda] -> values over seeds
    by = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        series = f'{r.get("suite", "default")}/{r.get("form", "full")}'
        for key in keys:
            if r[key] is not None:
                by[series][key][r["lambda"]].append(r[key])
    suites = sorted(by)
    lambdas = sorted({x for s in suites for x in by[s]["merged_normalized_accuracy"]})
    # lambda = 0 drawn left of the smallest positive lambda on a log axis.
    positive = [x for x in lambdas if x > 0]
    zero_at = min(positive) / 10 if positive else 1e-3
    pos = {x: (x if x > 0 else zero_at) for x in lambdas}

    panels = [
        ("merged_normalized_accuracy", "task addition: merged normalised accuracy (test)"),
        ("mean_abs_cosine", "mean |cosine| between task vectors"),
        ("disentanglement_error", "disentanglement error at the chosen alpha"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    for suite in suites:
        for ax, (key, title) in zip(axes, panels):
            xs = sorted(by[suite][key])
            ms, hs = zip(*(interval(by[suite][key][x]) for x in xs))
            ax.errorbar([pos[x] for x in xs], ms, yerr=hs, marker="o", capsize=4,
                        label=suite)
            ax.set_title(title, fontsize=10)
        for key, label, ls in (("negation_target_accuracy", "target", "-"),
                               ("negation_control_accuracy", "control", "--")):
            xs = sorted(by[suite][key])
            ms, hs = zip(*(interval(by[suite][key][x]) for x in xs))
            axes[3].errorbar([pos[x] for x in xs], ms, yerr=hs, marker="o", capsize=4,
                             linestyle=ls, label=f"{suite}: {label}")
    axes[3].set_title("task negation: test accuracy (mean over targets)", fontsize=10)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xticks([pos[x] for x in lambdas])
        ax.set_xticklabels([f"{x:g}" for x in lambdas])
        ax.set_xlabel("OrthoReg lambda (0 = plain fine-tuning)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    n = len(by[suites[0]]["merged_normalized_accuracy"][lambdas[0]])
    fig.suptitle("OrthoReg task arithmetic, small synthetic proxy "
                 f"(mean, 95% Student-t interval, {n} seeds)")
    fig.tight_layout()
    fig.savefig(f"{out_dir}/task_arithmetic.png", dpi=110)


if __name__ == "__main__":
    main(sys.argv[1])
