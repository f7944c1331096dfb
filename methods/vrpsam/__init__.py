"""VRP-SAM (Sun et al., CVPR 2024): a trained visual-reference prompt encoder for a frozen SAM.

Modules: ``prompt_generator`` and ``encoder`` (the networks, official state-dict names),
``sam_head`` (SAM with VRP tokens as sparse prompts), ``inputs`` (episode arrays to
tensors), ``losses``, ``trainer`` and ``fit`` (meta-training with resume), ``store``
(checkpoint layout and the official file format), ``settings``, ``build`` and ``adapter``
(the registered method ``vrpsam``). Nothing heavy is imported here.
"""
