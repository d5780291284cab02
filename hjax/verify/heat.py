"""Checks for the semiring and the heat semigroup (THEORY §1, §2, §4)."""
