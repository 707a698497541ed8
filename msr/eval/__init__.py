"""Scoring: losses, exact match and accuracy by reasoning steps."""
