#!/usr/bin/env bash
# Builds what the prepared GPU run (benches/gpu/run.sh) needs, on a machine with Rust and no
# GPU, and packs it: the test executables of the workspace, the bench binaries (engines,
# scale, accuracy), `lapis` and `link-lapis`, stripped and xz-compressed into one directory,
# with a manifest. Checks that the pack plus the working tree that travels to the device
# machine fit its 64 MiB limit, and fails loudly if not.
#
#   benches/gpu/build.sh            # --features cuda, CARGO_TARGET_DIR=target-cuda, pack in benches/gpu/pack
#   benches/gpu/build.sh --wgpu     # default features, target/, pack in benches/gpu/pack-wgpu (lavapipe dry run)
#
# Options: --pack DIR (where to pack), --tests LIST (comma-separated test executables to
# pack, by name as run.sh prints them, e.g. `lapis-tests/ops`; default: all that fit),
# --limit-mib N (default 64). Both packs are git-ignored.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
MODE=cuda
PACK=""
TESTS="${LAPIS_GPU_TESTS:-}"
LIMIT_MIB=64
while [ $# -gt 0 ]; do
  case "$1" in
    --wgpu) MODE=wgpu ;;
    --cuda) MODE=cuda ;;
    --pack) PACK="$2"; shift ;;
    --tests) TESTS="$2"; shift ;;
    --limit-mib) LIMIT_MIB="$2"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [ "$MODE" = cuda ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target-cuda}"
  # The device machine has CUDA 13.0 (driver 580): bind cudarc to that API version rather
  # than to "latest" (no nvcc here to detect it from).
  export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
  FEATURES=(--features cuda)
  PACK="${PACK:-$ROOT/benches/gpu/pack}"
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
  FEATURES=()
  PACK="${PACK:-$ROOT/benches/gpu/pack-wgpu}"
fi
case "$PACK" in /*) ;; *) PACK="$ROOT/$PACK" ;; esac

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

echo "build.sh: mode $MODE, target dir $CARGO_TARGET_DIR, pack $PACK"
# One command for the test executables and the plain binaries: with the test targets in it,
# cargo resolves the dev-dependencies' features too, as `cargo test` does, so it reuses (and
# leaves behind) the artifacts of `cargo test --release --workspace [--features cuda]`; a
# separate `cargo build --bins` would recompile CubeCL with other features.
echo "build.sh: cargo build --release --workspace ${FEATURES[*]} --lib --bins --tests"
cargo build --release --workspace "${FEATURES[@]}" --lib --bins --tests \
  --message-format=json-render-diagnostics >"$TMP/build.json"

# Manifest: one line per executable: kind, name, package directory (relative), source path.
python3 - "$ROOT" "$TMP/build.json" >"$TMP/all.tsv" <<'EOF'
import json, os, sys
root = sys.argv[1]
seen = set()
for path in sys.argv[2:]:
    for line in open(path, encoding="utf-8"):
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if r.get("reason") != "compiler-artifact" or not r.get("executable"):
            continue
        exe = r["executable"]
        if exe in seen:
            continue
        seen.add(exe)
        pkg_dir = os.path.relpath(os.path.dirname(r["manifest_path"]), root)
        name = r["target"]["name"]
        kinds = r["target"]["kind"]
        is_test = r["profile"]["test"]
        if is_test:
            kind = "test"
            # lib unit tests are named after the crate; integration tests after the file.
            label = ("lib" if "lib" in kinds or "rlib" in kinds else
                     ("bin-" + name if "bin" in kinds else name))
        elif "bin" in kinds:
            kind, label = "bin", name
        else:
            continue
        print("\t".join([kind, label, pkg_dir, exe]))
EOF

# Test executables are named `<package dir>/<label>` (e.g. tests/ops, graph/gradcheck).
rm -rf "$PACK"
mkdir -p "$PACK/bin"
: >"$PACK/MANIFEST.tsv"
want_test() {
  [ -z "$TESTS" ] && return 0
  case ",$TESTS," in *",$1,"*) return 0 ;; esac
  return 1
}
n_test=0
n_bin=0
while IFS=$'\t' read -r kind label pkg_dir exe; do
  if [ "$kind" = test ]; then
    id="${pkg_dir//\//_}__${label}"
    want_test "$pkg_dir/$label" || continue
    # Test harnesses with no tests (the bins', the bench crate's): not worth a line in the run.
    listed=$("$exe" --list --format terse 2>/dev/null || true)
    if ! grep -q ': test$' <<<"$listed"; then
      echo "build.sh: skipping $pkg_dir/$label (no tests)"
      continue
    fi
    n_test=$((n_test + 1))
  else
    id="$label"
    n_bin=$((n_bin + 1))
  fi
  cp "$exe" "$TMP/$id"
  strip --strip-all "$TMP/$id" 2>/dev/null || strip "$TMP/$id"
  printf '%s\t%s\t%s\t%s\n' "$kind" "$label" "$pkg_dir" "$id" >>"$PACK/MANIFEST.tsv"
done <"$TMP/all.tsv"

# One solid xz archive: the executables share most of their code (CubeCL, wgpu, cubek, lapis),
# which a dictionary larger than one executable finds again.
# Stripped, they are ~400 MiB; packed, ~30 MiB (about 5 minutes on 2 cores; 2 GiB of memory).
(cd "$TMP" && cut -f4 "$PACK/MANIFEST.tsv" | tar -cf - -T - | \
  xz -T1 --lzma2=preset=6,dict=192MiB >"$PACK/bin.tar.xz")
rmdir "$PACK/bin"
raw=$(cd "$TMP" && cut -f4 "$PACK/MANIFEST.tsv" | xargs du -cb | tail -1 | cut -f1)
{
  echo "mode=$MODE"
  echo "build_root=$ROOT"
  echo "target_dir=$CARGO_TARGET_DIR"
  echo "git_commit=$(git rev-parse HEAD 2>/dev/null || echo unknown)"
  echo "git_dirty=$(git status --porcelain 2>/dev/null | grep -v '^??' | wc -l)"
  echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "host_glibc=$(ldd --version 2>/dev/null | head -1 | awk '{print $NF}')"
  echo "cudarc_cuda_version=${CUDARC_CUDA_VERSION:-}"
  echo "stripped_bytes=$raw"
} >"$PACK/BUILD_INFO"

# Size check: the pack plus what the device tool sends (tracked and untracked-not-ignored
# files of the working tree).
pack_b=$(du -cb "$PACK" | tail -1 | cut -f1)
tree_b=$(git ls-files -z -co --exclude-standard | du -cb --files0-from=- 2>/dev/null | tail -1 | cut -f1)
total_b=$((pack_b + tree_b))
limit_b=$((LIMIT_MIB * 1024 * 1024))
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "build.sh: packed $n_test test executables and $n_bin binaries ($(mib "$raw") stripped)"
echo "build.sh: pack $(mib "$pack_b") + working tree $(mib "$tree_b") = $(mib "$total_b") (limit $LIMIT_MIB MiB)"
cat "$PACK/MANIFEST.tsv" | awk -F'\t' '{ printf "  %-5s %s/%s\n", $1, $3, $2 }'
if [ "$total_b" -gt "$limit_b" ]; then
  echo "build.sh: ERROR: $(mib "$total_b") exceeds the $LIMIT_MIB MiB the device machine takes;" \
    "pack fewer test executables (--tests LIST)" >&2
  exit 1
fi
echo "build.sh: OK. On the device machine: run with carry [\"${PACK#"$ROOT"/}\"]"
