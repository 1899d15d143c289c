"""Which machine code runs the compiled kernels: built ahead of time at install, or by numba's JIT.

The kernels (``model.*_compiled``, ``solve.anderson_compiled``) are written once, for numba.
``pip install`` compiles every kernel with an explicit signature into the extension module
``blpdemand._kernels`` (``setup.py``, numba's ahead-of-time compiler, the same options and the
host's instruction set), so a process runs them without importing numba or compiling anything:
numba's import and its one-time target initialisation cost about 0.33 s of every fresh process,
and its first-ever compile about 9 s.

The extension is used when it was built from the kernel sources now installed (a digest of those
files is compiled into it); otherwise, or with ``BLPDEMAND_JIT=1`` in the environment, numba
compiles them just in time, caching on disk, as it always did. One process uses one of the two
throughout. Both give the same bits (the same compiler, options and signatures).

This module does not import numba: the kernel modules' signatures are written with the specs
below and turned into numba types only when numba compiles.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["B1", "F8", "I8", "KERNEL_MODULES", "ahead_of_time", "as_kernel_array",
           "compile_kernel", "export_name", "readonly", "source_digest", "writable"]

#: the modules whose kernels are built ahead of time, in the order the build imports them
KERNEL_MODULES = ("blpdemand.model.sweeps_compiled", "blpdemand.model.adjoint_compiled",
                  "blpdemand.model.hessian_compiled", "blpdemand.model.exp_compiled",
                  "blpdemand.model.utility_compiled", "blpdemand.model.jacobians_compiled",
                  "blpdemand.model.pricing_compiled", "blpdemand.model.rcnl_compiled",
                  "blpdemand.solve.anderson_compiled")
#: scalar argument types of a kernel signature
F8, I8, B1 = "float64", "int64", "boolean"
#: kernel options: GIL released, numpy's error model (no exceptions from a division), fastmath
#: for reassociation and FMA only (vectorized sums), no assumption about NaN or inf
OPTIONS: dict[str, Any] = {"nogil": True, "error_model": "numpy",
                           "fastmath": {"reassoc", "contract"}}
#: (dispatcher, argument types) of every kernel with a signature: what the build exports
REGISTRY: list[tuple[Any, tuple[Any, ...]]] = []

_PACKAGE = Path(__file__).resolve().parent


def readonly(ndim: int, dtype: str = F8) -> tuple[str, str, int]:
    """A C-contiguous, aligned, read-only array argument (numba converts a writable array to it,
    never the reverse: one compiled version takes both)."""
    return ("readonly", dtype, ndim)


def writable(ndim: int, dtype: str = F8) -> tuple[str, str, int]:
    """A C-contiguous writable array argument (an output)."""
    return ("writable", dtype, ndim)


def source_digest() -> int:
    """63 bits of the SHA-256 of the kernel modules' sources and of this file."""
    digest = hashlib.sha256()
    for name in (__name__, *KERNEL_MODULES):
        digest.update((_PACKAGE.parent / (name.replace(".", "/") + ".py")).read_bytes())
    return int.from_bytes(digest.digest()[:8], "little") >> 1


@functools.cache
def ahead_of_time() -> ModuleType | None:
    """The extension built at install from these sources, or None (numba's JIT is used)."""
    if os.environ.get("BLPDEMAND_JIT", "") not in ("", "0"):
        return None
    try:  # an extension module, not a Python one: by name
        module = importlib.import_module("blpdemand._kernels")
    except ImportError:
        return None
    if int(module.source_digest()) != source_digest():  # the kernels changed since the build
        return None
    return module


def export_name(function: Callable[..., Any]) -> str:
    """The kernel's name in the extension: its module's last part and its own."""
    return f"{function.__module__.rsplit('.', 1)[-1]}__{function.__name__}"


def _numba_type(spec: Any) -> Any:
    import numba

    if isinstance(spec, str):
        return getattr(numba, spec)
    kind, dtype, ndim = spec
    return numba.types.Array(getattr(numba, dtype), ndim, "C", readonly=kind == "readonly")


def compile_kernel(signature: tuple[Any, ...] | None = None,
                   **extra: Any) -> Callable[[Callable[..., Any]], Any]:
    """The kernel as this process runs it.

    With a ``signature`` (argument specs): the extension's function when ``ahead_of_time()``,
    else numba.njit for exactly those types, compiled or loaded from numba's disk cache (beside
    the source, else the user's cache directory) when its module is imported; a call with
    other types is a TypeError instead of a new compilation. Without one (helpers inlined into
    the kernels): the Python function itself when the kernels come from the extension (never
    called), else numba.njit at first use.
    """
    options: dict[str, Any] = {**OPTIONS, **extra}

    def decorate(function: Callable[..., Any]) -> Any:
        built = ahead_of_time()
        if built is not None:
            return function if signature is None else getattr(built, export_name(function))
        import numba

        types = None if signature is None else tuple(_numba_type(s) for s in signature)
        # the build (setup.py) records the signature and compiles only ahead of time
        eager = None if os.environ.get("BLPDEMAND_JIT") == "build" else types
        try:
            kernel = numba.njit(eager, cache=True, **options)(function)
        except RuntimeError:  # "cannot cache function ...: no locator available"
            kernel = numba.njit(eager, cache=False, **options)(function)
        if types is not None:
            REGISTRY.append((kernel, types))
        return kernel

    return decorate


def as_kernel_array(array: Any, dtype: Any = np.float64) -> Any:
    """``array`` as the kernels' signatures take it (C-contiguous, aligned, of ``dtype``); no
    copy when it already is one (checked directly first: np.require takes some 2.5 us, and an
    estimate makes hundreds of kernel calls)."""
    if (type(array) is np.ndarray and array.dtype == dtype and array.flags.c_contiguous
            and array.flags.aligned):
        return array
    return np.require(array, dtype, ("C", "A"))
