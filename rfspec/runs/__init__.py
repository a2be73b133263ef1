"""Runs as library functions: a notebook calls them exactly as the binaries do."""
