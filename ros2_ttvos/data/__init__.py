"""Data sets: the DAVIS reader and the training clip samplers."""
