"""exp(x) in a loop the compiler vectorizes, for the compiled kernels.

x = n ln 2 + r with |r| <= ln 2 / 2 (Cody and Waite 1980's two-part reduction: n ln2_hi is exact
for |n| < 2^20, ln2_hi having 32 trailing zero bits), exp(r) by its degree-13 Taylor polynomial
(truncation below 1e-17 relative), 2^n written into a float's exponent bits; within about one
unit in the last place of exp(x) on [-708, 709], where 2^n and exp(x) are normal numbers.
Elsewhere (below -708: subnormal or zero; above 709: near or past overflow; NaN) the element
takes math.exp afterwards. libm's exp, called one element at a time from a numba loop, was half
the zeta kernel's time (``model.pricing_compiled``); exp(mu) for many small markets
(``model.utility_compiled``) is the other user.

The loop is compiled for 512-bit vectors where the CPU has them and keeps its clock with them
(``wide_vectors``): 0.66 against 0.95 ns an element on the benchmarks' Xeon, with the same
bits, since each element's arithmetic is its own.
"""

from __future__ import annotations

import math
import os
from typing import Any

from blpdemand._compiled import ahead_of_time, compile_kernel

if ahead_of_time() is None:  # numba compiles the kernels in this process: the bit cast it uses
    import llvmlite.ir
    import numba
    from numba.extending import intrinsic

__all__ = ["DOWNCLOCKING", "EXP_CEILING", "EXP_FLOOR", "exp_into", "prefers_wide_vectors",
           "wide_vectors"]

#: The reduced range: exp(x) is a normal float64 on [EXP_FLOOR, EXP_CEILING] (n in -1022..1023).
EXP_FLOOR, EXP_CEILING = -708.0, 709.0
_BIAS = 1023  # the float64 exponent's bias: 2^n has the bits (n + 1023) << 52
_LOG2E = 1.4426950408889634
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
(_C2, _C3, _C4, _C5, _C6, _C7, _C8, _C9, _C10, _C11, _C12,
 _C13) = (1.0 / math.factorial(k) for k in range(2, 14))


def _bits_to_float(typingctx: Any, bits: Any) -> Any:
    """The float64 whose IEEE bits are the int64 ``bits`` (a register move; a table of 2^n
    instead made the loop gather, 15% of its time)."""
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], llvmlite.ir.DoubleType())
    return numba.float64(numba.int64), codegen


_from_bits: Any = intrinsic(_bits_to_float) if ahead_of_time() is None else None


#: AVX-512 CPUs whose clock drops markedly while 512-bit arithmetic runs (Skylake-SP and its
#: refreshes, Xeon Phi): there the following 256-bit sweeps would pay for a faster exp.
DOWNCLOCKING = ("skylake-avx512", "cascadelake", "cooperlake", "knl", "knm")


def prefers_wide_vectors() -> bool:
    """Whether the kernels are compiled with 512-bit exp loops: for the CPU they are built for
    (``BLPDEMAND_AOT_CPU`` at install, else this machine's), unless it is ``DOWNCLOCKING``."""
    import llvmlite.binding

    target = os.environ.get("BLPDEMAND_AOT_CPU", "host") if os.environ.get(
        "BLPDEMAND_JIT") == "build" else "host"
    name = llvmlite.binding.get_host_cpu_name() if target == "host" else target
    return name not in DOWNCLOCKING


def _prefer_wide_vectors(typingctx: Any) -> Any:
    """Mark the calling kernel for LLVM's 512-bit vectors, ``"prefer-vector-width"="512"``:
    LLVM's tuning for AVX-512 CPUs prefers 256 bits (a zmm loop can lower the clock), but on
    elementwise loops as long as exp's the wider vector wins where the clock holds
    (``prefers_wide_vectors``); a CPU without AVX-512 ignores it. Only for loops with no
    reduction whose order the width would change: their bits are the same at any width."""
    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        if prefers_wide_vectors():
            # llvmlite's ``add`` accepts keyword attributes only; a string attribute is a member
            set.add(builder.function.attributes, '"prefer-vector-width"="512"')
        return context.get_dummy_value()
    return numba.types.none(), codegen


wide_vectors: Any = intrinsic(_prefer_wide_vectors) if ahead_of_time() is None else None


@compile_kernel(fastmath={"contract"})
def exp_into(x, out):  # type: ignore[no-untyped-def]
    """out = exp(x) (1-D arrays of equal size; ``out`` may not be ``x``: the out-of-range
    elements, counted in the vectorized pass, are found again in ``x``). Only ``contract``
    (FMA) is allowed: reassociation would undo the two-part reduction."""
    wide_vectors()
    outside = 0
    for k in range(x.size):
        value = x[k]
        outside += not (value >= EXP_FLOOR and value <= EXP_CEILING)
        # comparisons, not min/max: NaN goes to the floor (a finite n), and the selects vectorize
        clipped = value if value >= EXP_FLOOR else EXP_FLOOR  # noqa: FURB136
        clipped = clipped if clipped <= EXP_CEILING else EXP_CEILING  # noqa: FURB136
        n = math.floor(clipped * _LOG2E + 0.5)
        r = (clipped - n * _LN2_HI) - n * _LN2_LO
        p = _C13 * r + _C12
        p = p * r + _C11
        p = p * r + _C10
        p = p * r + _C9
        p = p * r + _C8
        p = p * r + _C7
        p = p * r + _C6
        p = p * r + _C5
        p = p * r + _C4
        p = p * r + _C3
        p = p * r + _C2
        p = p * r + 1.0
        p = p * r + 1.0
        out[k] = p * _from_bits((numba.int64(n) + _BIAS) << 52)
    if outside:
        for k in range(x.size):
            if not EXP_FLOOR <= x[k] <= EXP_CEILING:
                out[k] = math.exp(x[k])
