"""Data-parallel BEP training that is bit-identical to one process (docs/DISTRIBUTED.md).

Every process holds the whole model (same seed, same data order) and steps on its contiguous slice of each
global mini-batch. BEP's update is an integer sum over samples (docs/ALGORITHM.md section 4.5), so the per-process partial
sums, added in int32 (exact, in any order), are the one-process sum; it is all-reduced BEFORE the single clip.
Reinforcement draws from the counter RNG keyed by (seed, step, layer, weight index), never by a sample, and its
`active` flag is the global triggered count, so every process applies the same flips.

Per step ONE int32 buffer is all-reduced: every layer's update sum (one int32 per hidden weight) followed by
the counts [misclassified, triggered] (StepReduction).

Processes come from an MPI launcher (mpirun/mpiexec/srun): `--distributed mpi` sums NumPy host arrays with
mpi4py; `--distributed nccl` sums device arrays with CuPy's NCCL binding and uses MPI only to start (ranks, the
NCCL id) and to stop. A process that stops answering makes every other one exit with an error after
`--dist-timeout` seconds instead of hanging (MPI_Abort ends the whole job).
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import zlib

import numpy as np

from .errors import UserError
from .profiling import nvtx_range

MODES = ("auto", "none", "mpi", "nccl")
# Set by Open MPI's mpirun and by PMI launchers (MPICH hydra, Slurm srun --mpi=pmi2): the job's process count.
# Other launchers: pass --distributed mpi or nccl explicitly.
LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
# Test hook: "RANK:CALL:exit" or "RANK:CALL:hang" makes process RANK exit (status 3) or hang at its CALL-th
# all-reduce (0-based), standing in for a crashed or stuck worker (tests/test_distributed.py).
FAULT_ENV = "BEP_DIST_FAULT"
ABORT_CODE = 2  # the exit status of every user-facing error (cli.common.run_cli)


def shard(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rows [lo, hi) of an n-row global mini-batch for `rank`: contiguous, in rank order, sizes differ by <= 1
    (a rank gets none when n < size)."""
    return n * rank // size, n * (rank + 1) // size


def launched_size() -> int:
    """Process count announced by an MPI launcher's environment (1 when not launched by one)."""
    for var in LAUNCHER_SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 1


class Communicator:
    """A group of `size` processes, this one being `rank`. Sums are exact (integer arrays) and in place."""

    name = "none"
    rank = 0
    size = 1
    local_rank = 0  # index among this node's processes: which GPU this process uses

    def allreduce_sum(self, buf):
        """buf (a contiguous integer array of the backend) becomes the element-wise sum over ranks; returns buf."""
        raise NotImplementedError

    def barrier(self) -> None:
        """Returns once every rank got here and this rank's queued sums have finished (bounded by the timeout)."""
        raise NotImplementedError

    def check_identical(self, value: int, what: str) -> None:
        """Stop every rank unless all hold the same value (a fingerprint of `what`, below 2^31)."""
        raise NotImplementedError


class SingleProcess(Communicator):
    """One process: every collective is the identity."""

    def allreduce_sum(self, buf):
        return buf

    def barrier(self) -> None:
        pass

    def check_identical(self, value: int, what: str) -> None:
        pass


class _Watchdog:
    """Calls on_timeout(what) when one guarded call outlasts `timeout` s: a blocking collective whose peer died
    or hangs never returns, and a thread is the only thing that can still act (mpi4py releases the GIL)."""

    def __init__(self, timeout: float, on_timeout):
        self.timeout = float(timeout)
        self.on_timeout = on_timeout
        self.deadline = None
        self.what = ""
        threading.Thread(target=self._watch, name="bep-dist-watchdog", daemon=True).start()

    def _watch(self) -> None:
        period = min(1.0, self.timeout / 4)
        while True:
            time.sleep(period)
            deadline = self.deadline
            if deadline is not None and time.monotonic() > deadline:
                self.on_timeout(self.what)
                return

    def start(self, what: str) -> None:
        self.what = what
        self.deadline = time.monotonic() + self.timeout

    def stop(self) -> None:
        self.deadline = None


class MPIComm(Communicator):
    """MPI (mpi4py) on host arrays; device arrays are copied to the host and back (use NCCLComm on GPUs)."""

    name = "mpi"

    def __init__(self, timeout: float):
        try:
            from mpi4py import MPI
        except ImportError as e:
            raise UserError(f"--distributed {self.name} needs mpi4py ({e}); install an MPI library (e.g. "
                            "apt-get install openmpi-bin libopenmpi-dev) and pip install mpi4py") from None
        self._mpi = MPI
        self._comm = MPI.COMM_WORLD
        self.rank, self.size = self._comm.Get_rank(), self._comm.Get_size()
        self.local_rank = self._comm.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
        self.timeout = float(timeout)
        self._watchdog = _Watchdog(timeout, self._timed_out)
        self._calls = 0
        self._fault = self._fault_for(self.rank)

    @staticmethod
    def _fault_for(rank: int):
        spec = os.environ.get(FAULT_ENV)
        if not spec:
            return None
        fault_rank, call, mode = spec.split(":")
        return (int(call), mode) if int(fault_rank) == rank else None

    def _count_call(self) -> None:
        if self._fault is not None and self._calls == self._fault[0]:
            if self._fault[1] == "exit":
                os._exit(3)
            time.sleep(10**6)  # "hang"
        self._calls += 1

    def _timed_out(self, what: str) -> None:
        self.fail(f"no {what} from every process within {self.timeout:g} s: a process died or hangs "
                  "(raise --dist-timeout if some are just slow)")

    def fail(self, message: str) -> None:
        """Report on stderr and end the whole job (every rank), as MPI_Abort does."""
        print(f"bep-train: error: distributed rank {self.rank} of {self.size}: {message}", file=sys.stderr,
              flush=True)
        self._comm.Abort(ABORT_CODE)

    def _host_sum(self, buf: np.ndarray, what: str) -> np.ndarray:
        self._watchdog.start(what)
        try:
            self._comm.Allreduce(self._mpi.IN_PLACE, buf, op=self._mpi.SUM)
        finally:
            self._watchdog.stop()
        return buf

    def allreduce_sum(self, buf):
        self._count_call()
        if isinstance(buf, np.ndarray):
            return self._host_sum(buf, "all-reduce")
        host = buf.get()
        self._host_sum(host, "all-reduce")
        buf.set(host)
        return buf

    def barrier(self) -> None:
        self._watchdog.start("barrier")
        try:
            self._comm.Barrier()
        finally:
            self._watchdog.stop()

    def check_identical(self, value: int, what: str) -> None:
        # Every rank checks sum == size * own value: if all pass, every value equals sum / size.
        total = int(self._host_sum(np.array([value], dtype=np.int64), "check")[0])
        if total != self.size * int(value):
            self.fail(f"the processes hold different {what}; every rank needs the same settings, dataset files "
                      "and checkpoint")


class NCCLComm(MPIComm):
    """Sums device (CuPy) arrays with NCCL, one process per GPU; MPI gives the ranks, the NCCL id and the abort.

    UNVERIFIED: written against cupy.cuda.nccl's documented API, never run (no multi-GPU machine was available).
    allreduce_sum only enqueues the sum on the current stream (no host wait, like every other step kernel);
    barrier() is where a rank waits for it, polling a CUDA event so that a hung peer hits the timeout.
    """

    name = "nccl"

    def __init__(self, timeout: float):
        super().__init__(timeout)
        try:
            import cupy
            from cupy.cuda import nccl
        except ImportError as e:
            raise UserError(f"--distributed nccl needs CuPy with NCCL ({e}); install bep-gpu[cuda], or use "
                            "--distributed mpi") from None
        self._cp, self._nccl = cupy, nccl
        bind_gpu(self)  # before the communicator: NCCL ties it to the current device
        self._watchdog.start("NCCL start-up")
        try:
            uid = self._comm.bcast(nccl.get_unique_id() if self.rank == 0 else None, root=0)
            self._nccl_comm = nccl.NcclCommunicator(self.size, uid, self.rank)
        finally:
            self._watchdog.stop()
        self._types = {np.dtype(np.int32): nccl.NCCL_INT32, np.dtype(np.int64): nccl.NCCL_INT64}

    def allreduce_sum(self, buf):
        if isinstance(buf, np.ndarray):
            return super().allreduce_sum(buf)
        self._count_call()
        stream = self._cp.cuda.get_current_stream()
        self._nccl_comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self._types[buf.dtype],
                                  self._nccl.NCCL_SUM, stream.ptr)
        return buf

    def barrier(self) -> None:
        done = self._cp.cuda.Event(disable_timing=True)
        done.record()
        deadline = time.monotonic() + self.timeout
        while not done.done:
            if time.monotonic() > deadline:
                self._timed_out("NCCL all-reduce")
            time.sleep(1e-3)
        super().barrier()

    def fail(self, message: str) -> None:
        self._nccl_comm.abort()  # frees a kernel spinning on a dead peer before the job ends
        super().fail(message)


def bind_gpu(comm: Communicator) -> None:
    """One GPU per process on each node (local rank modulo the device count); call before any CuPy allocation."""
    if comm.size == 1:
        return
    try:
        import cupy

        n = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # no CuPy or no driver: the NumPy backend, or get_backend explains
        return
    if n:
        cupy.cuda.Device(comm.local_rank % n).use()


def make_communicator(mode: str, timeout: float) -> Communicator:
    """`--distributed`: none; mpi; nccl; auto = mpi when an MPI launcher started more than one process."""
    if mode not in MODES:
        raise UserError(f"--distributed must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "none" or (mode == "auto" and launched_size() <= 1):
        return SingleProcess()
    return NCCLComm(timeout) if mode == "nccl" else MPIComm(timeout)


def fingerprint(settings: dict, arrays) -> int:
    """31-bit crc32 of settings (JSON) and host arrays: what data-parallel replicas must agree on."""
    crc = zlib.crc32(json.dumps(settings, sort_keys=True, default=str).encode())
    for a in arrays:
        crc = zlib.crc32(np.ascontiguousarray(a).view(np.uint8).ravel(), crc)
    return crc & 0x7FFFFFFF


def apply_updates(bk, comm: Communicator | None, hidden, n_rows: int, clip: int, select, reinforcement=None,
                  frozen=()):
    """The update phase of a BEP step (MLP, RNN and conv), in place on `hidden`; returns the step's int64 counts.

    select() -> (counts, [(sel, t, a_in) per matrix]) computes steps 1-4 on this process's n_rows rows. One
    process: the fused batch_update per matrix. Several: update_delta into one StepReduction buffer, one
    all-reduce, apply_delta; a process without rows this step (n_rows = 0) adds zeros and selects nothing.
    reinforcement(i) -> (threshold, seed, stream, step, layer) of matrix i: section 4.6 after the update, skipped
    on the device when no sample of the step triggered (counts[1] == 0, no host synchronisation); one process
    fuses it into the update (batch_update_reinforce). frozen: indices of matrices left as they are (no update,
    no reinforcement; their selections are still made, so the other matrices' step is unchanged).
    """
    if comm is None or comm.size == 1:
        counts, updates = select()
        with nvtx_range("update"):
            for i, (h, (sel, t, a)) in enumerate(zip(hidden, updates)):
                if i in frozen:
                    continue
                if reinforcement is None:
                    bk.batch_update(h, sel, t, a, clip)
                else:
                    bk.batch_update_reinforce(h, sel, t, a, clip, *reinforcement(i), active=counts[1:2])
        return counts
    red = StepReduction(bk, [h.shape for h in hidden])
    if n_rows:
        counts, updates = select()
        with nvtx_range("update"):
            for i, (d, (sel, t, a)) in enumerate(zip(red.deltas, updates)):
                if i not in frozen:  # a frozen matrix's delta stays zero
                    bk.update_delta(sel, t, a, d.shape[0], d.shape[1], out=d)
            red.counts[...] = counts
    with nvtx_range("allreduce"):
        counts = red.reduce_apply(comm, hidden, clip)
    if reinforcement is not None:
        with nvtx_range("reinforcement"):
            for i, h in enumerate(hidden):
                if i not in frozen:
                    bk.reinforce(h, *reinforcement(i), clip, active=counts[1:2])
    return counts


class StepReduction:
    """One step's update sums of every weight matrix plus its counts in one int32 buffer, summed over ranks in
    one all-reduce (one call, not one per layer), then applied with one clip per matrix.

    Fill `deltas[i]` (int32 views shaped like hidden[i]) with bk.update_delta(..., out=deltas[i]) and `counts`
    with this rank's counts; a rank without rows this step leaves the zeros.
    """

    def __init__(self, bk, shapes, n_counts: int = 2):
        xp = bk.xp
        self.bk = bk
        sizes = [int(k) * int(j) for k, j in shapes]
        self.buffer = xp.zeros(sum(sizes) + n_counts, dtype=xp.int32)
        self.deltas, off = [], 0
        for shape, n in zip(shapes, sizes):
            self.deltas.append(self.buffer[off:off + n].reshape(shape))
            off += n
        self.counts = self.buffer[off:]

    @property
    def nbytes(self) -> int:
        return int(self.buffer.nbytes)

    def reduce_apply(self, comm: Communicator, hidden, clip: int):
        """All-reduce, then hidden[i] = clip(hidden[i] + 2 * delta_i); returns the global counts (int64)."""
        comm.allreduce_sum(self.buffer)
        for h, d in zip(hidden, self.deltas):
            self.bk.apply_delta(h, d, clip)
        return self.counts.astype(self.bk.xp.int64)
