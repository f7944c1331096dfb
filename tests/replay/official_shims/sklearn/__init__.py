"""Stand-in for scikit-learn, imported (never called) by get_weak_anns; see skimage."""
