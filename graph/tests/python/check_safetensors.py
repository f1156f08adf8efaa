"""Loads a lapis checkpoint with the Python safetensors package and compares it bit for bit.

Usage: check_safetensors.py CHECKPOINT EXPECTED_JSON

EXPECTED_JSON maps each tensor name to {"dtype": "F32"|"F16"|"U32", "shape": [...],
"bits": [...]} (the raw bit patterns, as unsigned integers); an optional "__metadata__"
entry is the header's expected metadata map (compared with `safe_open(..).metadata()`).
The file is loaded with
`safetensors.numpy.load_file` and, when PyTorch is installed, with
`safetensors.torch.load_file` as well. Exit status 0: identical; 1: a difference (printed);
3: the safetensors package is missing.
"""
import json
import sys

try:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file as load_numpy
except ImportError as e:  # pragma: no cover
    print(f"python safetensors/numpy not available: {e}")
    sys.exit(3)

BITS = {"F32": np.uint32, "F16": np.uint16, "U32": np.uint32}


def main() -> int:
    path, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path) as f:
        expected = json.load(f)
    bad = []
    want_meta = expected.pop("__metadata__", None)
    if want_meta is not None:
        with safe_open(path, framework="np") as f:
            got_meta = f.metadata()
        if got_meta != want_meta:
            bad.append(f"metadata: {got_meta} vs {want_meta}")
        print(f"metadata: {len(got_meta or {})} entries checked")
    arrays = load_numpy(path)
    if set(arrays) != set(expected):
        bad.append(f"names: {sorted(arrays)} vs {sorted(expected)}")
    for name, want in expected.items():
        a = arrays.get(name)
        if a is None:
            continue
        if list(a.shape) != want["shape"]:
            bad.append(f"{name}: shape {list(a.shape)} vs {want['shape']}")
            continue
        got = a.view(BITS[want["dtype"]]).reshape(-1).tolist()
        if got != want["bits"]:
            bad.append(f"{name}: numpy bits differ")
    print(f"numpy: {len(arrays)} tensors checked")
    try:
        import torch
        from safetensors.torch import load_file as load_torch
    except ImportError:
        print("torch not installed: numpy check only")
    else:
        tensors = load_torch(path)
        tdt = {"F32": torch.float32, "F16": torch.float16, "U32": getattr(torch, "uint32", None)}
        for name, want in expected.items():
            t = tensors[name]
            if t.dtype != tdt[want["dtype"]]:
                bad.append(f"{name}: torch dtype {t.dtype}")
                continue
            if list(t.shape) != want["shape"]:
                bad.append(f"{name}: torch shape {list(t.shape)}")
                continue
            if want["dtype"] == "U32":
                got = [int(v) & 0xFFFFFFFF for v in t.to(torch.int64).reshape(-1).tolist()]
            elif want["dtype"] == "F16":
                got = t.view(torch.int16).reshape(-1).tolist()
                got = [v & 0xFFFF for v in got]
            else:
                got = [v & 0xFFFFFFFF for v in t.view(torch.int32).reshape(-1).tolist()]
            if got != want["bits"]:
                bad.append(f"{name}: torch bits differ")
        print(f"torch {torch.__version__}: {len(tensors)} tensors checked")
    for b in bad:
        print("MISMATCH", b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
