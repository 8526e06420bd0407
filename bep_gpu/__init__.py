"""bep-gpu: fully binary neural-network training with Binary Error Propagation (BEP), on CUDA, numba and NumPy."""
from .backends import get_backend
from .bits import pack_bits, transpose_bits, unpack_bits
from .errors import UserError
from .estimators import ConvClassifier, MLPClassifier, RNNClassifier
from .model import Model, load

__version__ = "0.1.0"

__all__ = ["get_backend", "pack_bits", "unpack_bits", "transpose_bits", "load", "Model", "UserError", "MLPClassifier",
           "RNNClassifier", "ConvClassifier", "__version__"]
