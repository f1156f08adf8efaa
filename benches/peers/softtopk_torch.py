"""PyTorch peer of lapis's soft top-k, written from specs/softtopk-engine.md (not from any
other implementation): the same closed-form threshold after one sort, the same backward,
timed on the same GPU as `lapis bench softtopk` for the ratio in benches/RESULTS.md.

    python benches/peers/softtopk_torch.py --rows 256 --n 256 4096 65536
    python benches/peers/softtopk_torch.py --check      # float64 self-check on the CPU

Prints one JSON line per size: {"op", "rows", "n", "device", "ms_soft_topk", "ms_backward",
"ms_hard_topk"} (medians of --reps runs after a warm-up, CUDA-synchronised).
"""
import argparse
import json
import time

import torch


def laplace_cdf(z):
    e = 0.5 * torch.exp(-z.abs())
    return torch.where(z <= 0, e, 1.0 - e)


def soft_topk(x, k, alpha):
    """x [B, n] float32, k and alpha [B, 1]. Returns (p, b)."""
    n = x.shape[1]
    o, _ = torch.sort(x, dim=1)
    inv = 1.0 / alpha
    # Scaled prefix/suffix sums: P_j = dp_j P_{j-1} + 1, Q_j = dq_j Q_{j+1} + 1 (factors <= 1).
    # Written as a cumulative log-sum-exp, which torch has; equal to the spec's recursion.
    z = o * inv
    p_sum = torch.exp(torch.logcumsumexp(z, dim=1) - z)
    q_sum = torch.exp(torch.logcumsumexp(-z.flip(1), dim=1).flip(1) + z)
    dq = torch.exp(torch.cat([(o[:, :-1] - o[:, 1:]) * inv, torch.full_like(o[:, :1], -float("inf"))], 1))
    q_next = torch.cat([q_sum[:, 1:], torch.zeros_like(q_sum[:, :1])], 1)
    j = torch.arange(n, device=x.device, dtype=x.dtype)
    s = 0.5 * p_sum + (n - 1 - j) - 0.5 * dq * q_next
    cnt = (s >= k).sum(1, keepdim=True)
    jl = (cnt - 1).clamp(0, n - 1)
    jr = (cnt).clamp(0, n - 1)
    g = lambda t, i: torch.gather(t, 1, i)
    b_lo = g(o, jr) + alpha * torch.log(2.0 * (n - k) / g(q_sum, jr))
    b_hi = g(o, jl) - alpha * torch.log(2.0 * k / g(p_sum, jl))
    pj, qn, d = g(p_sum, jl), g(q_next, jl), g(dq, jl)
    ln_d = (g(o, jl) - g(o, jr)) * inv
    m = (n - 1 - jl).to(x.dtype) - k
    root = torch.sqrt(m * m + qn * d * pj)
    w_pos = torch.maximum(torch.log(m + root) - torch.log(qn), ln_d).clamp(max=0.0)
    b_pos = g(o, jr) + alpha * w_pos
    den = root - m
    lnv = torch.where(den > 0, torch.log(pj / den), 0.5 * (torch.log(pj) - torch.log(qn) - ln_d))
    b_neg = g(o, jl) + alpha * torch.minimum(lnv.clamp(min=0.0), -ln_d)
    b_mid = torch.where(m > 0, b_pos, b_neg)
    b = torch.where(cnt == 0, b_lo, torch.where(cnt >= n, b_hi, b_mid))
    return laplace_cdf((x - b) / alpha), b


def soft_topk_backward(x, b, alpha, gout):
    z = (x - b) / alpha
    az = z.abs()
    zmin = az.min(1, keepdim=True).values
    ft = torch.exp(zmin - az)
    fsum = ft.sum(1, keepdim=True)
    gf = (gout * ft).sum(1, keepdim=True)
    gbar = gf / fsum
    dx = 0.5 * torch.exp(-az) / alpha * (gout - gbar)
    da = 0.5 * torch.exp(-zmin) / alpha * (gf * (ft * z).sum(1, keepdim=True) / fsum - (gout * ft * z).sum(1, keepdim=True))
    return dx, gbar, da


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, reps, dev):
    fn()
    sync(dev)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(dev)
        ts.append((time.perf_counter() - t0) * 1e3)
    return sorted(ts)[len(ts) // 2]


def self_check():
    """Checks this peer in float64 on the CPU: sum p = k per row, and the hand-written
    backward (x, k, alpha) against torch.autograd through the closed-form forward (the
    closed form solves sum p = k exactly, so its derivative is the implicit one)."""
    torch.manual_seed(3)
    worst = 0.0
    for rows, n in [(3, 7), (4, 64), (2, 1000)]:
        x = torch.randn(rows, n, dtype=torch.float64, requires_grad=True)
        k = (torch.rand(rows, 1, dtype=torch.float64) * (n - 1) + 0.5).requires_grad_(True)
        alpha = (torch.rand(rows, 1, dtype=torch.float64) + 0.2).requires_grad_(True)
        p, b = soft_topk(x, k, alpha)
        assert torch.allclose(p.sum(1, keepdim=True), k, atol=1e-9 * n), "sum p != k"
        gout = torch.randn_like(p)
        gx, gk, ga = torch.autograd.grad((p * gout).sum(), (x, k, alpha))
        dx, dk, da = soft_topk_backward(x.detach(), b.detach(), alpha.detach(), gout)
        for name, got, want in [("x", dx, gx), ("k", dk, gk), ("alpha", da, ga)]:
            err = ((got - want).abs().max() / want.abs().max().clamp(min=1e-300)).item()
            worst = max(worst, err)
            assert err < 1e-8, f"{name}: relative error {err} at rows={rows} n={n}"
    print(json.dumps({"op": "soft_topk_torch_self_check", "ok": True, "worst_rel_err": worst}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--n", type=int, nargs="+", default=[256, 4096])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    ap.add_argument("--check", action="store_true", help="self-check in float64 on the CPU, then exit")
    a = ap.parse_args()
    if a.check:
        self_check()
        return
    dev = torch.device(a.device)
    for n in a.n:
        gen = torch.Generator(device=dev).manual_seed(1)
        x = torch.randn(a.rows, n, device=dev, generator=gen)
        gout = torch.randn(a.rows, n, device=dev, generator=gen)
        k = torch.full((a.rows, 1), max(n // 8, 1) * 1.0, device=dev).clamp(0.5, n - 0.5)
        alpha = torch.full((a.rows, 1), 0.5, device=dev)
        p, b = soft_topk(x, k, alpha)
        assert torch.allclose(p.sum(1, keepdim=True), k, atol=1e-4 * n), "sum p != k"
        kk = max(n // 8, 1)
        print(json.dumps({
            "op": "soft_topk_torch", "rows": a.rows, "n": n, "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
            "ms_soft_topk": timed(lambda: soft_topk(x, k, alpha), a.reps, dev),
            "ms_backward": timed(lambda: soft_topk_backward(x, b, alpha, gout), a.reps, dev),
            "ms_hard_topk": timed(lambda: torch.topk(x, kk, dim=1), a.reps, dev),
        }))


if __name__ == "__main__":
    main()
