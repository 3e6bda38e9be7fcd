"""Two of megatron-core 0.19.2's real checks, with its own messages."""

import argparse
import json
import os
import sys


def parse_args(extra_args_provider=None, ignore_unknown_args=False):
    p = argparse.ArgumentParser(allow_abbrev=False)
    p.add_argument("--num-layers", type=int)
    p.add_argument("--micro-batch-size", type=int, default=1)
    p.add_argument("--global-batch-size", type=int)
    p.add_argument("--cross-entropy-loss-fusion", action="store_true")
    p.add_argument("--cross-entropy-fusion-impl", default="native")
    if extra_args_provider is not None:  # as Megatron: the caller's flags join its parser
        p = extra_args_provider(p)
    args, _ = p.parse_known_args()
    args.world_size = int(os.getenv("WORLD_SIZE", "1"))
    args.rank = int(os.getenv("RANK", "0"))
    if os.environ.get("FAKE_MEGATRON_RECORD"):
        with open(os.environ["FAKE_MEGATRON_RECORD"], "a") as f:
            f.write(json.dumps({"argv": sys.argv[1:], "world_size": args.world_size}) + "\n")
    return args


def validate_args(args, defaults={}):
    print("------------------------ arguments ------------------------")  # Megatron's dump
    assert not (args.cross_entropy_loss_fusion and args.cross_entropy_fusion_impl == "te"), (
        "Transformer Engine cross entropy loss fusion is disabled due to stability issues. "
        "Use --cross-entropy-fusion-impl native, or omit --cross-entropy-loss-fusion.")
    assert args.global_batch_size % (args.micro_batch_size * args.world_size) == 0, (
        f"global batch size ({args.global_batch_size}) is not divisible by micro batch size "
        f"({args.micro_batch_size}) times data parallel size ({args.world_size})")
