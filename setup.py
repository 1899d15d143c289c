"""Build step beyond pyproject.toml: the compiled kernels, ahead of time, as ``blpdemand._kernels``.

numba's ahead-of-time compiler (``numba.pycc``) compiles every kernel that has a signature
(``blpdemand._compiled.REGISTRY``) with the options numba's JIT uses for it
(``blpdemand._compiled.OPTIONS``: its exported functions would otherwise get pycc's defaults,
without fastmath reassociation, 2x slower and not the same bits) for this machine's instruction
set (``BLPDEMAND_AOT_CPU``, default ``host``: a wheel for other machines needs a generic target).
A digest of the kernel sources is compiled in beside them, so that a changed kernel is never run
from a stale build. Where this cannot be done (no C compiler, a numba without pycc) the install
goes on without it, and numba compiles the kernels at first use as before; ``BLPDEMAND_AOT=0``
skips it.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
import warnings
from pathlib import Path
from typing import Any

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SRC = Path(__file__).resolve().parent / "src"
NAME = "blpdemand._kernels"


def _kernel_modules() -> Any:
    """Import the kernel modules, for numba's JIT, without running the packages' __init__
    (the build environment has numpy and numba only): the packages become bare namespaces
    over their directories."""
    os.environ["BLPDEMAND_JIT"] = "build"  # numba dispatchers, compiled by pycc only
    for package in ("blpdemand", "blpdemand.model", "blpdemand.solve"):
        module = types.ModuleType(package)
        module.__path__ = [str(SRC / package.replace(".", "/"))]
        sys.modules[package] = module
    compiled = importlib.import_module("blpdemand._compiled")
    for name in compiled.KERNEL_MODULES:
        importlib.import_module(name)
    return compiled


def build_kernels(path: Path) -> int:
    """Compile the kernels into the extension module at ``path``; returns how many."""
    compiled = _kernel_modules()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's pending deprecation
        import numba.pycc.compiler as pycc_compiler
        from numba.core import cpu
        from numba.core.compiler import Flags
        from numba.core.typing import signature
        from numba.pycc import CC

    options = compiled.OPTIONS

    class KernelFlags(Flags):  # type: ignore[misc]
        """pycc's flags for an exported function, with the kernels' options."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.fastmath = cpu.FastMathOptions(options["fastmath"])
            self.error_model = options["error_model"]
            self.release_gil = options["nogil"]

    pycc_compiler.Flags = KernelFlags
    cc = CC(path.name.split(".")[0], "blpdemand._compiled")
    cc.output_dir = str(path.parent)
    cc.output_file = path.name
    cc.target_cpu = os.environ.get("BLPDEMAND_AOT_CPU", "host")
    for kernel, arguments in compiled.REGISTRY:
        own = {k: v for k, v in kernel.targetoptions.items()
               if k not in ("nopython", "boundscheck")}
        if own != options:
            raise RuntimeError(f"kernel {kernel.py_func.__name__} has options pycc would not use")
        cc.export(compiled.export_name(kernel.py_func),
                  signature(None, *arguments))(kernel.py_func)
    digest = compiled.source_digest()
    cc.export("source_digest", "int64()")(lambda: digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    cc.compile()
    return len(compiled.REGISTRY)


class BuildKernels(build_ext):  # type: ignore[misc]
    """build_ext that makes ``blpdemand._kernels`` with numba.pycc, or goes on without it."""

    def build_extension(self, ext: Extension) -> None:
        if ext.name != NAME:
            super().build_extension(ext)
            return
        if os.environ.get("BLPDEMAND_AOT", "1") == "0":
            return
        path = Path(self.get_ext_fullpath(ext.name))
        try:
            count = build_kernels(path)
        except Exception as exc:  # noqa: BLE001 (any failure: the JIT at first use remains)
            warnings.warn(f"blpdemand: the compiled kernels were not built ahead of time ({exc!r})"
                          "; numba will compile them at first use", stacklevel=1)
            return
        print(f"blpdemand: {count} compiled kernels built ahead of time into {path}")


setup(ext_modules=[Extension(NAME, sources=[], optional=True)],
      cmdclass={"build_ext": BuildKernels})
