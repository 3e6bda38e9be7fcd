"""Megatron-Core's and Transformer Engine's vocabulary: flags, log keys, recipes, assertions."""
