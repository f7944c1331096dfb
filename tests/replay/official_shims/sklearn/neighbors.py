"""See sklearn/__init__.py."""

radius_neighbors_graph = None
