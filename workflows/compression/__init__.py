"""Compression beyond INT8: structured channel pruning and recovery by distillation."""
