"""Loads the BLAS the compiled module links to, so that it resolves wherever the package lives
(the module's rpath covers an installed layout; this covers editable and in-tree builds)."""

import ctypes
import os

try:
    import scipy_openblas32

    _lib = os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so")
    if os.path.exists(_lib):
        ctypes.CDLL(_lib, mode=ctypes.RTLD_GLOBAL)
except ImportError:  # another CBLAS was chosen at build time (FASTRNN_BLAS=cblas)
    pass
