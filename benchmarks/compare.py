#!/usr/bin/env python3
"""Prints tether against its numpy baselines: time per iteration and the speed-up.

  compare.py TETHER_JSON NUMPY_JSON

Pairs tether's BM_<Case>/<size> (Google Benchmark JSON; the median aggregate where repetitions
were run) with numpy_baselines.py's numpy/<Case>/<size>.
"""
import json
import sys

UNIT_TO_US = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}


def tether_times(path):
    rows = json.load(open(path))["benchmarks"]
    times = {}
    for r in rows:
        if r.get("run_type") == "aggregate" and r.get("aggregate_name") != "median":
            continue
        name = r.get("run_name", r["name"]).split("/real_time")[0].split("/manual_time")[0]
        if not name.startswith("BM_"):
            continue
        if "us_per_iteration" in r:  # one benchmark iteration ran many solver iterations
            times[name[3:]] = r["us_per_iteration"]
        else:
            times[name[3:]] = r["real_time"] * UNIT_TO_US[r.get("time_unit", "ns")]
    return times


def main():
    tether = tether_times(sys.argv[1])
    numpy_rows = json.load(open(sys.argv[2]))["benchmarks"]
    print(f"{'case':<28} {'tether us/iter':>15} {'numpy us/iter':>15} {'speed-up':>9}")
    for r in numpy_rows:
        case = r["name"].removeprefix("numpy/")
        base = r["real_time"] * UNIT_TO_US[r["time_unit"]]
        ours = tether.get(case)
        if ours is None:
            print(f"{case:<28} {'(not run)':>15} {base:>15.3f}")
            continue
        print(f"{case:<28} {ours:>15.3f} {base:>15.3f} {base / ours:>8.1f}x")


if __name__ == "__main__":
    main()
