"""Builds fastidx's one native extension, ``fastidx._native``, from ``native/_native.pyx``."""
import sys

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

extra_compile_args = ["/O2"] if sys.platform == "win32" else ["-O3"]
libraries = [] if sys.platform == "win32" else ["z"]

extension = Extension(
    "fastidx._native",
    sources=["native/_native.pyx"],
    include_dirs=[np.get_include()],
    libraries=libraries,
    extra_compile_args=extra_compile_args,
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_2_0_API_VERSION")],
)

setup(
    ext_modules=cythonize(
        [extension],
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
)
