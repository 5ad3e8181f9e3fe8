"""Target datasets: labelled samples from folders, CSVs, IDX files or arrays."""

from greenrunner.datasets.arrays import ArrayDataset
from greenrunner.datasets.base import TargetDataset
from greenrunner.datasets.labels import LabelMap, build_label_map, load_mapping_file
from greenrunner.datasets.open import open_dataset

__all__ = [
    "ArrayDataset",
    "LabelMap",
    "TargetDataset",
    "build_label_map",
    "load_mapping_file",
    "open_dataset",
]
