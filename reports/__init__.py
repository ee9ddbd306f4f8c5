"""netharness reports: benchmark and conformance results gathered into CSV, HTML and Markdown."""
