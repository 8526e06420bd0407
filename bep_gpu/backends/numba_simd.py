"""The register-blocked popcount micro-kernel of the numba backend, written as LLVM IR (a numba intrinsic).

LLVM's vectorizers do not turn a fixed 4 x 8 tile of scalar `popcount(a ^ b)` accumulators into vector code
(measured: scalar POPCNT, ~0.3 T bit-MAC/s on 2 cores), so the tile is spelled out with vector types: per word w
of K, one load of 8 packed columns of B (a panel, see numba_kernels.panelize), and for each of the TILE_M rows of
A a broadcast, XOR (AND-ed with a row mask in the masked form), vector popcount and add into that row's 8 x int64
accumulator, which stay in registers across the K loop. With AVX-512 VPOPCNTDQ this is one vpopcntq per
512 bit-MACs (~1.2-2.1 T bit-MAC/s on 2 Zen 4 cores); elsewhere LLVM lowers the same IR to scalar POPCNT.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

TILE_M = 4  # rows of A per tile (accumulator registers: TILE_M vectors)
TILE_N = 8  # columns per panel = uint64 lanes of one 512-bit vector; also 8 sign bits = one output byte


def _tile_codegen(masked: bool):
    def codegen(context, builder, signature, args):
        a_addr, lda, g_addr, b_addr, kw, acc_addr = args
        i64 = ir.IntType(64)
        i32 = ir.IntType(32)
        vec = ir.VectorType(i64, TILE_N)
        ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec]), f"llvm.ctpop.v{TILE_N}i64")
        a_ptr = builder.inttoptr(a_addr, i64.as_pointer())
        g_ptr = builder.inttoptr(g_addr, i64.as_pointer())
        b_ptr = builder.inttoptr(b_addr, vec.as_pointer())
        undef = ir.Constant(vec, ir.Undefined)
        lane0 = ir.Constant(i32, 0)
        splat_mask = ir.Constant(ir.VectorType(i32, TILE_N), [0] * TILE_N)

        def splat(v):
            return builder.shuffle_vector(builder.insert_element(undef, v, lane0), undef, splat_mask)

        accs = []
        for _ in range(TILE_M):  # allocas of the entry block: LLVM promotes them to registers
            slot = cgutils.alloca_once(builder, vec)
            builder.store(ir.Constant(vec, None), slot)
            accs.append(slot)
        with cgutils.for_range(builder, kw) as loop:
            w = loop.index
            bv = builder.load(builder.gep(b_ptr, [w]), align=8)
            for r in range(TILE_M):
                at = builder.add(builder.mul(ir.Constant(i64, r), lda), w)
                x = builder.xor(splat(builder.load(builder.gep(a_ptr, [at]))), bv)
                if masked:
                    x = builder.and_(x, splat(builder.load(builder.gep(g_ptr, [at]))))
                builder.store(builder.add(builder.load(accs[r]), builder.call(ctpop, [x])), accs[r])
        out = builder.inttoptr(acc_addr, vec.as_pointer())
        for r in range(TILE_M):
            builder.store(builder.load(accs[r]), builder.gep(out, [ir.Constant(i64, r)]), align=8)
        return context.get_dummy_value()

    return codegen


_SIG = types.void(types.uintp, types.intp, types.uintp, types.uintp, types.intp, types.uintp)


@intrinsic
def xor_popc_tile(typingctx, a_addr, lda, g_addr, b_addr, kw, acc_addr):
    """acc[r, c] = sum_w popcount(A[r, w] ^ P[w, c]) for r < TILE_M, c < TILE_N.

    a_addr: address of A's first word (rows lda words apart); g_addr: unused; b_addr: a panel P of kw x TILE_N
    words; acc_addr: TILE_M x TILE_N int64 output (written, not added to). All addresses from `arr.ctypes.data`.
    """
    return _SIG, _tile_codegen(masked=False)


@intrinsic
def masked_xor_popc_tile(typingctx, a_addr, lda, g_addr, b_addr, kw, acc_addr):
    """acc[r, c] = sum_w popcount((A[r, w] ^ P[w, c]) & G[r, w]): as xor_popc_tile with a per-row mask G laid out
    like A (the gate bits of the targets' product, the selection bits of the update)."""
    return _SIG, _tile_codegen(masked=True)


@intrinsic
def popcount(typingctx, x):
    """Number of set bits of a uint64, as int64 (LLVM ctpop: POPCNT where the CPU has it)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(types.uint64), codegen


@intrinsic
def trailing_zeros(typingctx, x):
    """Index of the lowest set bit of a non-zero uint64, as int64 (LLVM cttz: TZCNT/BSF)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return types.int64(types.uint64), codegen
