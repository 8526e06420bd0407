#!/usr/bin/env python3
"""Mutation check: plant one small bug at a time in a copy of the tree and run default-suite tests against it.

Each mutation below is a bug of a kind a review would plant (a rounding turned, a sign(0) flipped, RNG key parts
swapped, a chunk loop cut short, a file mode dropped...). For each one, the tracked files are copied to a
temporary directory once, the mutation is applied to the copy, the tests named for it run there (the default
suite's markers apply: pyproject's addopts), and the copy's file is restored before the next. The working tree
is never modified, so an interrupted check leaves nothing behind but the temporary directory, which is removed.
A mutation is caught when its tests fail (pytest exit status 1); the score table lists caught/missed per
mutation, and the exit status is 1 if any was missed, 2 if a run errored (a crash, a timeout) or a mutation no
longer applies (its text is not in the file exactly once).

    python scripts/mutation_check.py                 # every mutation, its own tests (about 7 minutes on 2 cores)
    python scripts/mutation_check.py --list
    python scripts/mutation_check.py gate-ceil rng-key-swap --suite   # the whole default suite per mutation
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Test files that pin the rules and edge cases; most mutations are caught by one of these first.
SPEC = ["tests/test_spec_rules.py", "tests/test_edge_cases.py"]
DENSE = ["tests/test_dense_baseline.py"]


@dataclass(frozen=True)
class Mutation:
    name: str
    what: str
    edits: tuple  # (path, old text, new text), each old text occurring exactly once in its file
    tests: tuple  # test paths (or node ids), run in this order with -x


MUTATIONS = [
    # --- the five a review planted -----------------------------------------------------------------------------
    Mutation("gate-ceil", "gate threshold ceil(nu K) instead of floor",
             (("bep_gpu/bep_mlp.py", "gates=tuple(math.floor(nu * sizes[i])", "gates=tuple(math.ceil(nu * sizes[i])"),),
             (*SPEC, *DENSE)),
    Mutation("margin-floor", "trigger margin floor(r K_L) instead of ceil",
             (("bep_gpu/bep_mlp.py", "trigger_margin=math.ceil(r * sizes[-1])",
               "trigger_margin=math.floor(r * sizes[-1])"),), (*SPEC, *DENSE)),
    Mutation("rng-key-swap", "RNG key with step and layer swapped, host and reinforce kernel alike",
             (("bep_gpu/rng.py", "k = mix_int(stream_key(seed, stream) ^ (int(step) & MASK64))\n"
               "    return mix_int(k ^ (int(layer) & MASK64))",
               "k = mix_int(stream_key(seed, stream) ^ (int(layer) & MASK64))\n"
               "    return mix_int(k ^ (int(step) & MASK64))"),
              ("kernels/reinforce.cu", "bep_mix(bep_mix(stream_key ^ (u64)step[0]) ^ layer)",
               "bep_mix(bep_mix(stream_key ^ layer) ^ (u64)step[0])")), SPEC),
    Mutation("eval-first-chunk", "evaluation scores only the first eval chunk",
             (("bep_gpu/trainer.py", "for i in range(0, len(y), eval_batch):",
               "for i in range(0, min(len(y), eval_batch), eval_batch):"),), SPEC),
    Mutation("checkpoint-0600", "checkpoints keep mkstemp's mode 0600 (fchmod dropped)",
             (("bep_gpu/checkpoint.py", "os.fchmod(fd, 0o666 & ~_UMASK)", "pass"),), SPEC),
    # --- more of the same kinds ----------------------------------------------------------------------------------
    Mutation("rng-key-swap-kernel", "reinforce kernel alone finishes the key with layer before step",
             (("kernels/reinforce.cu", "bep_mix(bep_mix(stream_key ^ (u64)step[0]) ^ layer)",
               "bep_mix(bep_mix(stream_key ^ layer) ^ (u64)step[0])"),), SPEC),
    Mutation("rnn-gate-fan-in", "RNN cell gate from Kx instead of Kx + Ks",
             (("bep_gpu/bep_rnn.py", "StepRules.make([kx + ks, ks, ky]", "StepRules.make([kx, ks, ky]"),),
             (*SPEC, *DENSE)),
    Mutation("trigger-at-margin", "trigger with <= margin (array version)",
             (("bep_gpu/backends/base.py", "< margin\n", "<= margin\n"),), SPEC),
    Mutation("trigger-at-margin-kernel", "trigger with <= margin (kernel)",
             (("kernels/trigger.cu", "(i64)lr[y] - (i64)other < margin", "(i64)lr[y] - (i64)other <= margin"),),
             SPEC),
    Mutation("tie-last-numpy", "group select ties to the highest index (NumPy)",
             (("bep_gpu/backends/numpy_backend.py", "idx = np.argmin(s, axis=2)",
               "idx = gamma - 1 - np.argmin(s[..., ::-1], axis=2)"),), SPEC),
    Mutation("tie-last-kernel", "group select ties to the highest index (kernel)",
             (("kernels/group_select.cu", "<< 32) | (u32)u;", "<< 32) | (u32)(gamma - 1 - u);"),
              ("kernels/group_select.cu", "const int k = first + (int)(u32)best;",
               "const int k = first + gamma - 1 - (int)(u32)best;")), SPEC),
    Mutation("tie-last-numba", "group select ties to the highest index (numba)",
             (("bep_gpu/backends/numba_kernels.py",
               "if fused else np.int64(score[r, u])\n                    if best < 0 or v < best_v:",
               "if fused else np.int64(score[r, u])\n                    if best < 0 or v <= best_v:"),),
             SPEC),
    Mutation("reinforce-zero-down-numba", "reinforcement moves h = 0 to -2 (numba)",
             (("bep_gpu/backends/numba_kernels.py", "v += 2 if v >= 0 else -2", "v += 2 if v > 0 else -2"),), SPEC),
    Mutation("sign0-epilogue", "sign(0) = -1 in the CUDA-core fused sign epilogue",
             (("kernels/xnor_matmul.cu", "return (int)acc[i][j] >= 0; });", "return (int)acc[i][j] > 0; });"),),
             SPEC),
    Mutation("sign0-epilogue-tc", "sign(0) = -1 in the tensor-core fused sign epilogue",
             (("kernels/xnor_matmul_tc.cu", "return tile.acc[0][i][j][r] >= 0; });",
               "return tile.acc[0][i][j][r] > 0; });"),), SPEC),
    Mutation("gate0-epilogue", "gate bit |z| < G instead of <= in the fused gate epilogue",
             (("kernels/xnor_matmul.cu", "return (z < 0 ? -z : z) <= thr;", "return (z < 0 ? -z : z) < thr;"),),
             SPEC),
    Mutation("sign0-gated-product", "sign(0) = -1 in the gated transposed product",
             (("kernels/gated_product.cu", "2 * (int)acc[i][j] >= 0; });", "2 * (int)acc[i][j] > 0; });"),), SPEC),
    Mutation("reinforce-zero-down", "reinforcement moves h = 0 to -2 (NumPy)",
             (("bep_gpu/backends/numpy_backend.py", "np.where(v >= 0, 2, -2)", "np.where(v > 0, 2, -2)"),), SPEC),
    Mutation("reinforce-zero-down-kernel", "reinforcement moves h = 0 to -2 (kernel)",
             (("kernels/reinforce.cu", "v >= 0 ? v + 2 : v - 2", "v > 0 ? v + 2 : v - 2"),), SPEC),
    Mutation("reinforce-clip", "reinforcement clips at -clip - 1 (NumPy)",
             (("bep_gpu/backends/numpy_backend.py", "np.clip(v, -clip, clip)", "np.clip(v, -clip - 1, clip)"),),
             SPEC),
    Mutation("update-clip", "update clipped at clip - 1 (apply_delta)",
             (("bep_gpu/backends/base.py", "xp.clip(new, -clip, clip, out=new)",
               "xp.clip(new, -clip, clip - 1, out=new)"),), (*DENSE, "tests/test_data_parallel.py")),
    Mutation("update-clip-kernel", "update clipped at clip - 1 (batch_update kernel)",
             (("kernels/batch_update.cu", "h[f] = (short)min(max(v, -clip), clip);  // np.clip order",
               "h[f] = (short)min(max(v, -clip), clip - 1);  // np.clip order"),),
             ("tests/test_cuda_emulated.py::test_batch_update",)),
    Mutation("reinforce-skipped-active", "no reinforcement although a sample triggered (algorithm)",
             (("bep_gpu/bep_mlp.py", "active = counts[1:2]", "active = counts[1:2] * 0"),), DENSE),
    Mutation("reinforce-skipped-active-kernel", "reinforce kernel skips when active",
             (("kernels/reinforce.cu", "    if (active[0] == 0) return;\n    reinforce_entries(h, n, key,",
               "    if (active[0] != 0) return;\n    reinforce_entries(h, n, key,"),), SPEC),
    Mutation("threshold-sqrt-e", "reinforcement probability with E instead of sqrt(E)",
             (("bep_gpu/bep_mlp.py", "p_r * math.sqrt(error_rate) *", "p_r * error_rate *"),), SPEC),
    Mutation("threshold-ceil", "probability threshold ceil(p 2^32) instead of floor",
             (("bep_gpu/rng.py", "return int(np.floor(np.float64(p) * np.float64(2.0**32)))",
               "return int(np.ceil(np.float64(p) * np.float64(2.0**32)))"),), SPEC),
    Mutation("e-from-triggered", "E from the triggered count instead of the misclassified one",
             (("bep_gpu/trainer.py", 'st["error_rate"] = wrong / n', 'st["error_rate"] = triggered / n'),), SPEC),
    Mutation("schedule-equal-improves", "an equal validation score counts as an improvement",
             (("bep_gpu/trainer.py", 'if score > st["best_val"]:', 'if score >= st["best_val"]:'),), SPEC),
    Mutation("next-divisor-skip", "the schedule skips the next divisor",
             (("bep_gpu/config.py", "for d in range(gamma + 1, width + 1):", "for d in range(gamma + 2, width + 1):"),),
             SPEC),
    Mutation("model-first-chunk", "bep_gpu.load(...).predict scores only its first eval chunk",
             (("bep_gpu/model.py", "for i in range(0, len(words), batch)]", "for i in range(0, len(words), batch)][:1]"),),
             SPEC),
    Mutation("rnn-empty-batch", "RNN rows stacked with reshape(-1) (B = 0 raises again)",
             (("bep_gpu/bep_rnn.py", "a.reshape(a.shape[0] * a.shape[1], a.shape[2])",
               "a.reshape(a.shape[0] * a.shape[1], -1)"),), SPEC),
    Mutation("allreduce-skipped", "data-parallel update sums not all-reduced",
             (("bep_gpu/distributed.py", "        comm.allreduce_sum(self.buffer)\n", "        pass\n"),),
             ("tests/test_data_parallel.py",)),
    Mutation("setting-check-hidden-clip", "--hidden-clip accepts 32768",
             (("bep_gpu/config.py", "if not 1 <= self.hidden_clip <= 32767:", "if not 1 <= self.hidden_clip <= 32768:"),),
             SPEC),
    Mutation("setting-check-dist-timeout", "--dist-timeout accepts 0",
             (("bep_gpu/config.py", "if not self.dist_timeout > 0:", "if not self.dist_timeout >= 0:"),), SPEC),
]


def tracked_files(root: str) -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=root, capture_output=True, check=True).stdout
    return [p for p in out.decode().split("\0") if p and os.path.isfile(os.path.join(root, p))]


def copy_tree(root: str, dest: str) -> None:
    for rel in tracked_files(root):
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(os.path.join(root, rel), target)


def apply(copy: str, m: Mutation) -> dict[str, str]:
    """Apply m's edits in the copy; returns the original text of every file it changed."""
    originals: dict[str, str] = {}
    for rel, old, new in m.edits:
        path = os.path.join(copy, rel)
        text = originals.get(rel) or open(path).read()
        originals.setdefault(rel, text)
        current = open(path).read()
        if current.count(old) != 1:
            raise LookupError(f"{m.name}: {rel} holds {current.count(old)} copies of the text to mutate, not 1")
        with open(path, "w") as f:
            f.write(current.replace(old, new))
    return originals


def restore(copy: str, originals: dict[str, str]) -> None:
    for rel, text in originals.items():
        with open(os.path.join(copy, rel), "w") as f:
            f.write(text)


def run_tests(copy: str, tests, timeout: float) -> tuple[int, str]:
    """(pytest's exit status, its last line of output) in the copy; its package shadows any installed one,
    also in the subprocesses tests start (PYTHONPATH). 0: all passed, 1: some failed, else an error."""
    env = dict(os.environ, PYTHONPATH=copy, PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        proc = subprocess.run(cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f} s"
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    return proc.returncode, lines[-1] if lines else proc.stderr.strip()[-200:]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="mutations to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--suite", action="store_true", help="run the whole default suite per mutation, not its tests")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per mutation's test run (default 600)")
    args = ap.parse_args(argv)
    by_name = {m.name: m for m in MUTATIONS}
    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:30s} {m.what}")
        return 0
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        ap.error(f"unknown mutation(s) {', '.join(unknown)}; see --list")
    chosen = [by_name[n] for n in args.names] or MUTATIONS
    rows, status = [], 0
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bep-mutation-") as copy:
        copy_tree(ROOT, copy)
        rc, line = run_tests(copy, SPEC, args.timeout)  # the unmutated copy must pass, or nothing means anything
        if rc != 0:
            print(f"mutation_check: the unmutated tree fails its tests ({line}); fix that first", file=sys.stderr)
            return 2
        for m in chosen:
            t0 = time.monotonic()
            try:
                originals = apply(copy, m)
            except LookupError as e:
                rows.append((m.name, "STALE", 0.0, str(e)))
                status = 2
                continue
            try:
                rc, line = run_tests(copy, () if args.suite else m.tests, args.timeout)
            finally:
                restore(copy, originals)
            # only failing tests count as a catch: a crash, a timeout or a collection error says nothing
            verdict = {0: "missed", 1: "caught"}.get(rc, f"error ({rc})")
            if rc != 1:
                status = max(status, 1 if rc == 0 else 2)
            rows.append((m.name, verdict, time.monotonic() - t0, line))
            print(f"{m.name:30s} {verdict:7s} {rows[-1][2]:6.1f} s  {line}", file=sys.stderr, flush=True)
    caught = sum(r[1] == "caught" for r in rows)
    print("\n| mutation | result | seconds | tests' last line |\n|---|---|---|---|")
    for name, verdict, secs, line in rows:
        print(f"| {name} | {verdict} | {secs:.1f} | {line} |")
    print(f"\nscore: {caught}/{len(rows)} caught ({time.monotonic() - t_all:.0f} s"
          f"{', whole default suite per mutation' if args.suite else ''})")
    return status


if __name__ == "__main__":
    sys.exit(main())
