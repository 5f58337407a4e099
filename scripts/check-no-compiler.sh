#!/usr/bin/env bash
# Installs fastidx where its extension cannot be built and checks that it falls back cleanly to the
# pure-Python loops: `pip install .` with CC=/bin/false (a compiler that always fails) into a fresh
# virtual environment, from a copy of this checkout, must succeed, say why the extension is missing,
# and give a working fastidx that warns once (PurePythonWarning) and reads IDX files correctly; the
# README's first command, `fastidx demo`, must work offline. Then the same without Cython at build
# time (`--no-build-isolation` in an environment that lacks it). Nothing outside a temporary
# directory is written; it is removed at the end.
#
#   bash scripts/check-no-compiler.sh        # about a minute; run by .ci/run
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/fastidx-nocc.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# A copy of the sources as git sees them (tracked and new files, no build products).
mkdir "$work/src"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard) |
    (cd "$repo" && tar --null -cf - -T - 2>/dev/null) | tar -xf - -C "$work/src"
rm -f "$work"/src/src/fastidx/_native.*.so "$work"/src/src/fastidx/_native.*.pyd

check_install() {  # $1: a label; the venv is $work/venv
    local py="$work/venv/bin/python"
    cd "$work"
    # The extension is absent and the fallback is used, with one warning naming it.
    "$py" - <<'EOF'
import importlib.util, warnings
assert importlib.util.find_spec("fastidx._native") is None, "the extension was built after all"
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import numpy as np
    import fastidx
    from fastidx import _kernels
    x = np.arange(6000, dtype=np.uint8).reshape(10, 600)
    for _ in range(3):
        y = fastidx.read_idx(fastidx.write_idx(None, x, compress=True), normalize=True)
assert _kernels.IMPLEMENTATION == "pure", _kernels.IMPLEMENTATION
assert np.array_equal(y, x.astype(np.float32) / np.float32(255))
warned = [w for w in caught if type(w.message).__name__ == "PurePythonWarning"]
assert len(warned) == 1 and "fastidx._pure" in str(warned[0].message), [str(w.message) for w in caught]
print("fallback in use, warned once:", str(warned[0].message)[:90], "...")
EOF
    # The README's first command, offline (it loads the sample shipped in the package).
    FASTIDX_PURE=1 FASTIDX_OFFLINE=1 FASTIDX_HOME="$work/home" "$work/venv/bin/fastidx" demo >"$work/demo.log" 2>&1 ||
        { cat "$work/demo.log"; echo "FAIL ($1): fastidx demo"; exit 1; }
    echo "ok ($1): installed without the extension; fastidx demo works"
}

echo "== no C compiler (CC=/bin/false)"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
CC=/bin/false CXX=/bin/false "$work/venv/bin/python" -m pip install -v "$work/src" >"$work/pip.log" 2>&1 ||
    { tail -40 "$work/pip.log"; echo "FAIL: pip install without a compiler"; exit 1; }
grep -q "WARNING: fastidx: the native extension fastidx._native is not built" "$work/pip.log" ||
    { tail -40 "$work/pip.log"; echo "FAIL: pip install did not say it fell back"; exit 1; }
check_install "no compiler"

echo "== no Cython at build time"
rm -rf "$work/venv" "$work/home"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip install --quiet --upgrade "setuptools>=77" wheel numpy  # as pyproject.toml requires
"$work/venv/bin/python" -m pip install -v --no-build-isolation "$work/src" >"$work/pip.log" 2>&1 ||
    { tail -40 "$work/pip.log"; echo "FAIL: pip install without Cython"; exit 1; }
grep -q "fastidx._native is not built (Cython is not installed" "$work/pip.log" ||
    { tail -40 "$work/pip.log"; echo "FAIL: pip install did not say Cython was missing"; exit 1; }
check_install "no Cython"
