"""What every trained method shares: where checkpoints live and how they are written
(:mod:`.store`), the resumable training loop with its progress bar and loss curve
(:mod:`.loop`), the choice of per-fold weights at evaluation time with train-if-missing
(:mod:`.weights`), and the base-only training data rule (:mod:`.data`).

A method brings only what is its own: the networks, a :class:`.loop.TrainJob` (batches,
one optimisation step, the official export format) and its options.
"""
