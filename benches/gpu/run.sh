#!/usr/bin/env bash
# The prepared GPU run: on a machine with an NVIDIA GPU, CUDA 13 and PyTorch but no Rust
# toolchain, from the repository root, with the pack of benches/gpu/build.sh:
#   1. tests:   the packed test executables under LAPIS_DEVICE (cuda by default);
#   2. engines: the `engines` bin, one process per op (copy, argsort, laplace with and
#               without sort, lcm log-det + solve, rfft, soft top-k rows x 4096), sizes
#               2^(E-18), 2^(E-16), ..., 2^E for --max-size 2^E (from 2^8 or 2^9 up);
#   3. peers:   PyTorch on the same device (benches/gpu/peers.py: clone, torch.sort,
#               torch.fft.rfft, dense GEMV while it fits, torch.topk; then the LapSum peer
#               benches/peers/softtopk_torch.py), skipped with a message without torch;
# then a summary table (benches/gpu/summary.py). Every stage has a timeout; the defaults
# fit 8 minutes. Everything is written as JSON lines into the output directory (at most 8
# files, what the device tool brings back).
#
#   benches/gpu/run.sh [OUT_DIR] [options]
#
# Options (and environment):
#   --out DIR          output directory (default $OUT, else runs/gpu)
#   --pack DIR         the pack (LAPIS_GPU_PACK; default benches/gpu/pack, else pack-wgpu)
#   --max-size N       largest size, e.g. 2^30 (LAPIS_GPU_MAX_SIZE; default 2^30 on cuda,
#                      2^20 on wgpu)
#   --budget S         seconds for the whole run (LAPIS_GPU_BUDGET_S; default 460): tests
#                      50 %, engines 30 %, peers 20 %; time a stage leaves goes to the next
#   --stages LIST      comma-separated subset of tests,engines,peers (default all)
#   --skip-tests       same as --stages engines,peers
#   --tests LIST       test executables to run, e.g. tests/ops,graph/gradcheck (default all packed)
#   --test-filter STR  passed to each test executable as its name filter
#   --reps N           timed repetitions per bench size (default 3)
#   LAPIS_DEVICE       cuda (default) or wgpu (the dry run on lavapipe)
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
START=$(date +%s)

export LAPIS_DEVICE="${LAPIS_DEVICE:-cuda}"
OUTDIR="${OUT:-}"
PACK="${LAPIS_GPU_PACK:-}"
MAX_SIZE="${LAPIS_GPU_MAX_SIZE:-}"
BUDGET="${LAPIS_GPU_BUDGET_S:-460}"
STAGES="tests,engines,peers"
TESTS=""
FILTER=""
REPS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUTDIR="$2"; shift ;;
    --pack) PACK="$2"; shift ;;
    --max-size) MAX_SIZE="$2"; shift ;;
    --budget) BUDGET="$2"; shift ;;
    --stages) STAGES="$2"; shift ;;
    --skip-tests) STAGES="engines,peers" ;;
    --tests) TESTS="$2"; shift ;;
    --test-filter) FILTER="$2"; shift ;;
    --reps) REPS="$2"; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) OUTDIR="$1" ;;
  esac
  shift
done
OUTDIR="${OUTDIR:-$REPO/runs/gpu}"
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
if [ -z "$PACK" ]; then
  if [ "$LAPIS_DEVICE" = cuda ] || [ ! -d benches/gpu/pack-wgpu ]; then PACK=benches/gpu/pack; else PACK=benches/gpu/pack-wgpu; fi
fi
case "$PACK" in /*) ;; *) PACK="$REPO/$PACK" ;; esac
if [ -z "$MAX_SIZE" ]; then
  if [ "$LAPIS_DEVICE" = cuda ]; then MAX_SIZE='2^30'; else MAX_SIZE='2^20'; fi
fi

# The (at most 8) files of the output directory.
LOG="$OUTDIR/run.log"
: >"$LOG"
for f in stages tests engines peers lapsum; do : >"$OUTDIR/$f.jsonl"; done
: >"$OUTDIR/tests.log"
exec > >(tee -a "$LOG") 2>&1

say() { echo "run.sh [$(($(date +%s) - START))s] $*"; }
stage_rec() { # stage status seconds note
  python3 -c 'import json,sys; print(json.dumps({"stage": sys.argv[1], "status": sys.argv[2], "seconds": int(sys.argv[3]), "note": sys.argv[4]}))' \
    "$1" "$2" "$3" "$4" >>"$OUTDIR/stages.jsonl"
}
# Seconds for a stage: what is left of the budget (less 15 s for the summary) less the shares
# of the stages after it (percent of the budget), so that time a stage leaves unused goes to
# the next one.
share() { # percent reserved for the later stages
  local left=$((BUDGET - ($(date +%s) - START) - 15))
  local want=$((left - BUDGET * $1 / 100))
  [ "$want" -lt 0 ] && want=0
  echo "$want"
}
has_stage() { case ",$STAGES," in *",$1,"*) return 0 ;; esac; return 1; }
pow_exp() { # "2^30" -> 30, 1073741824 -> 30
  case "$1" in
    *^*) echo "${1#*^}" ;;
    *) python3 -c "import sys; n=int(sys.argv[1]); print(n.bit_length()-1)" "$1" ;;
  esac
}

say "repo $REPO, device $LAPIS_DEVICE, pack $PACK, max size $MAX_SIZE, budget ${BUDGET}s, stages $STAGES, out $OUTDIR"

# ---- the pack --------------------------------------------------------------------------
if [ ! -f "$PACK/MANIFEST.tsv" ] || [ ! -f "$PACK/bin.tar.xz" ]; then
  say "ERROR: no pack at $PACK (build it with benches/gpu/build.sh and carry it)"
  stage_rec pack failed 0 "no pack at $PACK"
  python3 benches/gpu/summary.py "$OUTDIR" | tee "$OUTDIR/summary.md"
  exit 1
fi
BIN="${TMPDIR:-/tmp}/lapis-gpu-bin"
rm -rf "$BIN"
mkdir -p "$BIN"
t0=$(date +%s)
if command -v xz >/dev/null; then
  xz -dc "$PACK/bin.tar.xz" | tar -xf - -C "$BIN"
else
  python3 -c 'import lzma,sys,tarfile; tarfile.open(fileobj=lzma.open(sys.argv[1])).extractall(sys.argv[2])' "$PACK/bin.tar.xz" "$BIN"
fi
if [ $? -ne 0 ] || [ ! -x "$BIN/engines" ]; then
  say "ERROR: could not unpack $PACK/bin.tar.xz"
  stage_rec pack failed $(($(date +%s) - t0)) "unpacking failed"
  python3 benches/gpu/summary.py "$OUTDIR" | tee "$OUTDIR/summary.md"
  exit 1
fi
sed 's/^/  pack: /' "$PACK/BUILD_INFO"
BUILD_ROOT=$(sed -n 's/^build_root=//p' "$PACK/BUILD_INFO")
TARGET_DIR=$(sed -n 's/^target_dir=//p' "$PACK/BUILD_INFO")
# Test executables carry the build machine's paths (CARGO_MANIFEST_DIR, CARGO_BIN_EXE_*):
# make them point here.
if [ -n "$BUILD_ROOT" ] && [ "$BUILD_ROOT" != "$REPO" ] && [ ! -e "$BUILD_ROOT" ]; then
  if mkdir -p "$(dirname "$BUILD_ROOT")" 2>/dev/null && ln -s "$REPO" "$BUILD_ROOT" 2>/dev/null; then
    say "linked $BUILD_ROOT -> $REPO (paths compiled into the tests)"
  else
    say "note: cannot link $BUILD_ROOT here; tests that read files by compiled-in paths may fail"
  fi
fi
if [ -n "$TARGET_DIR" ]; then
  local_target="$REPO/${TARGET_DIR#"$BUILD_ROOT"/}"
  if [ "$(cd "$BUILD_ROOT" 2>/dev/null && pwd -P)" = "$(pwd -P)" ]; then
    mkdir -p "$local_target/release" 2>/dev/null
    while IFS=$'\t' read -r kind label _ id; do
      [ "$kind" = bin ] || continue
      [ -e "$local_target/release/$label" ] || ln -s "$BIN/$id" "$local_target/release/$label" 2>/dev/null
    done <"$PACK/MANIFEST.tsv"
  fi
fi
stage_rec pack ok $(($(date +%s) - t0)) "$(wc -l <"$PACK/MANIFEST.tsv") executables unpacked"

# ---- device libraries ------------------------------------------------------------------
if [ "$LAPIS_DEVICE" = cuda ]; then
  libdirs=()
  cands=(/usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu /usr/lib64
    /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib)
  for d in /usr/local/cuda-13*/lib64 /usr/local/cuda-13*/targets/x86_64-linux/lib; do cands+=("$d"); done
  site=$(python3 -c 'import site,sys; print("\n".join(site.getsitepackages()+[site.getusersitepackages()]))' 2>/dev/null)
  for s in $site; do
    for d in "$s"/nvidia/cu13/lib "$s"/nvidia/*/lib "$s"/nvidia/cuda_nvrtc/lib; do cands+=("$d"); done
  done
  shim="${TMPDIR:-/tmp}/lapis-gpu-libs"
  mkdir -p "$shim"
  for lib in nvrtc cuda; do
    found=""
    for d in "${cands[@]}"; do
      [ -d "$d" ] || continue
      for f in "$d/lib$lib.so" "$d/lib$lib.so.13" "$d/lib$lib.so.1"; do
        if [ -e "$f" ]; then found="$d"; break 2; fi
      done
    done
    if [ -z "$found" ]; then # only a fully versioned name: give cudarc one it looks for
      for d in "${cands[@]}"; do
        f=$(ls "$d"/lib$lib.so.* 2>/dev/null | head -1)
        if [ -n "$f" ]; then ln -sf "$f" "$shim/lib$lib.so"; found="$shim ($f)"; libdirs+=("$shim" "$d"); break; fi
      done
    else
      libdirs+=("$found")
    fi
    say "lib$lib: ${found:-NOT FOUND (set LD_LIBRARY_PATH)}"
  done
  for d in "${libdirs[@]}"; do
    case ":${LD_LIBRARY_PATH:-}:" in *":$d:"*) ;; *) LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" ;; esac
  done
  export LD_LIBRARY_PATH
  # CubeCL compiles kernels with NVRTC and the toolkit's headers (CUDA_PATH/include).
  if [ -z "${CUDA_PATH:-}" ] && [ ! -d /usr/local/cuda/include ]; then
    for c in /usr/local/cuda-13* /opt/cuda "$(dirname "$(dirname "$(command -v nvcc 2>/dev/null || echo /x/x/x)")")"; do
      if [ -f "$c/include/cuda.h" ] || [ -f "$c/include/cuda_runtime.h" ]; then export CUDA_PATH="$c"; break; fi
    done
    if [ -z "${CUDA_PATH:-}" ]; then
      for s in $site; do
        if [ -f "$s/nvidia/cu13/include/cuda_runtime.h" ]; then export CUDA_PATH="$s/nvidia/cu13"; break; fi
      done
    fi
  fi
  say "CUDA_PATH=${CUDA_PATH:-/usr/local/cuda (default)} LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version,clocks.sm,clocks.mem --format=csv 2>&1 | sed 's/^/  nvidia-smi: /'
  fi
fi
timeout -k 5 30 "$BIN/lapis" info 2>&1 | sed 's/^/  lapis info: /'

# Memory the benches may use: 92 % of the GPU's free memory.
MEM_BYTES=0
if [ "$LAPIS_DEVICE" = cuda ] && command -v nvidia-smi >/dev/null; then
  free_mib=$(nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -dc 0-9)
  [ -n "$free_mib" ] && MEM_BYTES=$((free_mib * 1048576 / 100 * 92))
fi
E=$(pow_exp "$MAX_SIZE")
SIZES=""
e0=$((E - 18))
[ "$e0" -lt 8 ] && e0=$((E >= 8 ? 8 + E % 2 : E)) # same parity as E: E itself is run
for ((e = e0; e <= E; e += 2)); do
  SIZES="${SIZES:+$SIZES,}2^$e"
done
ROWS=$(python3 -c "import sys; print(max(1, min(65536, 2**int(sys.argv[1]) // 4096)))" "$E")
say "sizes $SIZES; soft top-k $ROWS x 4096; memory for the benches ${MEM_BYTES} bytes (0: not checked)"

# Shares of the budget (percent): tests 50, engines 30, peers 20 (of the stages that run).
has_engines=0
has_peers=0
has_stage engines && has_engines=30
has_stage peers && has_peers=20

# ---- 1. tests ------------------------------------------------------------------------------
if has_stage tests; then
  T_STAGE=$(share $((has_engines + has_peers)))
  t0=$(date +%s)
  n_ok=0
  n_bad=0
  say "stage tests: ${T_STAGE}s"
  # The op tests first (what a new device breaks), then the graph, the models, the example.
  awk -F'\t' '$1 == "test" {
      p = 5; n = $3 "/" $2
      if (n == "tests/ops") p = 0; else if ($3 == "tests") p = 1; else if ($3 == "ops") p = 2;
      else if (n == "graph/gradcheck") p = 3; else if ($3 == "graph") p = 4
      print p "\t" $0 }' "$PACK/MANIFEST.tsv" | sort -s -t$'\t' -k1,1n | cut -f2- >"$BIN/tests.tsv"
  if [ -n "$TESTS" ]; then
    awk -F'\t' -v want=",$TESTS," 'index(want, "," $3 "/" $2 ",") > 0' "$BIN/tests.tsv" >"$BIN/tests.sel"
    mv "$BIN/tests.sel" "$BIN/tests.tsv"
  fi
  n_todo=$(wc -l <"$BIN/tests.tsv")
  while IFS=$'\t' read -r kind label pkg_dir id; do
    name="$pkg_dir/$label"
    n_todo=$((n_todo - 1))
    left=$((T_STAGE - ($(date +%s) - t0)))
    # Leave 4 s for each executable after this one.
    cap=$((left - 4 * n_todo))
    [ "$cap" -lt 10 ] && cap=$((left < 10 ? left : 10))
    if [ "$left" -le 5 ]; then
      say "  $name: not run (the tests' ${T_STAGE}s are spent)"
      python3 -c 'import json,sys; print(json.dumps({"binary": sys.argv[1], "status": "not run", "note": "stage budget spent"}))' "$name" >>"$OUTDIR/tests.jsonl"
      n_bad=$((n_bad + 1))
      continue
    fi
    tb=$(date +%s)
    echo "===== $name ($LAPIS_DEVICE) =====" >>"$OUTDIR/tests.log"
    # shellcheck disable=SC2086
    (cd "$REPO/$pkg_dir" && timeout -k 5 "$cap" "$BIN/$id" ${FILTER:+"$FILTER"}) >"$BIN/t.log" 2>&1
    rc=$?
    secs=$(($(date +%s) - tb))
    cat "$BIN/t.log" >>"$OUTDIR/tests.log"
    res=$(grep -E '^test result:' "$BIN/t.log" | tail -1)
    passed=$(echo "$res" | sed -n 's/.* \([0-9]*\) passed.*/\1/p')
    failed=$(echo "$res" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    ignored=$(echo "$res" | sed -n 's/.* \([0-9]*\) ignored.*/\1/p')
    if [ "$rc" -eq 0 ]; then status=ok; elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then status="timeout (${cap}s)"; else status="FAILED (rc $rc)"; fi
    [ "$rc" -eq 0 ] && n_ok=$((n_ok + 1)) || n_bad=$((n_bad + 1))
    fails=$(grep -E '^test .* FAILED$' "$BIN/t.log" | sed 's/^test //; s/ \.\.\. FAILED$//' | head -20 | tr '\n' ' ')
    say "  $name: $status, ${passed:-?} passed, ${failed:-?} failed, ${ignored:-?} ignored, ${secs}s${fails:+ — failed: $fails}"
    python3 -c 'import json,sys; a=sys.argv; n=lambda s: int(s) if s.isdigit() else None; print(json.dumps({"binary": a[1], "status": a[2], "passed": n(a[3]), "failed": n(a[4]), "ignored": n(a[5]), "seconds": int(a[6]), "device": a[7], "failures": a[8].split()}))' \
      "$name" "$status" "$passed" "$failed" "$ignored" "$secs" "$LAPIS_DEVICE" "$fails" >>"$OUTDIR/tests.jsonl"
  done <"$BIN/tests.tsv"
  stage_rec tests "$([ $n_bad -eq 0 ] && echo ok || echo failed)" $(($(date +%s) - t0)) "$n_ok ok, $n_bad not ok${FILTER:+, filter '$FILTER'}"
fi

# ---- 2. engines ----------------------------------------------------------------------------
if has_stage engines; then
  T_STAGE=$(share $has_peers)
  t0=$(date +%s)
  say "stage engines: ${T_STAGE}s"
  bad=0
  # Share of the stage per op (percent), one process each: a crash or timeout costs one op.
  # Time an op leaves unused goes to the next.
  rest=100
  for spec in copy:10 argsort:14 laplace:22 lcm:22 rfft:12 softtopk:20; do
    op=${spec%%:*}
    rest=$((rest - ${spec#*:}))
    left=$((T_STAGE - ($(date +%s) - t0)))
    t_op=$((left - T_STAGE * rest / 100))
    if [ "$t_op" -le 3 ]; then
      say "  $op: not run (the stage's time is spent)"
      bad=1
      continue
    fi
    tb=$(date +%s)
    timeout -k 5 "$t_op" "$BIN/engines" --ops "$op" --sizes "$SIZES" --rows "$ROWS" --n 4096 \
      --reps "$REPS" --mem-bytes "$MEM_BYTES" >>"$OUTDIR/engines.jsonl"
    rc=$?
    [ "$rc" -eq 0 ] || bad=1
    last=$(grep "\"op\":\"$op\"" "$OUTDIR/engines.jsonl" | tail -1 | python3 -c 'import json,sys; t=sys.stdin.read().strip(); r=json.loads(t) if t else {}; print("none (no output)" if not r else "%s %s" % (r.get("n"), "skipped" if "skipped" in r else ("error" if "error" in r else ("ok" if r.get("ok") else "CHECK FAILED"))))' 2>/dev/null)
    say "  $op: rc $rc in $(($(date +%s) - tb))s (limit ${t_op}s); last size: $last"
  done
  stage_rec engines "$([ $bad -eq 0 ] && echo ok || echo failed)" $(($(date +%s) - t0)) "sizes $SIZES"
fi

# ---- 3. PyTorch peers ----------------------------------------------------------------------
if has_stage peers; then
  T_STAGE=$(share 0)
  t0=$(date +%s)
  say "stage peers: ${T_STAGE}s"
  if ! python3 -c "import torch" 2>/dev/null; then
    say "  SKIPPED: python3 cannot import torch (no PyTorch here)"
    stage_rec peers skipped 0 "python3 -c 'import torch' failed"
  else
    tdev=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
    if [ "$LAPIS_DEVICE" = cuda ] && [ "$tdev" != cuda ]; then say "  note: torch sees no CUDA device; peers run on the CPU"; fi
    PYTHONUNBUFFERED=1 timeout -k 5 $((T_STAGE * 70 / 100)) python3 benches/gpu/peers.py --device "$tdev" \
      --sizes "$SIZES" --rows "$ROWS" --n 4096 --reps 5 >>"$OUTDIR/peers.jsonl"
    rc1=$?
    left=$((T_STAGE - ($(date +%s) - t0)))
    PYTHONUNBUFFERED=1 timeout -k 5 "$((left > 5 ? left : 5))" sh -c \
      'python3 benches/peers/softtopk_torch.py --check && python3 benches/peers/softtopk_torch.py --device "$1" --rows "$2" --n 4096 --reps 5' \
      _ "$tdev" "$ROWS" >>"$OUTDIR/lapsum.jsonl"
    rc2=$?
    say "  peers.py rc $rc1, softtopk_torch.py rc $rc2 (torch on $tdev)"
    stage_rec peers "$([ $rc1 -eq 0 ] && [ $rc2 -eq 0 ] && echo ok || echo failed)" $(($(date +%s) - t0)) "torch on $tdev"
  fi
fi

say "done in $(($(date +%s) - START))s; files in $OUTDIR: $(ls "$OUTDIR" | tr '\n' ' ')"
python3 benches/gpu/summary.py "$OUTDIR" | tee "$OUTDIR/summary.md"
# Exit status 1 when a stage failed (tests, an op's error or failed check, a peer).
! grep -q '"status": "failed"' "$OUTDIR/stages.jsonl"
