"""Summary tables of a prepared GPU run (benches/gpu/run.sh): reads the JSON lines it wrote
into one directory (tests.jsonl, engines.jsonl, peers.jsonl, lapsum.jsonl, stages.jsonl)
and prints Markdown tables. Standard library only.

    python3 benches/gpu/summary.py OUT_DIR
"""
import json
import os
import sys


def load(d, name):
    path = os.path.join(d, name)
    out = []
    if not os.path.exists(path):
        return out
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return out


def size(n):
    if n and n & (n - 1) == 0:
        return f"2^{n.bit_length() - 1}"
    return str(n)


def f(x, digits=3):
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, (int, float)):
        if x == 0:
            return "0"
        if abs(x) >= 1000 or abs(x) < 1e-2:
            return f"{x:.2e}"
        return f"{x:.{digits}g}"
    return str(x)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def cell(c):
    return (c if isinstance(c, str) else f(c)).replace("|", "\\|")


def table(head, rows):
    print("| " + " | ".join(head) + " |")
    print("| " + " | ".join("---" for _ in head) + " |")
    for r in rows:
        print("| " + " | ".join(cell(c) for c in r) + " |")
    print()


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "."
    stages = load(d, "stages.jsonl")
    tests = load(d, "tests.jsonl")
    eng = load(d, "engines.jsonl")
    peers = load(d, "peers.jsonl")
    lapsum = load(d, "lapsum.jsonl")
    print("## Summary of the prepared GPU run\n")
    devs = sorted({r.get("device") for r in eng + peers if r.get("device")})
    if devs:
        print("Devices: " + "; ".join(f"`{x}`" for x in devs) + "\n")
    if stages:
        table(["stage", "status", "seconds", "note"],
              [[s.get("stage"), s.get("status"), s.get("seconds"), s.get("note", "")] for s in stages])
    if tests:
        print("### Tests\n")
        table(["test binary", "result", "passed", "failed", "ignored", "seconds"],
              [[t.get("binary"), t.get("status"), t.get("passed"), t.get("failed"),
                t.get("ignored"), t.get("seconds")] for t in tests])
    if eng:
        print("### lapis engines (`engines` bin)\n")
        rows = []
        checks = {}
        for r in eng:
            op, n = r.get("op"), r.get("n")
            label = size(n) if op != "softtopk" else f"{r.get('rows', '?')} × {size(n)}"
            if "skipped" in r or "error" in r:
                rows.append([op, label, "—", "—", r.get("skipped") or ("ERROR: " + r["error"]), "—", "—"])
                continue
            if op == "laplace":
                ms = r.get("ms_with_sort")
                rate = f"sorted {f(r.get('ms_sorted'))} ms, {f(r.get('ns_per_point'))} ns/pt"
            elif op == "lcm":
                ms = r.get("ms")
                rate = (f"factor {f(r.get('ms_factor'))} + logdet {f(r.get('ms_logdet'))}"
                        f" + solve {f(r.get('ms_solve'))} ms")
            elif op == "softtopk":
                ms = r.get("ms_soft_topk")
                rate = f"bwd {f(r.get('ms_backward'))} ms, hard {f(r.get('ms_hard_topk'))} ms"
            elif op in ("copy",):
                ms = r.get("ms")
                rate = f"{f(r.get('gbps'))} GB/s"
            elif op == "argsort":
                ms = r.get("ms")
                rate = f"{f(r.get('mkeys_per_s'))} Mkeys/s"
            else:
                ms = r.get("ms")
                rate = f"{f(r.get('ns_per_point'))} ns/pt"
            checks.setdefault(op, r.get("check", ""))
            rows.append([op, label, ms, rate, r.get("check_value"), r.get("ok"), r.get("peak_bytes_per_point")])
        table(["op", "n", "ms", "detail", "check", "ok", "peak B/pt"], rows)
        print("Checks: " + "; ".join(f"{op}: {c}" for op, c in checks.items()).replace("|", "\\|") + ".\n")
    # lapis vs torch at the same n.
    by = {}
    for r in eng + peers:
        if "skipped" in r or "error" in r:
            continue
        by[(r.get("bench"), r.get("op"), r.get("n"))] = r

    def g(bench, op, n, key="ms"):
        r = by.get((bench, op, n))
        return None if r is None else r.get(key)

    ns = sorted({r.get("n") for r in eng if r.get("op") not in ("softtopk",) and r.get("n")})
    if peers and ns:
        print("### lapis ÷ PyTorch, same device and n (below 1: lapis faster)\n")
        rows = []
        for n in ns:
            lap = g("engines", "laplace", n, "ms_with_sort")
            rows.append([
                size(n),
                ratio(g("engines", "copy", n), g("peers", "copy", n)),
                ratio(g("engines", "argsort", n), g("peers", "sort", n)),
                ratio(g("engines", "rfft", n), g("peers", "rfft", n)),
                ratio(lap, g("peers", "sort", n)),
                ratio(lap, g("peers", "rfft", n)),
                ratio(lap, g("peers", "gemv", n)),
                g("peers", "gemv", n),
            ])
        table(["n", "copy ÷ clone", "argsort ÷ torch.sort", "rfft ÷ torch rfft",
               "laplace ÷ torch.sort(n)", "laplace ÷ torch rfft(n)", "laplace ÷ torch GEMV(n)",
               "torch GEMV ms"], rows)
    st = [r for r in eng if r.get("op") == "softtopk" and "ms_soft_topk" in r]
    if st or lapsum:
        print("### Soft top-k, rows × n (k = n/8, α = 0.5)\n")
        rows = []
        for r in st:
            peer = next((p for p in lapsum if p.get("n") == r.get("n") and p.get("rows") == r.get("rows")), None)
            tk = next((p for p in peers if p.get("op") == "topk" and p.get("n") == r.get("n")
                       and p.get("rows") == r.get("rows") and "ms" in p), None)
            rows.append([f"{r.get('rows')} × {size(r.get('n'))}", r.get("ms_soft_topk"), r.get("ms_backward"),
                         r.get("ms_hard_topk"),
                         None if peer is None else peer.get("ms_soft_topk"),
                         None if peer is None else peer.get("ms_backward"),
                         None if tk is None else tk.get("ms"),
                         ratio(r.get("ms_soft_topk"), None if peer is None else peer.get("ms_soft_topk")),
                         ratio(r.get("ms_soft_topk"), None if tk is None else tk.get("ms"))])
        for p in lapsum:
            if not any(p.get("n") == r.get("n") and p.get("rows") == r.get("rows") for r in st) and "ms_soft_topk" in p:
                rows.append([f"{p.get('rows')} × {size(p.get('n'))}", None, None, None, p.get("ms_soft_topk"),
                             p.get("ms_backward"), p.get("ms_hard_topk"), None, None])
        table(["rows × n", "lapis soft ms", "lapis bwd ms", "lapis hard ms", "torch LapSum ms",
               "torch LapSum bwd ms", "torch.topk ms", "lapis ÷ torch LapSum", "lapis soft ÷ torch.topk"], rows)
    bad = [r for r in eng if r.get("ok") is False or "error" in r]
    bad += [t for t in tests if t.get("status") not in ("ok",)]
    print(f"Failures: {len(bad)}" + ("" if not bad else " — " + ", ".join(
        str(b.get("binary") or f"{b.get('op')} n={b.get('n')}") for b in bad)))


if __name__ == "__main__":
    main()
