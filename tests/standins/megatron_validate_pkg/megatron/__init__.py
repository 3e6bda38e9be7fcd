"""A stand-in `megatron` package for tests of tools/fp8suite/megatron/validate.py (no torch).

It mimics the shape of megatron-core 0.19.2's config path (parse_args reads RANK and
WORLD_SIZE from the environment; validate_args, gpt_config_from_args and
pretrain_cfg_container_from_args raise on a few known bad combinations) and records
what it was called with in `megatron.training.CALLS`.
"""
