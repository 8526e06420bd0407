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


# Epilogue flags (the same values as numba_kernels.OUT_*).
OUT_Z, ADD_Z, OUT_SIGN, OUT_GATE, OUT_H = 1, 2, 4, 8, 16


def _accumulate(builder, a_addr, lda, g_addr, b_addr, kw, masked):
    """IR of the K loop: TILE_M vectors acc[r] = sum_w popcount((splat(A[r, w]) ^ P[w]) & splat(G[r, w]))."""
    i64 = ir.IntType(64)
    i32 = ir.IntType(32)
    vec = ir.VectorType(i64, TILE_N)
    ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec]), f"llvm.ctpop.v{TILE_N}i64")
    a_ptr = builder.inttoptr(a_addr, i64.as_pointer())
    g_ptr = builder.inttoptr(g_addr, i64.as_pointer())
    b_ptr = builder.inttoptr(b_addr, vec.as_pointer())
    undef = ir.Constant(vec, ir.Undefined)
    splat_mask = ir.Constant(ir.VectorType(i32, TILE_N), [0] * TILE_N)

    def splat(v):
        return builder.shuffle_vector(builder.insert_element(undef, v, ir.Constant(i32, 0)), undef, splat_mask)

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
    return [builder.load(slot) for slot in accs], splat


def _acc_codegen(masked: bool):
    def codegen(context, builder, signature, args):
        a_addr, lda, g_addr, b_addr, kw, acc_addr = args
        accs, _ = _accumulate(builder, a_addr, lda, g_addr, b_addr, kw, masked)
        vec = ir.VectorType(ir.IntType(64), TILE_N)
        out = builder.inttoptr(acc_addr, vec.as_pointer())
        for r, acc in enumerate(accs):
            builder.store(acc, builder.gep(out, [ir.Constant(ir.IntType(64), r)]), align=8)
        return context.get_dummy_value()

    return codegen


def _epilogue_codegen(masked: bool, mode: int):
    """A whole tile with its epilogue in vector code: value = base[r] - 2 acc, then per the mode the int32 store
    (or in-place int32 add), the sign byte (value >= 0), the gate byte (NumPy's wrapping |int32| <= threshold) and
    the clipped int16 update h = clip(h + 2 value). For tiles whose TILE_M x TILE_N outputs all exist."""
    def codegen(context, builder, signature, args):
        (a_addr, lda, g_addr, b_addr, kw, base_addr, z_addr, ldz, sign_addr, gate_addr, ldbits, threshold,
         h_addr, ldh, clip) = args
        accs, splat = _accumulate(builder, a_addr, lda, g_addr, b_addr, kw, masked)
        i8, i16, i32, i64 = ir.IntType(8), ir.IntType(16), ir.IntType(32), ir.IntType(64)
        v32 = ir.VectorType(i32, TILE_N)
        v16 = ir.VectorType(i16, TILE_N)
        base_ptr = builder.inttoptr(base_addr, i64.as_pointer())
        z_ptr = builder.inttoptr(z_addr, i32.as_pointer())
        sign_ptr = builder.inttoptr(sign_addr, i8.as_pointer())
        gate_ptr = builder.inttoptr(gate_addr, i8.as_pointer())
        h_ptr = builder.inttoptr(h_addr, i16.as_pointer())
        zero32 = ir.Constant(v32, None)
        for r, acc in enumerate(accs):
            row = ir.Constant(i64, r)
            value = builder.sub(splat(builder.load(builder.gep(base_ptr, [row]))), builder.shl(acc, ir.Constant(acc.type, [1] * TILE_N)))
            v = builder.trunc(value, v32)  # |value| <= K: exact; the add below wraps as int32
            if mode & (OUT_Z | ADD_Z):
                at = builder.bitcast(builder.gep(z_ptr, [builder.mul(row, ldz)]), v32.as_pointer())
                if mode & ADD_Z:
                    v = builder.add(builder.load(at, align=4), v)
                builder.store(v, at, align=4)
            if mode & OUT_SIGN:
                bits = builder.bitcast(builder.icmp_signed(">=", v, zero32), i8)
                builder.store(bits, builder.gep(sign_ptr, [builder.mul(row, ldbits)]))
            if mode & OUT_GATE:
                absv = builder.select(builder.icmp_signed("<", v, zero32), builder.sub(zero32, v), v)
                le = builder.icmp_signed("<=", builder.sext(absv, value.type), splat(threshold))
                builder.store(builder.bitcast(le, i8), builder.gep(gate_ptr, [builder.mul(row, ldbits)]))
            if mode & OUT_H:
                at = builder.bitcast(builder.gep(h_ptr, [builder.mul(row, ldh)]), v16.as_pointer())
                new = builder.add(builder.sext(builder.load(at, align=2), value.type), builder.shl(value, ir.Constant(value.type, [1] * TILE_N)))
                hi = splat(clip)
                lo = builder.sub(ir.Constant(value.type, None), hi)
                new = builder.select(builder.icmp_signed(">", new, hi), hi, new)
                new = builder.select(builder.icmp_signed("<", new, lo), lo, new)
                builder.store(builder.trunc(new, v16), at, align=2)
        return context.get_dummy_value()

    return codegen


_ACC_SIG = types.void(types.uintp, types.intp, types.uintp, types.uintp, types.intp, types.uintp)
_EPI_SIG = types.void(types.uintp, types.intp, types.uintp, types.uintp, types.intp, types.uintp, types.uintp,
                      types.intp, types.uintp, types.uintp, types.intp, types.int64, types.uintp, types.intp,
                      types.int64)


@intrinsic
def xor_popc_tile(typingctx, a_addr, lda, g_addr, b_addr, kw, acc_addr):
    """acc[r, c] = sum_w popcount(A[r, w] ^ P[w, c]) for r < TILE_M, c < TILE_N.

    a_addr: address of A's first word (rows lda words apart); g_addr: unused; b_addr: a panel P of kw x TILE_N
    words; acc_addr: TILE_M x TILE_N int64 output (written, not added to). All addresses from `arr.ctypes.data`.
    """
    return _ACC_SIG, _acc_codegen(masked=False)


@intrinsic
def masked_xor_popc_tile(typingctx, a_addr, lda, g_addr, b_addr, kw, acc_addr):
    """acc[r, c] = sum_w popcount((A[r, w] ^ P[w, c]) & G[r, w]): as xor_popc_tile with a per-row mask G laid out
    like A (the gate bits of the targets' product, the selection bits of the update)."""
    return _ACC_SIG, _acc_codegen(masked=True)


def _epilogue_tile(masked: bool, mode: int):
    @intrinsic
    def tile(typingctx, a_addr, lda, g_addr, b_addr, kw, base_addr, z_addr, ldz, sign_addr, gate_addr, ldbits,
             threshold, h_addr, ldh, clip):
        return _EPI_SIG, _epilogue_codegen(masked, mode)

    tile.__doc__ = f"A full tile and its vector epilogue (masked={masked}, mode={mode}); addresses at the tile's origin."
    return tile


# The (mask, epilogue) pairs the backend uses, as whole-tile kernels; other pairs take the scalar epilogue.
tile_z = _epilogue_tile(False, OUT_Z)
tile_z_sign = _epilogue_tile(False, OUT_Z | OUT_SIGN)
tile_z_sign_gate = _epilogue_tile(False, OUT_Z | OUT_SIGN | OUT_GATE)
tile_add_sign = _epilogue_tile(False, ADD_Z | OUT_SIGN)
masked_tile_sign = _epilogue_tile(True, OUT_SIGN)
masked_tile_z = _epilogue_tile(True, OUT_Z)
masked_tile_h = _epilogue_tile(True, OUT_H)


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
