"""Checks for the commutative diagram, Theorem 7.1 (THEORY §8)."""
