"""Register tiles for the dense products, written in LLVM IR (numba has no vector types), and
the vector width of the CPU numba compiles for.

LLVM keeps plain loop kernels at 80-90 GFLOP/s per core in float32: each pass over a row of
the output loads and stores it again. A tile holds a block of the output, `rows` rows by
`vectors` vectors, in registers for the whole sum over k: per k it loads the vectors of a row
of B, broadcasts `rows` elements of A and issues rows x vectors fused multiply-adds; it writes
the block once at the end. Which shape is fastest depends on the CPU (its registers, load
ports and caches): tuning.py measures the candidates on the machine itself.

Every shape computes each output element the same way, one fused multiply-add per k in
order from zero, then adds the block to the output (or stores it): the shape never changes a
result, only the speed.
"""

from __future__ import annotations

import llvmlite.binding as ll
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def target_has_avx512() -> bool:
    """Whether the CPU numba generates code for has AVX-512: the host's, or the one that
    NUMBA_CPU_NAME and NUMBA_CPU_FEATURES name (an empty feature list: the named CPU's own)."""
    from numba.core import config
    if config.CPU_FEATURES is not None:
        return "+avx512f" in config.CPU_FEATURES.split(",")
    return bool(ll.get_host_cpu_features().get("avx512f"))


VECTOR_BYTES = 64 if target_has_avx512() else 32
# The vector registers a tile may fill: rows x vectors accumulators, the vectors of B's row and
# a broadcast element of A (AVX-512 has 32 registers, AVX2 16).
REGISTERS = 32 if VECTOR_BYTES == 64 else 16


def fits(rows: int, vectors: int) -> bool:
    """Whether a tile of this shape keeps everything in registers."""
    return rows * vectors + vectors + 1 <= REGISTERS


def make_tile(rows: int, vectors: int):
    """An intrinsic tile(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate) on flat
    arrays of one dtype: for r < rows and the `vectors` vectors' worth of columns j from c0,

        C[c0 + r ldc + j] (+)= sum_{k < depth} A[a0 + r a_rs + k a_ks] B[b0 + k ldb + j]

    so A may be read row-wise (a_ks = 1) or column-wise (a_rs = 1, a transposed operand)."""

    @intrinsic
    def tile(typingctx, C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate):
        signature = types.void(C, c0, ldc, A, a0, a_rs, a_ks, B, b0, ldb, depth, accumulate)

        def codegen(context, builder, sig, args):
            c_arr, c0, ldc, a_arr, a0, a_rs, a_ks, b_arr, b0, ldb, depth, accumulate = args
            dtype = sig.args[0].dtype
            item = dtype.bitwidth // 8
            width = VECTOR_BYTES // item
            element = context.get_value_type(dtype)
            vector = ir.VectorType(element, width)
            i32, i64 = ir.IntType(32), ir.IntType(64)
            c_ptr = context.make_array(sig.args[0])(context, builder, c_arr).data
            a_ptr = context.make_array(sig.args[3])(context, builder, a_arr).data
            b_ptr = context.make_array(sig.args[7])(context, builder, b_arr).data
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vector, [vector] * 3),
                f"llvm.fma.v{width}f{dtype.bitwidth}")
            zero = ir.Constant(vector, [ir.Constant(element, 0.0)] * width)
            undef = ir.Constant(vector, ir.Undefined)
            splat = ir.Constant(ir.VectorType(i32, width), [0] * width)

            def vector_at(ptr, index):                # unaligned load / store address
                return builder.bitcast(builder.gep(ptr, [index]), vector.as_pointer())

            # accumulators live in allocas that LLVM promotes to registers
            acc = [[cgutils.alloca_once_value(builder, zero) for _ in range(vectors)]
                   for _ in range(rows)]
            with cgutils.for_range(builder, depth) as loop:
                k = loop.index
                b_row = builder.add(b0, builder.mul(k, ldb))
                bv = [builder.load(vector_at(b_ptr, builder.add(b_row, ir.Constant(i64, j * width))),
                                   align=item) for j in range(vectors)]
                a_k = builder.add(a0, builder.mul(k, a_ks))
                for r in range(rows):
                    a = builder.load(builder.gep(
                        a_ptr, [builder.add(a_k, builder.mul(ir.Constant(i64, r), a_rs))]))
                    av = builder.shuffle_vector(
                        builder.insert_element(undef, a, ir.Constant(i32, 0)), undef, splat)
                    for j in range(vectors):
                        builder.store(builder.call(fma, [av, bv[j], builder.load(acc[r][j])]),
                                      acc[r][j])
            keep = accumulate
            if keep.type != ir.IntType(1):
                keep = builder.icmp_unsigned("!=", keep, ir.Constant(keep.type, 0))
            for r in range(rows):
                c_row = builder.add(c0, builder.mul(ir.Constant(i64, r), ldc))
                for j in range(vectors):
                    where = vector_at(c_ptr, builder.add(c_row, ir.Constant(i64, j * width)))
                    base = builder.select(keep, builder.load(where, align=item), zero)
                    builder.store(builder.fadd(base, builder.load(acc[r][j])), where, align=item)
            return context.get_dummy_value()
        return signature, codegen
    return tile
