"""Gradient-based co-optimization of hardware, mapping and workload parameters."""
