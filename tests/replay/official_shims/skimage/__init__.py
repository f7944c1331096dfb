"""Stand-in for scikit-image: BAM's and FSSAM's get_weak_anns imports it for box and scribble
annotations, which the val loader with ann_type='mask' never calls."""
