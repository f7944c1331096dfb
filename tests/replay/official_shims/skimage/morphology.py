"""See skimage/__init__.py."""

dilation = disk = erosion = medial_axis = None
