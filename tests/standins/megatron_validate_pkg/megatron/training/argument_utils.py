"""Stand-in for megatron/training/argument_utils.py: a TransformerConfig that checks heads vs TP."""

from dataclasses import dataclass


@dataclass
class TransformerConfig:
    num_attention_heads: int
    tensor_model_parallel_size: int

    def __post_init__(self):
        if self.num_attention_heads % self.tensor_model_parallel_size != 0:
            raise ValueError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"tensor_model_parallel_size ({self.tensor_model_parallel_size}).")


def gpt_config_from_args(args, config=None):
    return TransformerConfig(args.num_attention_heads or 1, args.tensor_model_parallel_size)


def pretrain_cfg_container_from_args(args, model_cfg=None):
    return {"model": model_cfg}
