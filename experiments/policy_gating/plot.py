#!/usr/bin/env python3
"""Plots the policy_gating results: normalised exact return and empirical TV per update, mean
over the held-out seeds, one line per method, one column per task.
Usage: plot.py DIR  (reads DIR/results.json, writes DIR/policy_gating.png)."""
import json
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(out_dir):
    with open(f"{out_dir}/results.json") as f:
        rows = [r for r in json.load(f) if r["kind"] == "curve"]
    tasks = sorted({r["task"] for r in rows})
    methods = []
    for r in rows:
        if r["method"] not in methods:
            methods.append(r["method"])
    # (task, method, update) -> values over seeds
    ret, tv = defaultdict(list), defaultdict(list)
    for r in rows:
        key = (r["task"], r["method"], r["update"])
        if r["normalised_return"] is not None:
            ret[key].append(r["normalised_return"])
        if r["tv"] is not None:
            tv[key].append(r["tv"])
    fig, axes = plt.subplots(2, len(tasks), figsize=(6 * len(tasks), 8), squeeze=False)
    for col, task in enumerate(tasks):
        for method in methods:
            updates = sorted({u for (t, m, u) in ret if t == task and m == method})
            if not updates:
                continue
            mean = lambda d, u: sum(d[(task, method, u)]) / len(d[(task, method, u)])
            axes[0][col].plot(updates, [mean(ret, u) for u in updates], label=method)
            axes[1][col].plot(updates, [mean(tv, u) for u in updates], label=method)
        axes[0][col].set_title(f"{task}: normalised exact return")
        axes[0][col].set_xlabel("update")
        axes[0][col].set_ylabel("(R - R_uniform) / (R* - R_uniform)")
        axes[1][col].set_title(f"{task}: empirical TV per update, (1/T) sum |r - 1|")
        axes[1][col].set_xlabel("update")
        axes[1][col].set_yscale("log")
        axes[0][col].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{out_dir}/policy_gating.png", dpi=110)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results")
