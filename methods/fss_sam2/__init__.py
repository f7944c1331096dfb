"""FSS-SAM2 (FSSAM, Xu et al., ICML 2025) on the stock ``sam2`` package: pseudo prompt
generator, iterative memory refinement and support-calibrated memory attention, trained
per fold. See ``docs/methods/fss_sam2.md``."""
