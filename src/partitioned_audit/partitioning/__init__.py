"""Partition planning (pure) and maintenance (applies a plan)."""
