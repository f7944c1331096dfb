"""Fold-aware datasets. Registering only names and import paths keeps this import cheap."""

from refseg_bench.registry import DATASETS

DATASETS.register("synthetic", "refseg_bench.datasets.synthetic:SyntheticDataset",
                  "embedded synthetic benchmark: 20 classes, 4 folds, generated on first use")
