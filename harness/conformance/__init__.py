"""What conformance means: the catalogue of checks, tolerances, selectors and the comparison."""
