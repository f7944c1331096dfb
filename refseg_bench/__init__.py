"""refseg-bench: one harness for reference (few-shot) segmentation methods.

Importing this package is cheap: no torch model, SAM, SAM 2 or diffusers import happens
until a method or dataset is resolved from its registry.
"""

__version__ = "0.1.0"
