#!/usr/bin/env python3
"""Plain-numpy versions of the bilevel iterations that tether_benchmarks times, as the baseline.

Each case runs the same arithmetic as its C++ counterpart (see bilevel_bench.cpp), written the
way the public Python references write it: a problem object with gradient oracles, one numpy
expression per line of the update rule. Prints Google-Benchmark-like JSON (name, real_time in
microseconds per iteration, iterations) to stdout or to the path given as the first argument.

  LvHbaIteration/n  one LV-HBA iteration (specs/bilevel.md section 2) on toy T2 with n upper
                    variables, the spec's checked settings, state carried across iterations
  BlurStep/n        one BLUR step (section 3) with AdamW on separable quadratics of dimension n:
                    both gradients, the direction d, the optimizer step
  RetainProjection/d/k             GU's projection (specs/projection.md section 1) with the
                    window rebuilt: whiten k retain gradients with Adam's diagonal metric,
                    Householder QR (LAPACK geqrf through np.linalg.qr), project a forget gradient
  RetainProjectionFixedBasis/d/k   the projection alone with the basis built
  OrthoRegGradient/m/n             |G - I|_F and its gradient 2 dW M / |M|_F (section 2)
"""
import json
import sys
import time

import numpy as np


class T2:
    """F = (y1 - 2)^T (x - 1) + |y2 + 3|^2, f = 0.5|y1|^2 - x^T y1 + 1^T y2, 1^T x + 1^T y = 0."""

    def __init__(self, n):
        self.n = n

    def grad_F(self, x, y):
        n = self.n
        y1, y2 = y[:n], y[n:]
        return y1 - 2.0, np.concatenate([x - 1.0, 2.0 * (y2 + 3.0)])

    def grad_f(self, x, y):
        n = self.n
        y1 = y[:n]
        return -y1, np.concatenate([y1 - x, np.ones(n)])

    def g(self, x, y):
        return np.array([x.sum() + y.sum()])

    def jac_g_T(self, x, y, lam):
        return np.full(x.shape, lam[0]), np.full(y.shape, lam[0])

    def project_C(self, x, y):
        # C = {(x, y) : g(x, y) = 0}: the hyperplane 1^T x + 1^T y = 0
        shift = (x.sum() + y.sum()) / (x.size + y.size)
        return x - shift, y - shift


def lvhba_case(n, iterations):
    p = T2(n)
    alpha, beta, eta, g1, g2, r, c0, pw = 5e-3, 2e-3, 3e-2, 10.0, 1.0, 1.0, 1.0, 0.3
    x = np.zeros(n)
    y = np.zeros(2 * n)
    theta = y.copy()
    lam = np.array([-1.0])
    z = np.array([-1.0])
    start = time.perf_counter()
    for k in range(iterations):
        c = c0 * (k + 1) ** pw
        # (a) inner saddle step, both directions first
        _, gy_f = p.grad_f(x, theta)
        _, jy = p.jac_g_T(x, theta, lam)
        d_th = gy_f + jy + (theta - y) / g1
        d_lam = -p.g(x, theta) + (lam - z) / g2
        theta = theta - eta * d_th
        lam = np.clip(lam - eta * d_lam, -r, r)
        # (b) outer step with the new theta, lam
        gx_F, gy_F = p.grad_F(x, y)
        gx_fy, gy_fy = p.grad_f(x, y)
        gx_ft, _ = p.grad_f(x, theta)
        jx, _ = p.jac_g_T(x, theta, lam)
        d_x = gx_F / c + gx_fy - gx_ft - jx
        d_y = gy_F / c + gy_fy - (y - theta) / g1
        x, y = p.project_C(x - alpha * d_x, y - alpha * d_y)
        z = np.clip(z + beta * (lam - z) / g2, -r, r)
    seconds = time.perf_counter() - start
    error = np.linalg.norm(x - 1.0) / np.linalg.norm(np.ones(n))
    return seconds / iterations, error


def blur_case(n, iterations):
    rng = np.random.default_rng(1)
    w = rng.uniform(0.5, 2.0, n)
    target_f = rng.standard_normal(n)
    target_r = rng.standard_normal(n)
    theta = np.zeros(n)
    m = np.zeros(n)
    v = np.zeros(n)
    lr, b1, b2, eps, wd, gamma = 1e-3, 0.9, 0.999, 1e-8, 0.01, 1.0
    start = time.perf_counter()
    for t in range(1, iterations + 1):
        g_f = w * (theta - target_f)
        g_r = theta - target_r
        gf2 = g_f @ g_f
        d = g_r if gf2 == 0.0 else g_r + (gamma - (g_r @ g_f) / gf2) * g_f
        m = b1 * m + (1 - b1) * d
        v = b2 * v + (1 - b2) * d * d
        theta = theta - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps) - lr * wd * theta
    seconds = time.perf_counter() - start
    return seconds / iterations, float(np.linalg.norm(theta))


def retain_projection_case(d, k, iterations, rebuild):
    rng = np.random.default_rng(7)
    retain = rng.standard_normal((d, k))
    h = rng.uniform(0.5, 2.0, d)
    g_f = rng.standard_normal(d)
    s_half = 1.0 / np.sqrt(h)
    q, _ = np.linalg.qr(retain * s_half[:, None])
    start = time.perf_counter()
    for _ in range(iterations):
        if rebuild:
            s_half = 1.0 / np.sqrt(h)
            q, _ = np.linalg.qr(retain * s_half[:, None])
        z = s_half * g_f
        z_n = z - q @ (q.T @ z)
        out = s_half * z_n
    seconds = time.perf_counter() - start
    return seconds / iterations, float(np.linalg.norm(out))


def orthoreg_case(m, n, iterations):
    rng = np.random.default_rng(3)
    dw = 0.05 * rng.standard_normal((m, n))
    start = time.perf_counter()
    for _ in range(iterations):
        g = dw.T @ dw if m >= n else dw @ dw.T
        mm = g - np.eye(g.shape[0])
        value = np.linalg.norm(mm)
        grad = 2.0 * (dw @ mm) / value if m >= n else 2.0 * (mm @ dw) / value
    seconds = time.perf_counter() - start
    return seconds / iterations, float(value + 0.0 * grad[0, 0])


def main():
    rows = []
    for n, iters in ((100, 20000), (1000, 5000)):
        per_iter, err = lvhba_case(n, iters)
        rows.append({"name": f"numpy/LvHbaIteration/{n}", "real_time": per_iter * 1e6,
                     "time_unit": "us", "iterations": iters, "relative_x_error": err})
    per_iter, norm = blur_case(1_000_000, 20)
    rows.append({"name": "numpy/BlurStep/1000000", "real_time": per_iter * 1e6,
                 "time_unit": "us", "iterations": 20, "theta_norm": norm})
    per_iter, norm = retain_projection_case(1_000_000, 8, 10, rebuild=True)
    rows.append({"name": "numpy/RetainProjection/1000000/8", "real_time": per_iter * 1e6,
                 "time_unit": "us", "iterations": 10})
    per_iter, norm = retain_projection_case(1_000_000, 8, 20, rebuild=False)
    rows.append({"name": "numpy/RetainProjectionFixedBasis/1000000/8", "real_time": per_iter * 1e6,
                 "time_unit": "us", "iterations": 20})
    per_iter, value = orthoreg_case(768, 768, 20)
    rows.append({"name": "numpy/OrthoRegGradient/768/768", "real_time": per_iter * 1e6,
                 "time_unit": "us", "iterations": 20, "value": value})
    text = json.dumps({"context": {"numpy": np.__version__}, "benchmarks": rows}, indent=1)
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
