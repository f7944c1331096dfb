"""PerSAM and PerSAM-F (Zhang et al., ICLR 2024; github.com/ZrrSkywalker/Personalize-SAM).

Modules: ``guidance`` (target-guided attention and target-semantic prompting on a stock
SAM decoder), ``sam_ops`` (encoded image, one prompted decode), ``prior`` (target
embedding, confidence map, point prompts, attention map), ``cascade`` (the two inference
cascades), ``finetune`` (PerSAM-F's mask weights), ``references`` (reference masks for
every annotation kind, k-shot fusion), ``loading`` (SAM choice), ``adapter`` (the
``persam`` / ``persam_f`` methods). Importing this package imports nothing heavy.
"""
