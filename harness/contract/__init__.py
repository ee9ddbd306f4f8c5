"""What a backend is: the backend protocol, the plugin manager and registry, and devices.

With :mod:`harness.hookspecs` (the one hookspec module) the only part that imports pluggy.
"""
