"""CAV-SAM (Wang et al., ICCV 2025): the reference-target pair as a pseudo video for SAM 2,
with diffusion-generated in-between frames (DBST) and test-time alignment of SAM 2's
feature neck (TTGA). See ``docs/methods/cavsam.md``."""
