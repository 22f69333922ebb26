"""Deterministic CPU accounting: the fuel rewriter and the interrupt page it checks."""
