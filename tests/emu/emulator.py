"""Run the CUDA kernels of kernels/*.cu on the CPU (test-only), through the same launch API as cupy.RawKernel.

The .cu sources are compiled with g++ against cuda_emu.h (CUDA built-ins as C++: blocks one at a time, the
threads of a block as fibers switched at barriers). For every `extern "C" __global__ void NAME(...)` a C thunk
`emu_NAME(gx, gy, gz, bx, by, bz, void** args)` and a signature string `emu_sig_NAME()` are generated; the
signature comes from the compiler (decltype of the kernel), so typedefs such as u64 need no parsing here.

Calls are checked strictly, because the GPU path passes arguments by their NumPy type without conversion:
a scalar must be a NumPy scalar of exactly the parameter's type (a Python int, or np.int64 for an `int`
parameter, would be a silent bug on the GPU), an array must be C-contiguous with the pointee's kind and size.
Arrays are run inside guard zones of garbage bytes: a write outside an array fails the call, and a read outside
it sees garbage that shows up as a mismatch against the NumPy mirror.
"""
from __future__ import annotations

import ctypes
import collections
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
KERNEL_DIR = REPO / "kernels"
CXX = os.environ.get("CXX", "g++")
CXXFLAGS = ["-std=c++20", "-O1", "-pthread", "-shared", "-fPIC", "-w"]

# extern "C" __global__ void [__launch_bounds__(...)] NAME(params) {
_KERNEL_RE = re.compile(
    r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?([A-Za-z_]\w*)\s*\(([^)]*)\)', re.S
)
MAX_DYNAMIC_SMEM = 227 * 1024  # per block on sm_90, with cudaFuncAttributeMaxDynamicSharedMemorySize set
_GUARD = 256  # bytes of garbage on each side of every array argument
_GUARD_BYTE = 0xA5


def kernel_signatures(source: str) -> dict[str, list[str]]:
    """{kernel name: [parameter declarations]} of every extern "C" __global__ kernel in source."""
    out = {}
    for m in _KERNEL_RE.finditer(source):
        params = [p.strip() for p in m.group(2).split(",") if p.strip()]
        out[m.group(1)] = params
    return out


def _cache_dir() -> Path:
    d = Path(os.environ.get("BEP_EMU_CACHE", Path(tempfile.gettempdir()) / "bep_gpu_emu"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def _wrapper_source(paths: list[Path]) -> tuple[str, dict[str, list[str]]]:
    lines = ['#include "cuda_emu.h"']
    kernels: dict[str, list[str]] = {}
    for p in paths:
        lines.append(f'#include "{p}"')
        for name, params in kernel_signatures(p.read_text()).items():
            if name in kernels:
                raise ValueError(f"kernel {name} defined twice")
            kernels[name] = params
    for name in kernels:
        lines.append(
            f'extern "C" int emu_{name}(unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, '
            f"unsigned bz, unsigned smem, void** args) {{ return emu::run(&{name}, gx, gy, gz, bx, by, bz, smem, "
            f"args); }}"
        )
        lines.append(
            f'extern "C" const char* emu_sig_{name}() {{ static const std::string s = emu::signature(&{name}); '
            f"return s.c_str(); }}"
        )
    return "\n".join(lines) + "\n", kernels


def build(paths, include_dirs=(KERNEL_DIR,)) -> tuple[Path, dict[str, list[str]]]:
    """Compile the .cu files into one shared library (cached by the hash of everything that goes in)."""
    paths = [Path(p).resolve() for p in paths]
    include_dirs = [Path(d).resolve() for d in include_dirs]
    src, kernels = _wrapper_source(paths)
    h = hashlib.sha256()
    h.update(src.encode())
    h.update(" ".join([CXX] + CXXFLAGS).encode())
    for f in sorted({*paths, HERE / "cuda_emu.h", *(q for d in include_dirs for q in d.glob("*.cuh"))}):
        h.update(str(f).encode())
        h.update(f.read_bytes())
    so = _cache_dir() / f"emu_{h.hexdigest()[:24]}.so"
    if not so.exists():
        if shutil.which(CXX) is None:
            raise RuntimeError(f"{CXX} not found: the CUDA emulator needs a C++20 compiler")
        with tempfile.TemporaryDirectory(dir=so.parent) as tmp:
            cpp = Path(tmp) / "wrapper.cpp"
            cpp.write_text(src)
            tmp_so = Path(tmp) / so.name
            cmd = [CXX, *CXXFLAGS, f"-I{HERE}", *(f"-I{d}" for d in include_dirs), str(cpp), "-o", str(tmp_so)]
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode:
                raise RuntimeError(f"emulator build failed:\n{' '.join(cmd)}\n{res.stderr[-8000:]}")
            os.replace(tmp_so, so)  # atomic: parallel test runs never load a half-written library
    return so, kernels


def _dims(d) -> tuple[int, int, int]:
    d = (d,) if isinstance(d, (int, np.integer)) else tuple(d)
    if not 1 <= len(d) <= 3 or any(not isinstance(v, (int, np.integer)) for v in d):
        raise TypeError(f"launch dimensions must be 1-3 ints, got {d!r}")
    return tuple(int(v) for v in d) + (1,) * (3 - len(d))


class EmuKernel:
    """One kernel; called as kernel(grid, block, args, shared_mem=0), like cupy.RawKernel."""

    def __init__(self, lib, name: str, params: list[str]):
        self.name = name
        self._fn = getattr(lib, f"emu_{name}")
        self._fn.restype = ctypes.c_int
        self._fn.argtypes = [ctypes.c_uint] * 7 + [ctypes.POINTER(ctypes.c_void_p)]
        sig = getattr(lib, f"emu_sig_{name}")
        sig.restype = ctypes.c_char_p
        self.codes = sig().decode().rstrip(",").split(",") if params else []
        if len(self.codes) != len(params):
            raise RuntimeError(f"{name}: parsed {len(params)} parameters, the compiler says {self.codes}")
        self.params = params

    def __call__(self, grid, block, args, shared_mem=0):
        gx, gy, gz = _dims(grid)
        bx, by, bz = _dims(block)
        if not 0 <= int(shared_mem) <= MAX_DYNAMIC_SMEM:
            raise ValueError(f"{self.name}: dynamic shared memory of {shared_mem} bytes (the opt-in limit of sm_90 "
                             f"is {MAX_DYNAMIC_SMEM})")
        if min(gx, gy, gz, bx, by, bz) < 1 or gx >= 2**31 or gy > 65535 or gz > 65535:
            raise ValueError(f"{self.name}: invalid grid {(gx, gy, gz)}")
        if bx * by * bz > 1024 or bz > 64:
            raise ValueError(f"{self.name}: invalid block {(bx, by, bz)}")
        args = tuple(args)
        if len(args) != len(self.codes):
            raise TypeError(f"{self.name}: {len(self.codes)} arguments expected, got {len(args)}")
        keep, ptrs, copies = [], [], []
        for i, (code, a) in enumerate(zip(self.codes, args)):
            where = f"{self.name} argument {i} ({self.params[i]})"
            if code.startswith("*"):
                if not isinstance(a, np.ndarray):
                    raise TypeError(f"{where}: expected a NumPy array, got {type(a).__name__}")
                if not a.flags.c_contiguous:
                    raise ValueError(f"{where}: array is not C-contiguous")
                want = code[1:]
                have = f"{a.dtype.kind}{a.dtype.itemsize}"
                if have != want and not (want == "u1" and have == "b1"):
                    raise TypeError(f"{where}: array dtype {a.dtype} does not match {want}")
                buf = np.full(a.nbytes + 2 * _GUARD, _GUARD_BYTE, dtype=np.uint8)
                buf[_GUARD:_GUARD + a.nbytes] = a.reshape(-1).view(np.uint8)
                copies.append((a, buf))
                value = ctypes.c_void_p(buf.ctypes.data + _GUARD)
            else:
                if not isinstance(a, np.generic):
                    raise TypeError(f"{where}: expected a NumPy scalar of {code}, got {type(a).__name__} {a!r}")
                have = f"{a.dtype.kind}{a.dtype.itemsize}"
                if have != code:
                    raise TypeError(f"{where}: scalar {a!r} of {a.dtype} does not match {code}")
                value = ctypes.create_string_buffer(a.tobytes(), a.dtype.itemsize)
            keep.append(value)
            ptrs.append(ctypes.addressof(value))  # args[i] points at the value, as in cuLaunchKernel
        argv = (ctypes.c_void_p * max(1, len(ptrs)))(*ptrs)
        rc = self._fn(gx, gy, gz, bx, by, bz, int(shared_mem), argv)
        if rc:
            raise RuntimeError(f"{self.name}: emulated launch failed ({rc})")
        for a, buf in copies:
            guard = np.concatenate([buf[:_GUARD], buf[_GUARD + a.nbytes:]])
            if (guard != _GUARD_BYTE).any():
                raise RuntimeError(f"{self.name}: write outside an array argument of {a.nbytes} bytes")
            if a.nbytes:
                a.reshape(-1).view(np.uint8)[...] = buf[_GUARD:_GUARD + a.nbytes]


class EmuModule:
    """Stands in for cupy.RawModule: get_function(name) of a kernel defined in any of the given .cu files."""

    def __init__(self, paths=None, include_dirs=(KERNEL_DIR,)):
        self.paths = sorted(KERNEL_DIR.glob("*.cu")) if paths is None else [Path(p) for p in paths]
        so, self.signatures = build(self.paths, include_dirs)
        self._lib = ctypes.CDLL(str(so))
        self._kernels: dict[str, EmuKernel] = {}

    def get_function(self, name: str) -> EmuKernel:
        if name not in self._kernels:
            if name not in self.signatures:
                raise AttributeError(f"no kernel {name!r} in the emulated module")
            self._kernels[name] = EmuKernel(self._lib, name, self.signatures[name])
        return self._kernels[name]


@functools.lru_cache(maxsize=None)
def emulated_module() -> EmuModule:
    """All kernels of kernels/*.cu in one emulated module (built once per process, cached on disk)."""
    return EmuModule()


class CountingModule:
    """An emulated module that counts each kernel's launches (`launches`), for tests of what a step launches."""

    def __init__(self, module: EmuModule | None = None):
        self.module = module if module is not None else emulated_module()
        self.launches: collections.Counter = collections.Counter()

    def get_function(self, name: str):
        fn = self.module.get_function(name)

        def launch(*args, **kwargs):
            self.launches[name] += 1
            return fn(*args, **kwargs)

        return launch


@functools.lru_cache(maxsize=None)
def make_emulated_backend():
    """CudaBackend running its kernels in the emulator on NumPy arrays (xp = numpy)."""
    from bep_gpu.backends.cuda_backend import CudaBackend

    return CudaBackend(module=emulated_module(), xp=np)
