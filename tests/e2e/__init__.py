"""End-to-end tests: real worker and runctl processes."""
