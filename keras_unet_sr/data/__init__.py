"""Data: the one normalization, frame selection, the tile pipeline and data sources."""
