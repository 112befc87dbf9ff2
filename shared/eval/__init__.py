"""Evaluation: metrics and the landmark benchmark."""
