"""Paper RNN step timed from the same fresh weights every repetition (every sample triggers, as in early training):
    python scripts/rnn_step_fresh.py numba|numpy|cuda KS
"""
import sys
import time

import numpy as np

from bep_gpu import bep_mlp, bep_rnn
from bep_gpu.backends import get_backend
from bep_gpu.mlp import init_hidden
from bep_gpu.prototypes import make_prototypes
bk = get_backend(sys.argv[1])
ks = int(sys.argv[2])
kx = ky = ks; T, batch = 28, 100
rng = np.random.default_rng(1)
hidden0 = init_hidden([(ks, kx), (ks, ks), (ky, ks)], 8.0, 0)
P = bk.pack(make_prototypes(10, ky, 0, sweeps=2))
x = bk.pack(rng.choice(np.array([-1, 1], np.int8), size=(batch, T, kx)))
y = rng.integers(0, 10, size=batch)
rules = bep_rnn.step_rules([kx, ks, ky], 0.5, 0.01, 32767)
thr = bep_mlp.reinforcement_thresholds([kx, ks, ks], 0.5, 0.5)
times, trig = [], []
for rep in range(6):
    h = [a.copy() for a in hidden0]
    t0 = time.perf_counter()
    c = bep_rnn.train_step(bk, h, [kx, ks, ky], P, x, y, [15, 15], rules, 0, False, thr, 0, 0)
    times.append(time.perf_counter() - t0)
    trig.append(int(bk.to_numpy(c)[1]))
print(f"{bk.name} RNN {ks}: fresh-weights step median {np.median(times[1:])*1e3:.1f} ms, triggered {trig[-1]}/{batch}")
