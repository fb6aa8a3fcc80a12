"""Benchmarks, run by `make bench`: figures and ratios from one run on the real parts
(design §8)."""
