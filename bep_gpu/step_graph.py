"""Training steps replayed from a CUDA graph (`bep-train --cuda-graph`): one graph launch per step instead of the
few dozen kernel launches of an eager step, for widths where launches, not kernels, bound the step.

A graph fixes every kernel argument, so the replayed step reads everything that changes from the device: the
mini-batch from static buffers refilled (by two gathers) before each launch, and the step number, which keys the
reinforcement RNG, from a device counter that the graph itself advances (`reinforce_at_step`). Settings that
change between epochs (reinforcement thresholds, group sizes) are captured anew each epoch. The first step of
an epoch runs eagerly, which loads every kernel and fills the graph's private memory pool; the second is captured
and then replayed for every full batch; a short last batch runs eagerly. Same integers as without a graph.
Every block the capture allocates is held with the graph until it is dropped: a replay writes the addresses it
recorded, so those blocks must never return to a pool (CuPy reuses free blocks, and releases them to the device
on an out-of-memory retry) while the graph can still run.

Without CuPy (the CUDA kernel emulator of the tests) the same data flow runs with direct calls instead of a
graph, so everything but the capture itself is checked on the CPU.
"""
from __future__ import annotations

import numpy as np

from .errors import UserError


class GraphedSteps:
    """One epoch's full-batch steps of `task` over rows of (x_all, y_all), accumulating into `counts`."""

    def __init__(self, bk, task, x_all, y_all, batch: int, gammas, thresholds, step0: int, counts):
        xp = bk.xp
        self.bk, self.xp = bk, xp
        self.x_all, self.y_all = x_all, y_all
        self.x = xp.empty((batch,) + tuple(x_all.shape[1:]), dtype=x_all.dtype)
        self.y = xp.empty((batch,), dtype=y_all.dtype)
        self.step = xp.asarray([step0], dtype=xp.int64)

        def step():
            xp.add(counts, task.step(self.x, self.y, gammas, thresholds, self.step), out=counts)
            self.step += 1

        self._step = step
        self._capture = xp is not np  # a real GPU (CuPy); the emulator runs the steps directly
        self._graph = None
        self._calls = 0
        if self._capture:
            import cupy

            bk.synchronize()  # work queued on the default stream (data, counts) precedes this stream's
            self._stream = cupy.cuda.Stream(non_blocking=True)
            # The graph keeps the addresses of its temporaries: they come from a pool nothing else allocates from.
            self._pool = cupy.cuda.MemoryPool()
            self._graph_memory = []  # every block of the capture, alive as long as the graph

    def __call__(self, idx) -> None:
        """One step on the rows idx (a device index array of exactly `batch` rows)."""
        if not self._capture:
            self._fill(idx)
            self._step()
            return
        import cupy

        with self._stream, cupy.cuda.using_allocator(self._pool.malloc):
            self._fill(idx)
            if self._calls == 0:
                self._step()  # eager: loads modules, compiles CuPy kernels, sizes the pool
            else:
                if self._graph is None:
                    self._graph = self._record()
                self._graph.launch(self._stream)
        self._calls += 1

    def finish(self) -> None:
        """Order the replayed steps before later work on the current stream (an eager last batch, the end of the
        epoch), on the device: no host synchronisation."""
        if self._capture:
            import cupy

            cupy.cuda.get_current_stream().wait_event(self._stream.record())

    def _fill(self, idx) -> None:
        xp = self.xp
        xp.take(self.x_all, idx, axis=0, out=self.x)
        xp.take(self.y_all, idx, axis=0, out=self.y)

    def _record(self):
        import cupy

        def malloc(size):
            mem = self._pool.malloc(size)
            self._graph_memory.append(mem)
            return mem

        self._stream.begin_capture()
        try:
            with cupy.cuda.using_allocator(malloc):
                self._step()
        except BaseException as e:
            try:
                self._stream.end_capture()
            except Exception:  # the capture is already invalid; the first error is the one to report
                pass
            raise UserError(f"--cuda-graph: capturing the training step failed ({type(e).__name__}: {e}); "
                            "run without --cuda-graph") from e
        return self._stream.end_capture()
