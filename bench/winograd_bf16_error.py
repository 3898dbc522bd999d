#!/usr/bin/env python3
"""How far Winograd with bfloat16 tiles would lie from the mixed_bfloat16
policy's definition (input and kernel rounded to bfloat16, products summed
exactly), for F(4x4, 3x3) and F(2x2, 3x3) on random ReLU'd inputs over 256
input channels: the evidence behind `dispatch::winograd_keeps_bf16`.

    ~/.cache/strata-bench-venv/bin/python bench/winograd_bf16_error.py

Needs numpy only. Prints the relative (Frobenius) error of each variant
against the policy, and the policy's own error against float32 inputs.
"""
import numpy as np


def bf16(a):
    """Round to nearest even bfloat16, returned as float32."""
    b = np.asarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    return r.view(np.float32)


# Lavin and Gray's F(4, 3) (points 0, 1, -1, 2, -2) and F(2, 3)
F4 = (
    np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
              [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], float),
    np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
              [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], float),
    np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
              [0, 1, -1, 8, -8, 1]], float),
)
F2 = (
    np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float),
    np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], float),
    np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float),
)


def direct(d, g, m):
    y = np.zeros((d.shape[0], g.shape[0], m, m))
    for a in range(3):
        for b in range(3):
            y += np.einsum("tcij,kc->tkij", d[:, :, a:a + m, b:b + m], g[:, :, a, b])
    return y


def main(tiles=200, cin=256, cout=64):
    rng = np.random.default_rng(0)
    rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)
    for name, (bt, gm, at) in [("F(4x4, 3x3)", F4), ("F(2x2, 3x3)", F2)]:
        t = bt.shape[0]
        m = t - 2
        d = np.maximum(rng.standard_normal((tiles, cin, t, t)), 0).astype(np.float32)
        g = (rng.standard_normal((cout, cin, 3, 3)) * 0.05).astype(np.float32)
        dr, gr = bf16(d).astype(np.float64), bf16(g).astype(np.float64)
        policy = direct(dr, gr, m)
        exact = direct(d.astype(np.float64), g.astype(np.float64), m)
        v = np.einsum("ab,tcbd,ed->tcae", bt, dr, bt)
        u = np.einsum("ab,kcbd,ed->kcae", gm, gr, gm)
        vr = bf16(v.astype(np.float32)).astype(np.float64)
        ur = bf16(u.astype(np.float32)).astype(np.float64)
        mm = np.einsum("tcae,kcae->tkae", vr, ur)
        y = np.einsum("ab,tkbd,ed->tkae", at, mm, at)
        print(f"{name}: bfloat16 tiles vs the policy {rel(y, policy):.2e}; "
              f"the policy vs float32 {rel(policy, exact):.2e}")


if __name__ == "__main__":
    main()
