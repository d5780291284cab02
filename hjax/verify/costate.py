"""Checks for characteristics and co-states: backprop = Pontryagin (THEORY §6–§7)."""
