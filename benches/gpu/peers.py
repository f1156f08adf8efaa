"""PyTorch peers of the `engines` bench, on the same device, for the prepared GPU run
(benches/gpu/run.sh): copy (clone), torch.sort (values and int64 indices), torch.fft.rfft,
a dense GEMV (n x n float32 matrix times a vector, while the matrix fits --gemv-max-bytes)
and torch.topk of rows x n (k = n/8). One JSON line per op and size on stdout:
{"bench": "peers", "op", "n", "points", "device", "ms", ...} or {"...", "skipped": why}.

    python3 benches/gpu/peers.py --sizes 2^20,2^24,2^30 --rows 65536 --n 4096

Times are medians of --reps runs after a warm-up, with CUDA events on a GPU (host clock
with no GPU). A size whose estimated memory exceeds the free device memory is skipped with
a message, and so is one that runs out of memory.
"""
import argparse
import json
import sys
import time

import torch


def parse_sizes(s):
    out = []
    for p in s.split(","):
        p = p.strip()
        if not p:
            continue
        if "^" in p:
            b, e = p.split("^")
            out.append(int(b) ** int(e))
        else:
            out.append(int(p))
    return out


def timed(fn, reps, dev):
    """Median milliseconds of fn() over reps runs after one warm-up."""
    fn()
    if dev.type == "cuda":
        torch.cuda.synchronize()
        ts = []
        for _ in range(reps):
            a = torch.cuda.Event(enable_timing=True)
            b = torch.cuda.Event(enable_timing=True)
            a.record()
            fn()
            b.record()
            b.synchronize()
            ts.append(a.elapsed_time(b))
    else:
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append((time.perf_counter() - t0) * 1e3)
    ts.sort()
    return ts[len(ts) // 2]


def free_bytes(dev):
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        return torch.cuda.mem_get_info()[0]
    return None


def emit(rec):
    print(json.dumps(rec), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="2^16,2^20")
    ap.add_argument("--ops", default="copy,sort,rfft,gemv,topk")
    ap.add_argument("--rows", type=int, default=65536)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--gemv-max-bytes", type=float, default=None,
                    help="largest dense matrix of the GEMV, bytes (default 16 GiB on a GPU, 256 MiB on the CPU)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    dev = torch.device(a.device)
    if a.gemv_max_bytes is None:
        a.gemv_max_bytes = 16 * 2**30 if dev.type == "cuda" else 2**28
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    ops = [o.strip() for o in a.ops.split(",") if o.strip()]
    gen = torch.Generator(device=dev).manual_seed(1)
    # Estimated bytes per point, inputs, outputs and workspaces (cub's sort double-buffers).
    per_point = {"copy": 8, "sort": 40, "rfft": 24}
    failed = False
    for op in ops:
        sizes = [a.n] if op == "topk" else parse_sizes(a.sizes)
        for n in sizes:
            points = a.rows * n if op == "topk" else n
            head = {"bench": "peers", "op": op, "n": n, "points": points, "device": name,
                    "torch": torch.__version__}
            if op == "gemv":
                if 4 * n * n > a.gemv_max_bytes:
                    emit({**head, "skipped": f"the {n}x{n} matrix ({4 * n * n / 1e9:.1f} GB) exceeds --gemv-max-bytes"})
                    continue
                need = 4 * n * n + 12 * n
            elif op == "topk":
                need = 20 * points
            else:
                need = per_point[op] * n
            free = free_bytes(dev)
            if free is not None and need > 0.9 * free:
                why = f"needs about {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free"
                print(f"peers: {op} n = {n}: skipped: {why}", file=sys.stderr)
                emit({**head, "skipped": why})
                continue
            try:
                if op == "copy":
                    x = torch.rand(n, device=dev, generator=gen)
                    ms = timed(lambda: x.clone(), a.reps, dev)
                    rec = {"ms": ms, "gbps": 8 * n / (ms * 1e-3) / 1e9}
                elif op == "sort":
                    x = torch.rand(n, device=dev, generator=gen)
                    ms = timed(lambda: torch.sort(x), a.reps, dev)
                    rec = {"ms": ms, "mkeys_per_s": n / (ms * 1e-3) / 1e6}
                elif op == "rfft":
                    x = torch.rand(n, device=dev, generator=gen)
                    ms = timed(lambda: torch.fft.rfft(x), a.reps, dev)
                    rec = {"ms": ms, "ns_per_point": ms * 1e6 / n}
                elif op == "gemv":
                    m = torch.rand(n, n, device=dev, generator=gen)
                    v = torch.rand(n, device=dev, generator=gen)
                    ms = timed(lambda: torch.mv(m, v), a.reps, dev)
                    rec = {"ms": ms, "gbps": 4 * n * n / (ms * 1e-3) / 1e9}
                elif op == "topk":
                    x = torch.randn(a.rows, n, device=dev, generator=gen)
                    k = max(n // 8, 1)
                    ms = timed(lambda: torch.topk(x, k, dim=1), a.reps, dev)
                    rec = {"rows": a.rows, "k": k, "ms": ms}
                else:
                    emit({**head, "error": "unknown op"})
                    failed = True
                    continue
                emit({**head, **rec, "reps": a.reps})
            except torch.cuda.OutOfMemoryError as e:
                emit({**head, "skipped": f"out of memory: {str(e).splitlines()[0]}"})
            finally:
                x = m = v = None  # noqa: F841 (free before the next size)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
