"""Checks for the layer ↔ PDE dictionary and attention (THEORY §3, §5, Prop E.6)."""
