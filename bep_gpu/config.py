"""Training settings: one dataclass, resolved and checked before any work starts."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from .data.augment import Augment
from .errors import UserError
from .prototypes import FRAMES

STABILITY = ("z", "flips", "hidden")
RNN_MASKS = ("step", "shared")
DISTRIBUTED = ("auto", "none", "mpi", "nccl")
# Kinds whose gamma0 may be one value per trainable layer (the RNN's two group widths share one).
PER_LAYER_GAMMA = ("mlp", "conv")


@dataclass
class TrainConfig:
    kind: str = "mlp"
    dataset: str = "prototypes"
    data_dir: str | None = None
    data_seed: int = 0
    hidden: list = field(default_factory=lambda: [525, 525])
    epochs: int = 50
    batch_size: int = 20
    backend: str = "auto"
    threads: int = 0  # CPU threads of numba kernels and BLAS (0: the libraries' defaults)
    seed: int = 0
    out: str = "runs/latest"
    r: float = 0.75
    nu: float = 0.2
    gamma0: int | list = 25  # one group size, or (mlp, conv) one per trainable layer in forward order
    p_r: float = 0.5
    patience: int = 5  # the group-size schedule (not early stopping: early_stop)
    gamma_milestones: list = field(default_factory=list)  # epochs after which every gamma grows (replaces patience)
    early_stop: int = 0  # stop after this many epochs without validation improvement (0 = never)
    init_std: float = 8.0
    val_fraction: float = 0.1
    encode: str = "auto"  # sign for +-1 data, median for images, thermometer:8 for sequences
    augment: str = ""  # mlp and conv on images: "shift:S", "flip" or both, redrawn every epoch (data/augment.py)
    shuffle: bool = True
    init: str | None = None
    resume: str | None = None
    max_train: int | None = None
    quiet: bool = False
    plot: bool = False
    hidden_clip: int = 32767
    freeze: list = field(default_factory=list)  # weight matrices (hidden.i) kept as initialised or loaded
    stability: str = "z"
    proto_alpha: float = 1.0
    proto_sweeps: int = 20
    proto_frame: str = "greedy"  # the prototype search: the spec's greedy flips, or "balanced" (prototypes.py)
    eval_batch: int = 8192
    # Data-parallel processes (bep_gpu.distributed): none, mpi, nccl, or auto (mpi under an MPI launcher)
    distributed: str = "auto"
    dist_timeout: float = 300.0  # seconds a process waits for the others before the whole job stops
    cuda_graph: bool = False  # replay full-batch steps from a CUDA graph (bep_gpu.step_graph)
    overwrite: bool = False  # replace a run already in `out`
    # RNN only
    horizon: int = 0  # 0 = the whole sequence
    rnn_mask: str = "step"
    window: int = 0  # keep only the last `window` steps of each series (0 = all)
    expand: int = 0  # fixed random +-1 expansion of the encoded inputs to this many bits (0 = off)
    # conv only (docs/CONV.md)
    conv: list = field(default_factory=list)  # [C_out, k, stride, pad] per conv layer, in forward order
    conv_tile: int = 0  # mask tiles of q x q output positions (0 = the whole map)
    image_shape: list | None = None  # [H, W] of the input images, set from the data by the trainer

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def check(self, widths: bool = True) -> None:
        """Raise UserError for settings no run can use (before loading data or touching a device). widths=False
        skips the checks against --hidden (the widths come from a checkpoint still to be read)."""
        def bad(msg):
            raise UserError(msg)

        if self.kind not in ("mlp", "rnn", "conv"):
            bad(f"unknown model kind {self.kind!r}: use mlp, rnn or conv")
        if self.kind == "conv":
            check_conv(self, bad)
        if not self.hidden or any(int(k) <= 0 for k in self.hidden):
            bad(f"--hidden must list positive widths, got {self.hidden}")
        if self.kind == "rnn" and len(self.hidden) > 2:
            bad("--hidden for rnn is KS or KS,KY")
        if self.epochs < 0:
            bad("--epochs must be >= 0")
        if self.batch_size < 0 or (self.batch_size == 0 and self.kind != "rnn"):
            bad(f"--batch-size must be positive{' (or 0: a tenth of the training set)' * (self.kind == 'rnn')}, "
                f"got {self.batch_size}")
        if not 0 <= self.val_fraction < 1:
            bad(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.r < 0 or self.nu < 0 or self.p_r < 0:
            bad("--r, --nu and --p-r must be non-negative")
        if self.init_std < 0:
            bad("--init-std must be non-negative")
        if self.patience < 0:
            bad("--patience must be >= 0 (0 disables the group-size schedule)")
        milestones = self.gamma_milestones
        if not _int_list(milestones, 1) or list(milestones) != sorted(set(milestones)):
            bad(f"--gamma-milestones takes increasing epoch counts >= 1 (e.g. 20,30,40), got {milestones!r}")
        if self.early_stop < 0:
            bad("--early-stop must be >= 0 (0: train every epoch)")
        if not 1 <= self.hidden_clip <= 32767:
            bad("--hidden-clip must be in 1..32767 (hidden weights are int16)")
        if self.proto_frame not in FRAMES:
            bad(f"--proto-frame must be one of {', '.join(FRAMES)}")
        if self.proto_frame == "balanced" and (self.proto_alpha != 1.0 or self.proto_sweeps != 20):
            bad("--proto-alpha and --proto-sweeps set the greedy frame search; --proto-frame balanced takes neither")
        if self.stability not in STABILITY:
            bad(f"--stability must be one of {', '.join(STABILITY)}")
        if self.rnn_mask not in RNN_MASKS:
            bad(f"--rnn-mask must be one of {', '.join(RNN_MASKS)}")
        if self.max_train is not None and self.max_train <= 0:
            bad("--max-train must be positive")
        if self.horizon < 0 or self.window < 0 or self.expand < 0:
            bad("--horizon, --window and --expand must be >= 0")
        if self.augment:
            Augment.parse(self.augment)
            if self.kind == "rnn":
                bad("--augment moves images: it is for mlp and conv, not for the rnn's sequences")
        if self.kind == "rnn" and self.stability != "z":
            kinds = "mlp" if self.stability == "hidden" else "mlp and conv"
            bad(f"--stability {self.stability} is for {kinds}: the RNN ranks wrong units by |z_t| "
                "(docs/ALGORITHM.md section 9)")
        if not _int_list(self.freeze, 0) or len(set(self.freeze)) != len(self.freeze):
            bad(f"--freeze takes distinct layer indices >= 0 (hidden.0 is the first matrix), got {self.freeze!r}")
        if self.threads < 0:
            bad("--threads must be >= 0 (0: the default)")
        if self.eval_batch <= 0:
            bad("--eval-batch must be positive")
        if self.distributed not in DISTRIBUTED:
            bad(f"--distributed must be one of {', '.join(DISTRIBUTED)}")
        if not self.dist_timeout > 0:
            bad("--dist-timeout must be positive (seconds)")
        if isinstance(self.gamma0, list) and self.kind not in PER_LAYER_GAMMA:
            bad(f"--gamma0 takes one value for {self.kind} (its cell and readout share it), got {self.gamma0}")
        if isinstance(self.gamma0, list) and widths and len(self.gamma0) != len(self.group_widths()):
            n = len(self.group_widths())
            bad(f"--gamma0 takes one value or one per trainable layer, got {self.gamma0} for {n} layer{'s' * (n > 1)}")
        for width, gamma in zip(self.group_widths(), self.initial_gammas()) if widths else ():
            if gamma <= 0 or width % gamma:
                divisors = [d for d in range(1, width + 1) if width % d == 0]
                bad(f"--gamma0 {gamma} does not divide layer width {width}; divisors of {width}: {divisors}")

    def group_widths(self) -> list[int]:
        """Widths whose units form groups of gamma: every MLP layer; the RNN cell and readout."""
        if self.kind == "rnn":
            ks = int(self.hidden[0])
            return [ks, int(self.hidden[1]) if len(self.hidden) > 1 else ks]
        return [int(spec[0]) for spec in self.conv if self.kind == "conv"] + [int(k) for k in self.hidden]

    def initial_gammas(self) -> list[int]:
        """gamma0 of every group width: the one value repeated, or (mlp, conv) the list given."""
        n = len(self.group_widths())
        return [int(g) for g in self.gamma0] if isinstance(self.gamma0, list) else [int(self.gamma0)] * n


def _int_list(values, minimum: int) -> bool:
    """A list (or tuple) of integers >= minimum; booleans are not integers here."""
    return isinstance(values, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in values)


def check_conv(cfg: TrainConfig, bad) -> None:
    """The conv settings no run can use (the geometry against the images is checked once they are loaded)."""
    if not cfg.conv:
        bad("conv needs at least one conv layer: --conv C:K:S:P[:M][,C:K:S:P[:M]...]")
    for spec in cfg.conv:
        if len(spec) not in (4, 5) or any(int(v) != v for v in spec) or min(spec[:3]) <= 0 or spec[3] < 0:
            bad(f"--conv layer {spec} is not C:K:S:P[:M] with positive channels, kernel and stride and padding >= 0")
        if len(spec) == 5 and spec[4] not in (1, 2):
            bad(f"--conv layer {spec}: pooling M is 1 (none) or 2 (2 x 2 majority pooling), not {spec[4]}")
    if cfg.conv_tile < 0:
        bad("--conv-tile must be >= 0 (0: one tile covering the whole output map)")
    if cfg.stability == "hidden":
        bad("--stability hidden is an MLP option: conv layers rank wrong units by |z| (z or flips)")


# The RNN subcommand's and RNNClassifier's defaults: the paper's UCR settings (r, nu, gamma0, p_r, Ks = Ky = 1035,
# the fixed expansion to 1035 inputs, batch N/10) with the best thermometer found on ItalyPowerDemand (16 bits
# beat 8 with and without a window: results/rnn/RNN_RESULTS.md). patience 0: the paper gives the RNN a fixed
# gamma0 = 15, and with the schedule on, the group size climbed to Ks within 30 epochs on ItalyPowerDemand and
# the net collapsed to one class (results/rnn/RNN_RESULTS.md). The window is tuned per dataset: none by default.
RNN_DEFAULTS = {"hidden": [1035], "r": 0.5, "nu": 0.05, "gamma0": 15, "p_r": 0.5, "dataset": "ucr:ItalyPowerDemand",
                "encode": "thermometer:16", "expand": 1035, "batch_size": 0, "patience": 0}


# The conv subcommand's and ConvClassifier's defaults: a small binary convnet for Fashion-MNIST (docs/CONV.md), two
# stride-2 conv layers and one dense layer.
CONV_DEFAULTS = {"dataset": "fashion-mnist", "hidden": [256], "gamma0": 8, "conv": [[32, 3, 2, 1], [64, 3, 2, 1]]}


def next_divisor(width: int, gamma: int) -> int:
    """The next larger divisor of width (width itself stays)."""
    for d in range(gamma + 1, width + 1):
        if width % d == 0:
            return d
    return width
