"""Calibration against published numbers (data in fit/data/, with citations)."""
