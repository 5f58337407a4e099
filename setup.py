"""Builds fastidx's one native extension, ``fastidx._native``, from ``native/_native.pyx``.

Where it cannot be built (no C compiler, no Cython or NumPy at build time, no zlib to compile or link
against) fastidx installs without it and runs on ``fastidx._pure``, the slower pure-Python fallback:
this prints a warning naming that path (``pip install -v`` shows it; ``import fastidx`` warns again).
``FASTIDX_PURE=1`` at build time skips the extension on purpose. zlib comes from the system, or from
``ZLIB_ROOT`` (its ``include/`` and ``lib/``), which is how the Windows wheels get a static zlib.
"""

import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

# What a missing or failing compiler or linker raises (simplejson's list for its optional speedups).
BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError, ValueError)

FALLBACK = (
    "fastidx: the native extension fastidx._native is not built ({why}); fastidx will use its "
    "pure-Python fallback fastidx._pure (zlib + NumPy): the same results, slower loads. Install a C "
    "compiler and zlib's headers (e.g. gcc and zlib1g-dev) and reinstall for the fast path."
)


def fallback(why) -> None:
    print("WARNING: " + FALLBACK.format(why=why), file=sys.stderr, flush=True)


def zlib_options() -> dict:
    root = os.environ.get("ZLIB_ROOT")
    options = {"libraries": ["zlib" if sys.platform == "win32" else "z"]}
    if root:
        options["include_dirs"] = [os.path.join(root, "include")]
        options["library_dirs"] = [os.path.join(root, "lib")]
    return options


def extensions() -> list:
    if os.environ.get("FASTIDX_PURE", "").strip().lower() not in ("", "0", "false", "no", "off"):
        fallback("FASTIDX_PURE is set")
        return []
    try:
        import numpy as np
        from Cython.Build import cythonize
    except ImportError as exc:
        fallback(f"{exc.name or exc} is not installed at build time")
        return []
    zlib = zlib_options()
    extension = Extension(
        "fastidx._native",
        sources=["native/_native.pyx"],
        include_dirs=[np.get_include(), *zlib.pop("include_dirs", [])],
        extra_compile_args=["/O2"] if sys.platform == "win32" else ["-O3"],
        # Python's own flags add -g: debug information would be 90% of the installed extension.
        extra_link_args=["-Wl,--strip-debug"] if sys.platform.startswith("linux") else [],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
        **zlib,
    )
    return cythonize(
        [extension],
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )


class OptionalBuildExt(build_ext):
    """build_ext that installs fastidx without its extension, rather than failing, when it cannot
    compile or link it."""

    def run(self):
        try:
            super().run()
        except BUILD_ERRORS as exc:
            fallback(f"{type(exc).__name__}: {str(exc)[:300]}")
            self.extensions = []  # nothing to copy in place or to list as output


setup(ext_modules=extensions(), cmdclass={"build_ext": OptionalBuildExt})
