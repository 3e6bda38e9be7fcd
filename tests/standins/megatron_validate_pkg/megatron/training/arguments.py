"""Stand-in for megatron/training/arguments.py: a few real flags and real assertion texts."""

import argparse
import os
import sys

from . import CALLS


def parse_args(extra_args_provider=None, ignore_unknown_args=False):
    parser = argparse.ArgumentParser(description="Megatron-LM Arguments", allow_abbrev=False)
    parser.add_argument("--num-layers", type=int)
    parser.add_argument("--num-attention-heads", type=int)
    parser.add_argument("--tensor-model-parallel-size", type=int, default=1)
    parser.add_argument("--pipeline-model-parallel-size", type=int, default=1)
    parser.add_argument("--cross-entropy-loss-fusion", action="store_true")
    parser.add_argument("--cross-entropy-fusion-impl", choices=["native", "te"], default="native")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--use-distributed-optimizer", action="store_true")
    parser.add_argument("--overlap-param-gather", action="store_true")
    parser.add_argument("--mock-data", action="store_true")
    parser.add_argument("--tokenizer-type")
    parser.add_argument("--vocab-size", type=int)
    parser.add_argument("--no-gradient-accumulation-fusion", action="store_false",
                        dest="gradient_accumulation_fusion")
    if extra_args_provider is not None:  # as Megatron: the caller's flags join its parser
        parser = extra_args_provider(parser)
    args = parser.parse_args()
    args.rank = int(os.getenv("RANK", "0"))
    args.world_size = int(os.getenv("WORLD_SIZE", "1"))
    CALLS.append((list(sys.argv), os.environ.get("WORLD_SIZE"), os.environ.get("RANK"),
                  os.environ.get("LOCAL_RANK")))
    return args


def validate_args(args, defaults={}):
    model_parallel = args.tensor_model_parallel_size * args.pipeline_model_parallel_size
    assert args.world_size % model_parallel == 0, (
        f"world size ({args.world_size}) is not divisible by tensor parallel size "
        f"({args.tensor_model_parallel_size}) times pipeline parallel size "
        f"({args.pipeline_model_parallel_size})")
    if args.cross_entropy_loss_fusion and args.cross_entropy_fusion_impl == "te":
        assert False, (
            "Transformer Engine cross entropy loss fusion is disabled due to stability issues. "
            "Use --cross-entropy-fusion-impl native, or omit --cross-entropy-loss-fusion.")
    if args.overlap_param_gather:
        assert args.use_distributed_optimizer, \
            "--overlap-param-gather only supported with distributed optimizer"
