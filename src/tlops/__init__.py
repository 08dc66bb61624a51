"""tinyllama-ops."""
