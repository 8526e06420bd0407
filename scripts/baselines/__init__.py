"""Baselines that BEP is compared against (optional extra `[baselines]`, needs PyTorch)."""
