"""Foundation models shared by the method adapters: SAM, SAM 2, backbones, the checkpoint
catalogue and the embedding cache.

Import the sub-modules directly (``from refseg_bench.models.sam import build_sam``); this
package imports nothing heavy, so segment_anything and sam2 load only when asked for.
"""
