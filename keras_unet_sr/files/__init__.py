"""File helpers: atomic writes, TIFF reading and writing, output folders."""
