"""Fold-aware datasets. Registering only names and import paths keeps this import cheap."""

from refseg_bench.registry import DATASETS

DATASETS.register("synthetic", "refseg_bench.datasets.synthetic:SyntheticDataset",
                  "embedded synthetic benchmark: 20 classes, 4 folds, generated on first use")
DATASETS.register("pascal5i", "refseg_bench.datasets.pascal:Pascal5i",
                  "PASCAL-5i: VOC2012 + SBD labels, 4 folds of 5; HSNet pairs or PFENet/BAM lists")
DATASETS.register("coco20i", "refseg_bench.datasets.coco:Coco20i",
                  "COCO-20i: COCO2014, 4 folds of 20 (interleaved or contiguous), 2048-px lists")
DATASETS.register("fss1000", "refseg_bench.datasets.fss:Fss1000",
                  "FSS-1000: 520/240/240 classes x 10 images, every test image a query once")
DATASETS.register("lvis92i", "refseg_bench.datasets.lvis:Lvis92i",
                  "LVIS-92i: COCO2017 + LVIS v1, 10 interleaved folds of about 92 classes")
DATASETS.register("deepglobe", "refseg_bench.datasets.crossdomain:Deepglobe",
                  "Deepglobe (PATNet cross-domain): satellite tiles, 6 land-cover classes")
DATASETS.register("isic2018", "refseg_bench.datasets.crossdomain:Isic2018",
                  "ISIC2018 task 1 (PATNet cross-domain): skin lesions, 3 classes")
DATASETS.register("chestxray", "refseg_bench.datasets.crossdomain:ChestXray",
                  "Chest X-ray (PATNet cross-domain): lung masks, 1 class")
DATASETS.register("perseg", "refseg_bench.datasets.perseg:PerSeg",
                  "PerSeg: one-shot personalization, each object a class, reference image 00")
