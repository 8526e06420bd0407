"""CUDA backend: every primitive of base.Backend as a raw CUDA kernel from kernels/*.cu, bit-exact with NumPy.

Everything but the kernel bodies lives here: argument checks, output allocation, launch configuration and the
exact NumPy scalar type of every kernel argument (CuPy passes a scalar by its own type, so an np.int64 given
for an `int` parameter would shift every later argument). The kernel module and the array module are
injectable, `CudaBackend(module, xp)`, so the CPU emulator of the tests (tests/emu) runs this very code with
xp = numpy. Arrays stay on the device: no primitive copies to the host or synchronises.
"""
from __future__ import annotations

import importlib.resources
import os
import re
import threading
import warnings
from pathlib import Path

import numpy as np

from .. import bits as _bits
from .. import rng as _rng
from .base import (Backend, check_int_matmul_width, check_recurrence, check_select_wrong, check_update_operands,
                   delta_buffer, group_shape, update_impl)
from .cuda_conv import CudaConvKernels
from .tc_probe import tensor_core_mismatches

THREADS = 256  # every kernel but the tensor-core ones runs 256-thread blocks (the tiled ones assume exactly that)
# The b1 tensor-core kernels (kernels/tc_gemm.cuh): 8 warps; block tiles TC_BM_PLAIN (forward) or TC_BM_GATED
# (targets, update) rows x TC_BN columns; a 3-stage cp.async ring of 2 x 128 rows x 128 bytes in dynamic shared
# memory (above the default 48 KB, so each kernel opts in once).
TC_THREADS = 256
TC_BN, TC_BM_PLAIN, TC_BM_GATED = 128, 128, 64
TC_SMEM = 3 * 2 * 128 * 128
# Implementations of the three products (forward, gated transposed product, popcount update): "auto" runs the
# tensor-core kernels once the first-use layout probe passes on this device (CUDA cores where it cannot run or
# refuses, with a warning); BEP_XNOR_MATMUL in the environment picks the default of new backends.
MATMUL_IMPLS = ("auto", "cuda_core", "tensor_core")
TILE = 64  # output tile edge of the tiled kernels (popc_tile.cuh, int_matmul.cu)
TRANSPOSE_WORDS = 4  # input words per transpose tile row (transpose_bits.cu)
MAX_BLOCKS = 132 * 16  # grid-stride kernels: 16 blocks per H200 SM is plenty to hide latency
MAX_GRID_Y = 65535

_INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]+"([^"]+)"[ \t]*$', re.M)
_PRAGMA_ONCE_RE = re.compile(r"^[ \t]*#[ \t]*pragma[ \t]+once[ \t]*$", re.M)


def kernel_files() -> dict[str, str]:
    """{file name: text} of the CUDA sources, read from the installed package bep_gpu.kernels.

    In a source checkout that is not installed (PYTHONPATH=.), the package does not exist and the top-level
    kernels/ directory, which pyproject.toml ships as bep_gpu.kernels, is read instead.
    """
    try:
        root = importlib.resources.files("bep_gpu.kernels")
    except ModuleNotFoundError:
        root = Path(__file__).resolve().parents[2] / "kernels"
    files = {p.name: p.read_text() for p in root.iterdir() if p.name.endswith((".cu", ".cuh"))}
    if not any(name.endswith(".cu") for name in files):
        raise RuntimeError(f"no CUDA kernel sources found in {root}")
    return files


def module_source(files: dict[str, str] | None = None) -> str:
    """All .cu files as one translation unit with local includes inlined once, so NVRTC needs no include path."""
    files = kernel_files() if files is None else files
    done: set[str] = set()

    def expand(name: str) -> str:
        if name in done:
            return ""
        done.add(name)
        if name not in files:
            raise RuntimeError(f"kernel source includes {name!r}, which is not shipped in bep_gpu.kernels")
        text = _PRAGMA_ONCE_RE.sub("", files[name])
        return _INCLUDE_RE.sub(lambda m: expand(m.group(1)), text)

    return "\n".join(expand(name) for name in sorted(files) if name.endswith(".cu"))


_module_lock = threading.Lock()
_cupy_module = None


def cupy_module():
    """One cupy.RawModule of all kernels per process (NVRTC compiles on first use; CuPy caches it on disk)."""
    global _cupy_module
    with _module_lock:
        if _cupy_module is None:
            import cupy

            # -lineinfo costs nothing at run time and lets Nsight Compute map samples to kernel source lines.
            _cupy_module = cupy.RawModule(code=module_source(), options=("-lineinfo",))
        return _cupy_module


def _blocks(n_threads: int) -> int:
    """Blocks of a grid-stride launch covering n_threads threads (capped: the kernels loop over the rest)."""
    return max(1, min(MAX_BLOCKS, -(-int(n_threads) // THREADS)))


def _tiles(n: int) -> int:
    return -(-int(n) // TILE)


def _i32(v) -> np.int32:
    v = int(v)
    if not -(2**31) < v < 2**31:
        raise ValueError(f"{v} does not fit the kernel's int32 parameter")
    return np.int32(v)


class CudaBackend(CudaConvKernels, Backend):
    name = "cuda"
    # launch helpers for the conv launchers (cuda_conv.py)
    _i32, _grid_blocks, _grid_tiles = staticmethod(_i32), staticmethod(_blocks), staticmethod(_tiles)
    _max_grid_y = MAX_GRID_Y

    def __init__(self, module=None, xp=None, matmul: str | None = None, update: str | None = None):
        if xp is None:
            import cupy as xp
        self.xp = xp
        self._gpu = xp is not np
        self._module = cupy_module() if module is None else module
        self._functions: dict[str, object] = {}
        self.matmul = self._matmul_impl(matmul if matmul is not None else os.environ.get("BEP_XNOR_MATMUL", "auto"))
        self._tensor_core_ok = None  # the layout probe's verdict once it ran (True / False)
        # "auto" is the popcount kernel until the sparse one is measured faster on a GPU (bep-bench --sections update).
        self.update = update_impl(update)
        self._active_one = xp.ones(1, dtype=xp.int64)  # `active` when the caller passes none

    def variant(self, matmul: str | None = None, update: str | None = None) -> "CudaBackend":
        """The same kernel module and array module (also the emulator's) with other xnor_matmul/update forms."""
        other = CudaBackend(module=self._module, xp=self.xp, matmul=self.matmul if matmul is None else matmul,
                            update=self.update if update is None else update)
        other._tensor_core_ok = self._tensor_core_ok  # same device, same kernels: one probe is enough
        return other

    # --- moving data -------------------------------------------------------------------------------------
    @property
    def device(self) -> str:
        if not self._gpu:
            return "cpu (CUDA kernel emulator)"
        dev = self.xp.cuda.Device()
        name = self.xp.cuda.runtime.getDeviceProperties(dev.id)["name"]
        return name.decode() if isinstance(name, bytes) else str(name)

    def asarray(self, x, dtype=None):
        return self.xp.asarray(x, dtype=dtype)

    def to_numpy(self, x) -> np.ndarray:
        return self.xp.asnumpy(x) if self._gpu else np.asarray(x)

    def synchronize(self) -> None:
        if self._gpu:
            self.xp.cuda.Device().synchronize()

    # --- helpers -------------------------------------------------------------------------------------------
    def _launch(self, name: str, grid, args, threads: int = THREADS, shared_mem: int = 0) -> None:
        fn = self._functions.get(name)
        if fn is None:
            fn = self._functions[name] = self._module.get_function(name)
            if shared_mem > 48 * 1024 and self._gpu:
                fn.max_dynamic_shared_size_bytes = shared_mem  # the opt-in above the default 48 KB
        fn(tuple(grid), (threads,), tuple(args), shared_mem=shared_mem)

    def _launch_tc(self, name: str, rows: int, block_rows: int, cols: int, args) -> None:
        """A tensor-core kernel over a rows x cols output in block_rows x TC_BN tiles (its word operands are
        indexed in int32: every one must stay below 2^31 words)."""
        if -(-rows // block_rows) > MAX_GRID_Y:
            raise ValueError(f"{name}: {rows} rows exceed one launch")
        if any(a.size >= 2**31 for a in args if hasattr(a, "dtype") and a.dtype == np.uint64):
            raise ValueError(f"{name}: an operand of 2^31 words or more; use matmul='cuda_core'")
        self._launch(name, (-(-cols // TC_BN), -(-rows // block_rows)), args, TC_THREADS, TC_SMEM)

    def _row_popcounts(self, x, y, z, k=None):
        """uint32 popc(x & y) per row of x, then popc(z) per row of z (bits past k ignored): the row counts
        the tensor-core epilogues need, in one launch."""
        rows_x, rows_z, kw = x.shape[0], z.shape[0], x.shape[1]
        out = self.xp.empty(rows_x + rows_z, dtype=self.xp.uint32)
        last = ~np.uint64(0) if k is None or k % 64 == 0 else np.uint64((1 << (k % 64)) - 1)
        self._launch("row_popcounts", (_blocks((rows_x + rows_z) * 32),),
                     (x, y, _i32(rows_x), z, _i32(rows_z), _i32(kw), last, out))
        return out

    @staticmethod
    def _matmul_impl(impl: str) -> str:
        if impl not in MATMUL_IMPLS:
            raise ValueError(f"xnor_matmul impl must be one of {', '.join(MATMUL_IMPLS)}, got {impl!r}")
        return impl

    def _tensor_cores(self, impl=None) -> bool:
        """Whether to run the b1 tensor-core kernels: "tensor_core" always (the probe must pass), "auto" when
        the device has b1 mma and the probe passed, "cuda_core" never."""
        impl = self.matmul if impl is None else self._matmul_impl(impl)
        if impl == "cuda_core":
            return False
        if self._tensor_core_ok is None:
            if impl == "auto" and self._gpu and int(self.xp.cuda.Device().compute_capability) < 80:
                self._tensor_core_ok = False
                return False
            try:
                self._check_tensor_core()
            except RuntimeError as e:
                self._tensor_core_ok = False
                if impl == "tensor_core":
                    raise
                warnings.warn(f"{e}; the CUDA-core kernels run instead", RuntimeWarning, stacklevel=3)
                return False
        elif not self._tensor_core_ok and impl == "tensor_core":
            raise RuntimeError("impl='tensor_core' was refused by this backend's layout probe; use cuda_core")
        return self._tensor_core_ok

    def _check_tensor_core(self) -> None:
        """Once per backend: every tensor-core kernel family equals its CUDA-core twin (tc_probe.py). A wrong
        layout must fail loudly here, never train on wrong products. Costs a few host synchronisations, on first
        use only."""
        xp = self.xp
        if self._gpu and int(xp.cuda.Device().compute_capability) < 80:
            raise RuntimeError("the tensor-core kernels need compute capability 8.0 or newer (b1 mma)")
        failed = tensor_core_mismatches(self)
        self._tensor_core_ok = not failed
        if failed:
            raise RuntimeError(f"the tensor-core kernels ({', '.join(sorted(set(failed)))}) disagree with the CUDA-core "
                               "ones on this device: the mma.m16n8k256 b1 fragment layout of kernels/mma_b1.cuh (or "
                               "the ldmatrix/cp.async staging of kernels/tc_gemm.cuh) is wrong here; use cuda_core")

    def _words(self, a):
        return self.xp.ascontiguousarray(self.xp.asarray(a, dtype=self.xp.uint64))

    def _int_array(self, a, dtype, what: str):
        """a as a contiguous array of dtype; only integer dtypes that convert exactly (no value checks on device)."""
        a = self.xp.asarray(a)
        dt = np.dtype(dtype)
        kind, size = a.dtype.kind, a.dtype.itemsize
        exact = (kind in "bi" and size <= dt.itemsize) or (kind == "u" and size < dt.itemsize)
        if not exact:
            raise TypeError(f"{what}: expected {dt} (or a narrower integer dtype), got {a.dtype}")
        return self.xp.ascontiguousarray(a, dtype=dt)

    def _inplace_int16(self, h, what: str):
        """A contiguous int16 device array to update in place, and whether it must be copied back into h."""
        if h.dtype != np.int16:
            raise TypeError(f"{what}: hidden weights must be int16, got {h.dtype}")
        if isinstance(h, self.xp.ndarray) and h.flags.c_contiguous:
            return h, False
        return self.xp.ascontiguousarray(self.xp.asarray(h)), True

    def _write_back(self, h, hc) -> None:
        h[...] = self.to_numpy(hc) if isinstance(h, np.ndarray) and self._gpu else hc

    def _pack_rows(self, kernel: str, x, extra=()):
        """Launch a pack-family kernel on x (..., n): one warp per output word."""
        xp = self.xp
        if x.ndim == 0:
            raise ValueError("pack: need at least one axis")
        n = x.shape[-1]
        nw = _bits.n_words(n)
        out_shape = x.shape[:-1] + (nw,)
        rows = int(np.prod(x.shape[:-1], dtype=np.int64))
        if rows == 0 or nw == 0:
            return xp.zeros(out_shape, dtype=xp.uint64)
        out = xp.empty(out_shape, dtype=xp.uint64)
        self._launch(kernel, (_blocks(rows * nw * 32),), (x, out, np.int64(rows), _i32(n), _i32(nw), *extra))
        return out

    # --- primitives ----------------------------------------------------------------------------------------
    def pack(self, x):
        xp = self.xp
        x = xp.asarray(x)
        kind, size = x.dtype.kind, x.dtype.itemsize
        if kind == "b":
            kernel = "pack_b1"
        elif kind == "u":
            x, kernel = xp.ones(x.shape, dtype=xp.bool_), "pack_b1"  # every unsigned value is >= 0
        elif kind == "i":
            kernel = f"pack_i{8 * size}"
        elif kind == "f" and size <= 8:
            if size < 4:
                x = x.astype(xp.float32)  # exact: the sign and NaN survive widening
            kernel = f"pack_f{8 * x.dtype.itemsize}"
        else:
            raise TypeError(f"pack: unsupported dtype {x.dtype}")
        return self._pack_rows(kernel, xp.ascontiguousarray(x))

    def pack_both(self, x):
        """As Backend.pack_both; int16 (the hidden weights) in one kernel, other dtypes by pack then transpose."""
        xp = self.xp
        x = xp.asarray(x)
        if x.ndim != 2 or x.dtype != np.int16:
            return super().pack_both(x)
        rows, n = x.shape
        out = xp.empty((rows, _bits.n_words(n)), dtype=xp.uint64)
        out_t = xp.empty((n, _bits.n_words(rows)), dtype=xp.uint64)
        if rows == 0 or n == 0:
            out[...], out_t[...] = 0, 0
            return out, out_t
        if _bits.n_words(rows) > MAX_GRID_Y:
            raise ValueError(f"pack_both: {rows} rows exceed one launch")
        self._launch("pack_both_i16", (_bits.n_words(n), _bits.n_words(rows)),
                     (xp.ascontiguousarray(x), out, out_t, _i32(rows), _i32(n)))
        return out, out_t

    def transpose_bits(self, words, n_rows, n_cols):
        xp = self.xp
        n_rows, n_cols = int(n_rows), int(n_cols)
        words = self._words(words)
        if words.shape != (n_rows, _bits.n_words(n_cols)):
            raise ValueError(f"transpose_bits: expected shape {(n_rows, _bits.n_words(n_cols))}, got {words.shape}")
        nwr = _bits.n_words(n_rows)
        if n_cols == 0 or nwr == 0:
            return xp.zeros((n_cols, nwr), dtype=xp.uint64)
        out = xp.empty((n_cols, nwr), dtype=xp.uint64)  # the kernel writes every word, padding included
        grid_y = -(-_bits.n_words(n_cols) // TRANSPOSE_WORDS)
        if grid_y > MAX_GRID_Y:
            raise ValueError(f"transpose_bits: {n_cols} columns exceed one launch")
        self._launch("transpose_bits", (nwr, grid_y), (words, out, _i32(n_rows), _i32(n_cols)))
        return out

    def xnor_matmul(self, a, b, k, impl: str | None = None):
        """As Backend.xnor_matmul; impl: "auto", "cuda_core" or "tensor_core" (default: this backend's `matmul`)."""
        a, b, k = self._matmul_operands(a, b, k, "xnor_matmul")
        return self._xnor_matmul(a, b, k, self._tensor_cores(impl), False, None)[0]

    def xnor_matmul_sign(self, a, b, k, gate=None, add=None, impl: str | None = None):
        """As Backend.xnor_matmul_sign, from one kernel: signs (and gate bits) are packed, and `add` added, in the
        epilogue instead of launches re-reading z (gate and add together: the add kernel, then gate_pack)."""
        a, b, k = self._matmul_operands(a, b, k, "xnor_matmul_sign")
        tc = self._tensor_cores(impl)
        if add is None:
            z, signs, gates = self._xnor_matmul(a, b, k, tc, True, gate)
            return (z, signs) if gate is None else (z, signs, gates)
        m, n = a.shape[0], b.shape[0]
        if add.shape != (m, n) or add.dtype != np.int32:
            raise ValueError(f"xnor_matmul_sign: add must be int32 {(m, n)}, got {add.dtype} {add.shape}")
        direct = isinstance(add, self.xp.ndarray) and add.flags.c_contiguous
        z = add if direct else self.xp.ascontiguousarray(self.xp.asarray(add))
        signs = self._xnor_matmul(a, b, k, tc, True, out=z)[1]
        if not direct:
            self._write_back(add, z)
        return (add, signs) if gate is None else (add, signs, self.gate_pack(z, gate))

    def sign_recurrence(self, x, w_in, k_in, w_rec, s0, gate=None):
        """As Backend.sign_recurrence, one kernel per step (xnor_matmul2_sign[_gate][_tc]): the step's input and
        state products into one tile, its signs and gate bits in the epilogue, so z_t is written once and the input
        product is never stored and re-read (with tensor cores, plus the step's row counts, row_popcounts_pair)."""
        x, w_in, w_rec, s0 = (self._words(v) for v in (x, w_in, w_rec, s0))
        k_in = int(k_in)
        _, n, k = check_recurrence(x, w_in, k_in, w_rec, s0)
        if n == 0 or k == 0 or k_in == 0:
            return super().sign_recurrence(x, w_in, k_in, w_rec, s0, gate)  # nothing for a kernel to do
        if _tiles(n) > MAX_GRID_Y:
            raise ValueError(f"sign_recurrence: {n} rows exceed one launch")
        return self._sign_recurrence(x, w_in, k_in, w_rec, s0, gate, self._tensor_cores())

    def _sign_recurrence(self, x, w_in, k_in, w_rec, s0, gate, tc: bool):
        """sign_recurrence's kernels on checked, non-empty operands, on the tensor cores or the CUDA cores."""
        xp = self.xp
        steps, n, k = x.shape[0], x.shape[1], w_rec.shape[0]
        nw, kw_in = _bits.n_words(k), x.shape[2]
        z = xp.empty((steps, n, k), dtype=xp.int32)
        s = xp.empty((steps + 1, n, nw), dtype=xp.uint64)
        s[0] = s0
        g = None if gate is None else xp.empty((steps, n, nw), dtype=xp.uint64)
        name = "xnor_matmul2_sign" + ("_gate" if g is not None else "") + ("_tc" if tc else "")
        thr = () if g is None else (np.int32(max(-1, min(2**31 - 1, int(gate)))),)  # |z| < 2^31: no bit changes
        dims = (_i32(n), _i32(k), _i32(kw_in), _i32(k_in), _i32(nw), _i32(k))
        last_in, last = (np.uint64((1 << (v % 64)) - 1) if v % 64 else ~np.uint64(0) for v in (k_in, k))
        pops = xp.empty(n + k, dtype=xp.uint32) if tc else None  # rewritten each step, in stream order
        for t in range(steps):
            outs = (z[t], s[t + 1]) + (() if g is None else (g[t],))
            if tc:
                self._launch("row_popcounts_pair", (_blocks((n + k) * 32),),
                             (x[t], s[t], _i32(n), w_in, w_rec, _i32(k), _i32(kw_in), _i32(nw), last_in, last, pops))
                self._launch_tc(name, n, TC_BM_PLAIN, k, (x[t], w_in, s[t], w_rec) + outs + (pops,) + dims + thr)
            else:
                self._launch(name, (_tiles(k), _tiles(n)), (x[t], w_in, s[t], w_rec) + outs + dims + thr)
        return (z, s) if g is None else (z, s, g)

    def _matmul_operands(self, a, b, k, what: str):
        k = int(k)
        a, b = self._words(a), self._words(b)
        kw = _bits.n_words(k)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != kw or b.shape[1] != kw:
            raise ValueError(f"{what}: need (M, {kw}) and (N, {kw}) words for k={k}, got {a.shape}, {b.shape}")
        if _tiles(a.shape[0]) > MAX_GRID_Y:
            raise ValueError(f"{what}: {a.shape[0]} rows exceed one launch")
        return a, b, k

    def _xnor_matmul(self, a, b, k: int, tensor_core: bool, sign: bool, gate=None, out=None):
        """(z, sign words or None, gate words or None) for checked operands, by the CUDA-core (popc_tile) or
        tensor-core kernel; gate (a threshold, with sign only) adds the bits |z| <= gate; out (with sign only,
        not with gate): a contiguous int32 (M, N) array the product is added to in place, returned as z."""
        xp = self.xp
        m, n, kw = a.shape[0], b.shape[0], a.shape[1]
        if m == 0 or n == 0 or kw == 0:
            z = xp.zeros((m, n), dtype=xp.int32) if out is None else out  # K = 0: every product is 0 (sign +1)
            return z, (self.pack(z) if sign else None), (None if gate is None else self.gate_pack(z, gate))
        add = out is not None
        if not add:
            out = xp.empty((m, n), dtype=xp.int32)
        # One block per word column of the bit outputs writes every word.
        packed = xp.empty((m, _bits.n_words(n)), dtype=xp.uint64) if sign else None
        gated = None if gate is None else xp.empty((m, _bits.n_words(n)), dtype=xp.uint64)
        name = ("xnor_matmul" + ("_sign" if sign else "") + ("_gate" if gated is not None else "")
                + ("_add" if add else "") + ("_tc" if tensor_core else ""))
        args = (a, b, out) + ((packed,) if sign else ()) + ((gated,) if gated is not None else ())
        args += (self._row_popcounts(a, a, b, k),) if tensor_core else ()
        args += (_i32(m), _i32(n), _i32(kw), _i32(k))
        if gated is not None:
            args += (np.int32(max(-1, min(2**31 - 1, int(gate)))),)  # |z| <= k < 2^31: the clamp changes no bit
        if tensor_core:
            self._launch_tc(name, m, TC_BM_PLAIN, n, args)
        else:
            self._launch(name, (_tiles(n), _tiles(m)), args)
        return out, packed, gated

    def gate_pack(self, z, threshold):
        z = self.xp.asarray(z)
        if z.dtype != np.int32:
            # np.abs wraps at the dtype's own minimum, so widening a narrower z first would change |min|.
            raise TypeError(f"gate_pack: z must be int32 (pre-activations), got {z.dtype}")
        z = self.xp.ascontiguousarray(z)
        # |z| <= threshold compared in int64 on the device; a threshold beyond int64 means the same as 2^62.
        thr = np.int64(max(-(2**62), min(2**62, int(threshold))))
        return self._pack_rows("gate_pack_i32", z, (thr,))

    def gated_transposed_product(self, t, g, wt):
        xp = self.xp
        t, g, wt = self._words(t), self._words(g), self._words(wt)
        if t.ndim != 2 or g.shape != t.shape or wt.ndim != 2 or wt.shape[1] != t.shape[1]:
            raise ValueError(f"gated_transposed_product: t {t.shape}, g {g.shape}, wt {wt.shape} do not match")
        n, kw = t.shape
        j = wt.shape[0]
        nwj = _bits.n_words(j)
        if n == 0 or nwj == 0:
            return xp.zeros((n, nwj), dtype=xp.uint64)
        if kw == 0:
            return self.pack(xp.zeros((n, j), dtype=xp.int32))  # every sum is 0: sign +1
        return self._gated_product(t, g, wt, self._tensor_cores())

    def _gated_product(self, t, g, wt, tensor_core: bool):
        n, kw = t.shape
        j = wt.shape[0]
        out = self.xp.empty((n, _bits.n_words(j)), dtype=self.xp.uint64)  # the blocks write every word
        args = (out, _i32(n), _i32(j), _i32(kw))
        if tensor_core:
            self._launch_tc("gated_transposed_product_tc", n, TC_BM_GATED, j,
                            (t, g, wt, self._row_popcounts(t, g, g)) + args)
        else:
            if _tiles(n) > MAX_GRID_Y:
                raise ValueError(f"gated_transposed_product: {n} rows exceed one launch")
            self._launch("gated_transposed_product", (_bits.n_words(j), _tiles(n)), (t, g, wt) + args)
        return out

    def group_select(self, score, cand, gamma):
        score = self._int_array(score, np.int32, "group_select score")
        n_rows, k, nw, gamma = group_shape("group_select", score, gamma)
        cand = self._words(cand)
        if cand.shape != (n_rows, nw):
            raise ValueError(f"group_select: cand must be {(n_rows, nw)}, got {cand.shape}")
        return self._launch_groups("group_select", (score, cand), n_rows, k, gamma)

    def select_wrong(self, z, a, t, row_mask, gamma):
        """As Backend.select_wrong, in one kernel: candidates and |z| are read where group_select would read the
        arrays they make."""
        z = self._int_array(z, np.int32, "select_wrong z")
        n_rows, k, nw, gamma = group_shape("select_wrong", z, gamma)
        a, t, row_mask = self._words(a), self._words(t), self._words(row_mask)
        m = check_select_wrong(z, a, t, row_mask)
        return self._launch_groups("select_wrong", (z, a, t, row_mask, np.int64(max(m, 1))), n_rows, k, gamma)

    def _launch_groups(self, kernel, inputs, n_rows, k, gamma):
        """The selection bits of a group_select-family kernel: one group per `width` lanes of a warp."""
        nw = _bits.n_words(k)
        out = self.xp.zeros((n_rows, nw), dtype=self.xp.uint64)  # the kernel ORs selections into it
        total = n_rows * (k // gamma)
        if total == 0:
            return out
        width = min(32, 1 << (gamma - 1).bit_length())  # lanes per group: a power of two covering gamma
        warps = -(-total // (32 // width))
        self._launch(kernel, (_blocks(warps * 32),),
                     inputs + (out, np.int64(n_rows), _i32(k), _i32(nw), _i32(gamma), _i32(width)))
        return out

    def batch_update(self, h, sel, t, x, clip):
        self._batch_update(h, sel, t, x, clip, None)

    def batch_update_reinforce(self, h, sel, t, x, clip, threshold, seed, stream, step, layer, active=None):
        """As Backend.batch_update_reinforce, in one kernel: the reinforcement fires in the update's store (no
        reinforce launch, no second pass over h)."""
        self._batch_update(h, sel, t, x, clip, (threshold, seed, stream, step, layer, active))

    def _batch_update(self, h, sel, t, x, clip, reinforcement):
        xp = self.xp
        k, j = h.shape
        sel, t, x = self._words(sel), self._words(t), self._words(x)
        n = check_update_operands("batch_update", sel, t, x, k, j)
        clip = _i32(clip)
        hc, copied = self._inplace_int16(h, "batch_update")
        if k == 0 or j == 0:
            return
        if n == 0:
            # No samples: only the clip remains; as in the NumPy mirror, without a kernel launch.
            new = hc.astype(xp.int32)
            xp.clip(new, -int(clip), int(clip), out=new)
            hc[...] = new
            if reinforcement is not None:
                self.reinforce(hc, *reinforcement[:5], int(clip), active=reinforcement[5])
        else:
            self._launch_update("batch_update", hc, sel, t, x, n, k, j, (clip,) + self._reinforce_args(reinforcement))
        if copied:
            self._write_back(h, hc)

    def _reinforce_args(self, reinforcement):
        """The reinforcement kernel arguments (key, step, layer, on_device, threshold, active) of
        reinforcement = (threshold, seed, stream, step, layer, active), or of none (threshold 0) for None. An int
        step gives the host's rng_key; a device step array, the stream key finished in the kernel."""
        if reinforcement is None:
            return np.uint64(0), self._active_one, np.uint64(0), np.int32(0), np.uint64(0), self._active_one
        threshold, seed, stream, step, layer, active = reinforcement
        xp = self.xp
        if active is None:
            act = self._active_one
        else:
            act = xp.asarray(active).reshape(-1)[:1]
            # The kernels read int64; non-integer flags keep NumPy's truthiness.
            act = xp.ascontiguousarray(act, dtype=xp.int64) if act.dtype.kind in "biu" else (act != 0).astype(xp.int64)
        thr = np.uint64(min(max(int(threshold), 0), 2**32))  # u < 2^32 always, so larger thresholds all mean "always"
        if isinstance(step, (int, np.integer)):
            return np.uint64(_rng.rng_key(seed, stream, step, layer)), self._active_one, np.uint64(0), np.int32(0), thr, act
        step = self._int_array(step, np.int64, "reinforce step").reshape(-1)[:1]
        return (np.uint64(_rng.stream_key(seed, stream)), step, np.uint64(int(layer) & _rng.MASK64), np.int32(1), thr,
                act)

    def _launch_update(self, kernel, out, sel, t, x, n, k, j, extra=()):
        """One update kernel on (K, J) `out` (h or the int32 delta), in the backend's update form. Both take sel
        and t packed along the batch (row k: the samples that selected unit k, and their target bits); the
        popcount form takes x batch-packed too (a gated popcount over words of samples), the sparse form takes it
        as it is (it reads the input rows of the few selecting samples)."""
        nwn = _i32(_bits.n_words(n))
        if self.update == "sparse":
            sel_t, t_t, _, _ = self._update_operands(sel, t, x, n, k, 0, False)
            self._launch(kernel + "_sparse", (-(-j // THREADS), min(k, MAX_GRID_Y)),
                         (out, sel_t, t_t, x, _i32(k), _i32(j), nwn, _i32(_bits.n_words(j))) + extra)
            return
        tc = self._tensor_cores()
        self._update_popcount(kernel, out, *self._update_operands(sel, t, x, n, k, j, tc), n, k, j, tc, extra)

    def _update_operands(self, sel, t, x, n, k, j, counts: bool):
        """(selT, tT, xT, pops) of update_operands (transpose_bits.cu), one launch: sel and t (N, n_words(K))
        and, unless j == 0, x (N, n_words(J)) packed along the batch; with counts, the tensor-core update's row
        counts popc(tT & selT) then popc(selT) (else pops and, with j == 0, xT are None)."""
        xp, nwn = self.xp, _bits.n_words(n)
        sel_t, t_t = xp.empty((k, nwn), dtype=xp.uint64), xp.empty((k, nwn), dtype=xp.uint64)
        x_t = xp.empty((j, nwn), dtype=xp.uint64) if j else None
        pops = xp.zeros(2 * k if counts else 1, dtype=xp.uint32)  # the kernel adds the counts into it
        grid_y = -(-_bits.n_words(k) // TRANSPOSE_WORDS) + -(-_bits.n_words(j) // TRANSPOSE_WORDS)
        if grid_y > MAX_GRID_Y:
            raise ValueError(f"update_operands: {k} + {j} columns exceed one launch")
        x_out = xp.empty(1, dtype=xp.uint64) if x_t is None else x_t  # never written with j == 0
        self._launch("update_operands", (nwn, grid_y),
                     (sel, t, x, sel_t, t_t, x_out, _i32(n), _i32(k), _i32(j), np.int32(counts), pops))
        return sel_t, t_t, x_t, pops if counts else None

    def _update_popcount(self, kernel, out, sel_t, t_t, x_t, pops, n, k, j, tensor_core: bool, extra=()):
        """The popcount form on batch-packed operands (K, J and n_words(n) words per row; pops: the row counts
        of the tensor-core form)."""
        args = (_i32(k), _i32(j), _i32(_bits.n_words(n))) + extra
        if tensor_core:
            self._launch_tc(kernel + "_tc", k, TC_BM_GATED, j, (out, sel_t, t_t, x_t, pops) + args)
            return
        args = (out, sel_t, t_t, x_t) + args
        if _tiles(k) > MAX_GRID_Y:
            raise ValueError(f"{kernel}: {k} rows exceed one launch")
        self._launch(kernel, (_tiles(j), _tiles(k)), args)

    def update_delta(self, sel, t, x, k, j, out=None):
        """int32 (K, J) = sum_n (sel[n] * t[n]) outer x[n] (batch_update's sum, not doubled, not clipped)."""
        xp = self.xp
        k, j = int(k), int(j)
        sel, t, x = self._words(sel), self._words(t), self._words(x)
        n = check_update_operands("update_delta", sel, t, x, k, j)
        delta, direct = delta_buffer(xp, out, k, j)
        if n == 0 or k == 0 or j == 0:
            delta[...] = 0
        else:
            self._launch_update("update_delta", delta, sel, t, x, n, k, j)
        if out is None or direct:
            return delta
        self._write_back(out, delta)
        return out

    def trigger(self, logits, labels, margin):
        """As Backend.trigger, in one kernel (kernels/trigger.cu) plus the zeroing of the counts."""
        xp = self.xp
        logits = self._int_array(logits, np.int32, "trigger logits")
        labels = self._int_array(labels, np.int64, "trigger labels")
        if logits.ndim != 2 or labels.shape != (logits.shape[0],) or (logits.shape[0] and logits.shape[1] == 0):
            raise ValueError(f"trigger: need logits (N, C >= 1) and labels (N,), got {logits.shape}, {labels.shape}")
        n = logits.shape[0]
        counts = xp.zeros(2, dtype=xp.uint64)
        row = xp.empty((n, 1), dtype=xp.uint64)
        if n:
            margin = np.int64(max(-(2**62), min(2**62, int(margin))))  # |own - other| < 2^33: the clamp changes nothing
            self._launch("trigger", (_blocks(n * 32),),
                         (logits, labels, np.int64(n), _i32(logits.shape[1]), margin, counts, row))
        return counts.view(xp.int64), row

    def reinforce(self, h, threshold, seed, stream, step, layer, clip, active=None):
        if int(threshold) <= 0 or h.size == 0:
            return
        clip = _i32(clip)
        key, step, layer, on_device, thr, act = self._reinforce_args((threshold, seed, stream, step, layer, active))
        hc, copied = self._inplace_int16(h, "reinforce")
        if on_device:  # a device step counter: the key is finished in the kernel
            self._launch("reinforce_at_step", (_blocks(hc.size),),
                         (hc, np.int64(hc.size), key, step, layer, thr, clip, act))
        else:
            self._launch("reinforce", (_blocks(hc.size),), (hc, np.int64(hc.size), key, thr, clip, act))
        if copied:
            self._write_back(h, hc)

    def counter_uniform(self, seed, stream, step, layer, n):
        xp = self.xp
        n = int(n)
        out = xp.empty(n, dtype=xp.uint32)
        if n:
            key = np.uint64(_rng.rng_key(seed, stream, step, layer))
            self._launch("counter_uniform", (_blocks(n),), (out, np.int64(n), key))
        return out

    def int_matmul(self, x, h):
        xp = self.xp
        h = self._int_array(h, np.int16, "int_matmul h")
        if h.ndim != 2:
            raise ValueError(f"int_matmul: h must be (K, J), got {h.shape}")
        k, j = h.shape
        check_int_matmul_width(j)
        x = self._words(x)
        if x.ndim != 2 or x.shape[1] != _bits.n_words(j):
            raise ValueError(f"int_matmul: x must be (N, {_bits.n_words(j)}) words for J={j}, got {x.shape}")
        n = x.shape[0]
        if n == 0 or k == 0 or j == 0:
            return xp.zeros((n, k), dtype=xp.int32)
        if _tiles(n) > MAX_GRID_Y:
            raise ValueError(f"int_matmul: {n} rows exceed one launch")
        out = xp.empty((n, k), dtype=xp.int32)
        self._launch("int_matmul", (_tiles(k), _tiles(n)), (x, h, out, _i32(n), _i32(k), _i32(j)))
        return out
