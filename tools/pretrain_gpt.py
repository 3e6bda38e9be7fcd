#!/usr/bin/env python3
"""Pretrain a Llama-family GPT with megatron-core 0.19 + Transformer Engine.

The megatron-core wheel ships no pretrain_gpt.py; this is the suite's entry. It takes
Megatron's own command line (plus fp8suite.megatron.flags.SUITE_FLAGS, TransformerConfig
fields such as --fp8-dot-product-attention that megatron-core 0.19 has no flag for) and goes
through Megatron's public config path:

    parse_and_validate_args -> gpt_config_from_args -> pretrain_cfg_container_from_args
    -> pretrain(cfg, datasets_provider, ModelType.encoder_or_decoder, forward_step)

Launch it with torchrun, as the generated scripts do:

    torchrun --nproc_per_node 8 tools/pretrain_gpt.py --num-layers 32 ... --mock-data
"""

import time

_PROGRAM_START = time.time()  # before the heavy imports, for Megatron's start-up timers

import sys  # noqa: E402

if __name__ == "__main__" and sys.argv[1:] == ["--version"]:  # before torch and megatron
    from fp8suite.common.version import version_asked  # tools/ is this script's folder
    sys.exit(0 if version_asked("pretrain_gpt.py", sys.argv[1:]) else 2)

USAGE = """usage: torchrun [TORCHRUN_OPTIONS] tools/pretrain_gpt.py [-h] [--version] MEGATRON_ARG ...

Megatron's flags (and their choices) are recorded in tools/fp8suite/data/megatron_flags_<version>.json;
tools/megatron_check.py checks a command line without training.

exit status: 0 trained, 1 the training side (torch, megatron-core, Transformer Engine) is not
importable or training failed (torchrun reports each worker's status), 2 bad usage
"""

if __name__ == "__main__" and sys.argv[1:] in (["-h"], ["--help"]):  # before torch and megatron
    print(USAGE.split("\n\n")[0] + "\n\n" + __doc__ + "\n" + USAGE.split("\n\n", 1)[1], end="")
    sys.exit(0)

if __name__ == "__main__":  # one line, not an ImportError traceback, where the GPU side is missing
    import importlib.util

    _missing = [m for m in ("torch", "megatron", "transformer_engine") if importlib.util.find_spec(m) is None]
    if _missing:
        sys.exit(f"pretrain_gpt.py: {', '.join(_missing)} not importable: this is the training side "
                 "(pip install -e '.[gpu]', Python >= 3.12); python tools/verify_env.py checks a host")

import warnings  # noqa: E402
from functools import partial  # noqa: E402

import torch  # noqa: E402

import megatron.core.datasets.utils as dataset_utils  # noqa: E402
from megatron.core import mpu  # noqa: E402
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder  # noqa: E402
from megatron.core.datasets.gpt_dataset import GPTDataset, GPTDatasetConfig, MockGPTDataset  # noqa: E402
from megatron.core.enums import ModelType  # noqa: E402
from megatron.core.parallel_state import get_context_parallel_group  # noqa: E402
from megatron.core.rerun_state_machine import get_rerun_state_machine  # noqa: E402
from megatron.core.utils import (  # noqa: E402
    get_attr_wrapped_model,
    get_batch_on_this_cp_rank,
    get_batch_on_this_tp_rank,
)
from megatron.training import get_args, get_tokenizer, pretrain, print_rank_0, set_startup_timestamps  # noqa: E402
from megatron.training.argument_utils import gpt_config_from_args, pretrain_cfg_container_from_args  # noqa: E402
from megatron.training.arguments import parse_and_validate_args  # noqa: E402
from megatron.training.utils import get_blend_and_blend_per_split  # noqa: E402
from megatron.training.utils.common_utils import is_first_or_last_pipeline_stage  # noqa: E402

from fp8suite.megatron.flags import add_suite_flags  # noqa: E402  (tools/ is this script's folder)

BATCH_KEYS = ("tokens", "labels", "loss_mask", "attention_mask", "position_ids")


def use_prebuilt_dataset_helpers() -> None:
    """Skip `make` on the dataset helpers when the wheel already ships them compiled.

    initialize_megatron() runs compile_helpers(), which calls `make` in site-packages and
    exits when that fails (no compiler, read-only install) even though the wheel ships
    helpers_cpp prebuilt. Keep Megatron's own behaviour where nothing is prebuilt.
    """
    try:
        from megatron.core.datasets import helpers_cpp  # noqa: F401
    except ImportError:
        return
    dataset_utils.compile_helpers = lambda: None


def get_batch(data_iterator, vp_stage=None):
    """The micro-batch of this rank: read on TP rank 0, broadcast to the TP group, split for CP."""
    if not is_first_or_last_pipeline_stage(vp_stage):
        return {key: None for key in BATCH_KEYS}
    args = get_args()
    tp_rank = mpu.get_tensor_model_parallel_rank()
    batch = {}
    if tp_rank == 0:
        batch = next(data_iterator)
        batch = {k: (v.cuda(non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}
    batch = get_batch_on_this_tp_rank(
        batch,
        has_cu_seqlens=False,
        is_hybrid_cp=False,
        create_attention_mask_in_dataloader=args.create_attention_mask_in_dataloader,
        broadcast_src_rank=mpu.get_tensor_model_parallel_src_rank(),
        broadcast_group=mpu.get_tensor_model_parallel_group(),
        cp_size=args.context_parallel_size,
        tp_rank=tp_rank,
        micro_batch_size=args.micro_batch_size,
        seq_length=args.seq_length,
        mtp_on_this_rank=False,
        pipeline_model_parallel_size=args.pipeline_model_parallel_size,
        is_pipeline_first_stage=mpu.is_pipeline_first_stage(),
        is_pipeline_last_stage=mpu.is_pipeline_last_stage(),
    )
    return get_batch_on_this_cp_rank(batch, is_hybrid_cp=False, cp_group=get_context_parallel_group())


def loss_func(loss_mask: torch.Tensor, output_tensor: torch.Tensor):
    """Summed token loss, the token count, and the 'lm loss' Megatron logs (averaged over DP)."""
    args = get_args()
    losses = output_tensor.view(-1).float()
    mask = loss_mask.view(-1).float()
    loss = torch.sum(losses * mask)
    num_tokens = mask.sum().clone().detach().to(torch.int)
    if args.check_for_nan_in_loss_and_grad:
        rerun = get_rerun_state_machine()
        for reject, what in ((torch.isnan, "NaN"), (torch.isinf, "Inf")):
            rerun.validate_result(result=loss, rejection_func=reject,
                                  message=f"found {what} in local forward loss calculation",
                                  tolerance=0.0, fatal=True)
    report = {"lm loss": torch.cat([loss.clone().detach().view(1), num_tokens.view(1)])}
    return loss, num_tokens, report


def forward_step(data_iterator, model):
    vp_stage = get_attr_wrapped_model(model, "vp_stage")
    batch = get_batch(data_iterator, vp_stage)
    output = model(batch["tokens"], batch["position_ids"], batch["attention_mask"],
                   labels=batch["labels"], loss_mask=batch["loss_mask"])
    return output, partial(loss_func, batch["loss_mask"])


def datasets_provider(train_valid_test_num_samples, vp_stage=None):
    """Megatron indexed datasets (--data-path), or synthetic ones with --mock-data."""
    args = get_args()
    blend, blend_per_split = get_blend_and_blend_per_split(args)
    config = GPTDatasetConfig(
        random_seed=args.seed,
        sequence_length=args.seq_length,
        blend=blend,
        blend_per_split=blend_per_split,
        split=args.split,
        num_dataset_builder_threads=args.num_dataset_builder_threads,
        path_to_cache=args.data_cache_path,
        mmap_bin_files=args.mmap_bin_files,
        tokenizer=get_tokenizer(),
        reset_position_ids=args.reset_position_ids,
        reset_attention_mask=args.reset_attention_mask,
        eod_mask_loss=args.eod_mask_loss,
        create_attention_mask=args.create_attention_mask_in_dataloader,
    )
    dataset_type = MockGPTDataset if args.mock_data else GPTDataset
    print_rank_0(f"> building {dataset_type.__name__} train, validation and test splits ...")

    def built_on_this_rank():
        return is_first_or_last_pipeline_stage(vp_stage) and mpu.get_tensor_model_parallel_rank() == 0

    return BlendedMegatronDatasetBuilder(
        dataset_type, train_valid_test_num_samples, built_on_this_rank, config).build()


# Each rank builds its own datasets (Megatron's "distributed-aware core datasets").
datasets_provider.is_distributed = True


def main() -> None:
    set_startup_timestamps(program_start=_PROGRAM_START, main_entry=time.time())
    use_prebuilt_dataset_helpers()
    args = parse_and_validate_args(extra_args_provider=add_suite_flags)
    model_config = gpt_config_from_args(args)
    cfg = pretrain_cfg_container_from_args(args, model_config)
    pretrain(cfg, datasets_provider, ModelType.encoder_or_decoder, forward_step)


if __name__ == "__main__":
    warnings.filterwarnings("once")
    main()
