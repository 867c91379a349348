#!/usr/bin/env python3
"""Plots the error per iteration (log-log) of LV-HBA, BLUR and OFMU on their toys, from the
results.json that bilevel_toys writes. Usage: plot.py DIR  (writes DIR/bilevel_toys.png)."""
import json
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

FLOOR = 1e-17  # exact zeros (BLUR reaches the optimum to the last bit) drawn at the floor

# The spec's figures (specs/bilevel.md section 2), drawn as markers next to the measured curves.
SPEC_T2 = [(1000, 0.25), (5000, 7e-3), (10000, 2.4e-4), (20000, 1e-6), (50000, 3e-12)]
SPEC_T1 = [(100000, 2.5e-3)]


def load(out_dir):
    with open(f"{out_dir}/results.json") as f:
        rows = json.load(f)
    curves = defaultdict(lambda: ([], []))
    for r in rows:
        if r["error"] is None:
            continue
        key = (r["experiment"], r["method"], r["problem"], r["seed"])
        curves[key][0].append(r["iteration"])
        curves[key][1].append(max(r["error"], FLOOR))
    return curves


def lvhba_panel(ax, curves):
    style = {
        "T2 n=100": ("tab:blue", "-"),
        "T2 n=1000": ("tab:cyan", "--"),
        "T3": ("tab:green", "-"),
        "T1 n=100 script start": ("tab:orange", "-"),
        "T1 n=100 start 0": ("tab:orange", ":"),
    }
    for (exp, method, problem, seed), (it, err) in sorted(curves.items(), key=str):
        if exp != "lvhba":
            continue
        if problem.startswith("T4"):
            if seed != 1:
                continue
            ax.plot(it, err, color="tab:purple", linestyle="-.",
                    label="T4 seed 1: |y - y*(x)| (tracking)")
            continue
        colour, ls = style.get(problem, ("grey", "-"))
        if method == "lvhba public defaults":
            colour = "tab:red"
        ax.plot(it, err, color=colour, linestyle=ls,
                label=f"{problem}: {method.replace('lvhba ', '')}")
    ax.plot(*zip(*SPEC_T2), "kx", markersize=7, label="spec T2 (n = 100)")
    ax.plot(*zip(*SPEC_T1), "k+", markersize=9, label="spec T1 (script start)")
    ax.set_title("LV-HBA: relative x error |x - x*| / |x*|")


def blur_panel(ax, curves):
    for (exp, method, problem, _), (it, err) in sorted(curves.items(), key=str):
        if exp != "blur":
            continue
        ls = "-" if method.startswith("blur") else "--"
        ax.plot(it, err, linestyle=ls, label=f"{problem}: {method}")
    ax.set_title("BLUR vs weighted sum: |theta - theta*|")


def ofmu_panel(ax, curves):
    shown_rho = ["ofmu rho=1", "ofmu rho=4", "ofmu rho=16", "ofmu rho=64"]
    lowest = 1e3
    for method in shown_rho:
        for (exp, m, _, _), (it, err) in curves.items():
            if exp == "ofmu" and m == method:
                ax.plot(it, err, label=method.replace("ofmu ", "fixed "))
                lowest = min(lowest, min(err))
    for (exp, method, _, _), (it, err) in sorted(curves.items(), key=str):
        if exp != "ofmu" or method.startswith("ofmu rho="):
            continue
        label = method.replace("ofmu ", "rho ")
        if max(err) > 1e3:
            label += " (diverges, off scale)"
        ax.plot(it, err, linestyle="--", label=label)
    ax.set_ylim(lowest / 3, 1e3)
    ax.set_title("OFMU on O1: |theta - theta*| (floor = O(1/rho) bias)")


def main(out_dir):
    curves = load(out_dir)
    fig, axes = plt.subplots(1, 3, figsize=(18, 6))
    lvhba_panel(axes[0], curves)
    blur_panel(axes[1], curves)
    ofmu_panel(axes[2], curves)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("error (log scale)")
    fig.tight_layout()
    fig.savefig(f"{out_dir}/bilevel_toys.png", dpi=110)


if __name__ == "__main__":
    main(sys.argv[1])
