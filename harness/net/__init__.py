"""The network: the spec, its variants, precisions and error bounds, the float64 oracle and test data.

NumPy only, and nothing from the rest of the harness but :mod:`harness.errors`.
"""
