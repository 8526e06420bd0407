"""Datasets and input encodings: load_dataset(name) -> Dataset, make_encoder(spec, image) -> Encoder."""
from .dataset import Dataset, validate_dataset
from .encoders import Encoder, make_encoder
from .idx import read_idx
from .sources import list_datasets, load_dataset
from .ts import read_ts

__all__ = ["Dataset", "Encoder", "list_datasets", "load_dataset", "make_encoder", "read_idx", "read_ts",
           "validate_dataset"]
