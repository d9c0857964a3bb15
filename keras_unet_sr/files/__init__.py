"""File helpers: TIFF reading and writing, output folders."""
