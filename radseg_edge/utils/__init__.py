"""Leaf utilities used across the data flow (no imports from the rest of radseg_edge)."""
