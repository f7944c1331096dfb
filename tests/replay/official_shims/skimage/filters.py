"""See skimage/__init__.py."""

rank = None
