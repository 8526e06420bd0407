"""Experimental, not an option: bep-train with one gate width per trainable layer, BEP_NU=nu_0,nu_1,... (the gate
of layer l becomes floor(nu_l K_l), K_l its fan-in; layer 0's gate is never read). Run from the repository root:

    BEP_NU=0.2,0.2,0.02 python results/conv/per_layer_gate_probe.py conv --dataset fashion-mnist ...
"""
import math
import os
import sys

from bep_gpu import bep_mlp
from bep_gpu.cli import train

NUS = [float(v) for v in os.environ["BEP_NU"].split(",")]
_make = bep_mlp.StepRules.make.__func__


def make(cls, sizes, r, nu, clip, stability="z", frozen=()):
    rules = _make(cls, sizes, r, nu, clip, stability, frozen)
    gates = tuple(math.floor(NUS[i] * sizes[i]) for i in range(len(sizes) - 1))
    print("gates", gates, "fan-ins", sizes, file=sys.stderr)
    return bep_mlp.StepRules(rules.trigger_margin, gates, rules.clip, rules.stability, rules.frozen)


bep_mlp.StepRules.make = classmethod(make)
sys.exit(train.main(sys.argv[1:]))
