"""hjax."""
