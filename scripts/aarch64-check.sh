#!/usr/bin/env bash
# aarch64, proven rather than assumed: cross-builds fastidx's wheel for 64-bit ARM Linux on this
# x86_64 Debian machine and runs its IDX round-trip, MNIST identity and native-vs-pure tests on an
# aarch64 CPython under qemu's user-mode emulation.
#
# - Tools (Debian, installed when missing; needs root): gcc-aarch64-linux-gnu, libc6-dev-arm64-cross,
#   qemu-user-static.
# - An aarch64 CPython 3.11: Debian's arm64 packages (python3.11-minimal, libpython3.11-stdlib,
#   libpython3.11-dev, zlib1g-dev, ...) fetched with `apt-get download` through private package
#   lists (the machine's dpkg architectures and state are left alone) and unpacked with `dpkg -x`
#   into a sysroot; qemu-aarch64-static -L <sysroot> runs it.
# - Python packages for aarch64 (numpy, zstandard, isal, ..., pytest, hypothesis): PyPI's
#   manylinux aarch64 wheels via `pip install --target --platform`.
# - The wheel: setuptools' build backend on the host Python, compiling with aarch64-linux-gnu-gcc
#   against the sysroot's Python and zlib headers and the aarch64 NumPy's headers, with the arm64
#   sysconfig data (_PYTHON_SYSCONFIGDATA_NAME, _PYTHON_HOST_PLATFORM) so that the extension and the
#   wheel get aarch64 names.
# - The tests: pytest runs under qemu from this checkout's tests/ against the installed wheel;
#   subprocesses the tests start run under qemu too (a wrapper stands in for sys.executable).
#
#   bash scripts/aarch64-check.sh       # 5 to 8 minutes here; not run by .ci/run (too slow)
# Everything is written to a temporary directory (or $FASTIDX_AARCH64_DIR, kept), removed at the end.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
host_python="${PYTHON:-python3}"
if [[ -n "${FASTIDX_AARCH64_DIR:-}" ]]; then
    work="$FASTIDX_AARCH64_DIR"
    mkdir -p "$work"
else
    work="$(mktemp -d "${TMPDIR:-/tmp}/fastidx-aarch64.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
fi
root="$work/sysroot"
fail() { echo "FAIL: $*"; exit 1; }

echo "== tools"
need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
if ((${#need[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
aarch64-linux-gnu-gcc --version | head -1
qemu-aarch64-static --version | head -1

echo "== an aarch64 CPython from Debian's arm64 packages"
apt_opts=(-o APT::Architecture=arm64 -o APT::Architectures::=arm64 -o "Dir::State::Lists=$work/apt/lists"
          -o "Dir::Cache=$work/apt/cache" -o Dir::State::Status=/dev/null)
mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial" "$work/debs"
apt-get "${apt_opts[@]}" -qq update
(cd "$work/debs" && apt-get "${apt_opts[@]}" -qq download \
    python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libpython3.11-dev libpython3.11 \
    libc6 libgcc-s1 libstdc++6 zlib1g zlib1g-dev libexpat1 libffi8 libssl3 libbz2-1.0 liblzma5 \
    libcrypt1 libsqlite3-0 libuuid1 libncursesw6 libtinfo6 libreadline8 libdb5.3 libnsl2 libtirpc3 \
    libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1)
mkdir -p "$root"
for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$root"; done
# Runs the aarch64 interpreter; also what the tests' subprocesses get as sys.executable.
mkdir -p "$work/bin"
cat >"$work/bin/python3.11" <<EOF
#!/bin/sh
exec qemu-aarch64-static -L "$root" -0 "\$0" "$root/usr/bin/python3.11" "\$@"
EOF
chmod +x "$work/bin/python3.11"
py="$work/bin/python3.11"
"$py" -c "import platform, sys; print('interpreter:', platform.machine(), sys.version.split()[0])"

echo "== aarch64 wheels of the dependencies and the test tools (PyPI)"
pip_target=(--quiet --target "$work/site" --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64
            --platform linux_aarch64 --python-version 3.11 --implementation cp --abi cp311 --only-binary=:all:)
"$host_python" -m venv "$work/host"
"$work/host/bin/python" -m pip install --quiet --upgrade pip
"$work/host/bin/python" -m pip install "${pip_target[@]}" numpy zstandard isal platformdirs filelock \
    pytest hypothesis pytest-benchmark

echo "== cross-build the fastidx wheel"
"$work/host/bin/python" -m pip install --quiet "setuptools>=77" wheel "Cython>=3.0" "numpy>=2.0"
mkdir -p "$work/src" "$work/sysconfig" "$work/linklib"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | tar --null -cf - -T - 2>/dev/null) |
    tar -xf - -C "$work/src"
rm -f "$work"/src/src/fastidx/_native.*.so
cp "$root"/usr/lib/python3.11/_sysconfigdata__linux_aarch64-linux-gnu.py "$work/sysconfig/"
ln -sf "$root"/lib/aarch64-linux-gnu/libz.so.1 "$work/linklib/libz.so"  # the package's link is absolute
(cd "$work/src" && env \
    _PYTHON_HOST_PLATFORM=linux-aarch64 \
    _PYTHON_SYSCONFIGDATA_NAME=_sysconfigdata__linux_aarch64-linux-gnu \
    PYTHONPATH="$work/sysconfig" \
    CC=aarch64-linux-gnu-gcc LDSHARED="aarch64-linux-gnu-gcc -shared" \
    CFLAGS="-I$root/usr/include/python3.11 -I$root/usr/include -I$work/site/numpy/_core/include" \
    LDFLAGS="-L$work/linklib" \
    "$work/host/bin/python" -c "from setuptools import build_meta; build_meta.build_wheel('$work/dist')" \
    >"$work/build.log" 2>&1) || { tail -30 "$work/build.log"; fail "cross-build"; }
! grep -q "fastidx._native is not built" "$work/build.log" || { grep "not built" "$work/build.log"; fail "the extension was not built"; }
wheel="$(ls "$work"/dist/fastidx-*-linux_aarch64.whl)"
echo "wheel: $(basename "$wheel") ($(du -k "$wheel" | cut -f1) KiB)"
"$work/host/bin/python" -m pip install "${pip_target[@]}" --no-deps --target "$work/fastidx" "$wheel"
if command -v file >/dev/null; then file "$work"/fastidx/fastidx/_native.*.so | sed 's/, BuildID.*//'; fi

echo "== run under qemu"
mkdir -p "$work/run"
cd "$work/run"  # hypothesis keeps its database here, pytest nothing (no cache provider)
export PYTHONPATH="$work/fastidx:$work/site"
"$py" - <<'EOF'
import platform
import fastidx
from fastidx import _kernels
assert platform.machine() == "aarch64", platform.machine()
assert _kernels.IMPLEMENTATION == "native" and _kernels.Inflater.__module__ == "fastidx._native"
print("fastidx", fastidx.__version__, "from", fastidx.__file__, "on", platform.machine(), "zlib", _kernels.ZLIB_VERSION)
EOF
"$py" -m pytest -q -p no:cacheprovider -p no:randomly \
    "$repo/tests/test_idx_properties.py" "$repo/tests/test_mnist_files.py" \
    "$repo/tests/test_kernels.py" "$repo/tests/test_idx_reference.py"
