"""Megatron's own argument validation for one rendered run, without training.

On a machine with megatron-core installed, `validate_run(argv, world_size)` goes through the
same config path as tools/pretrain_gpt.py, stopping before anything is allocated:

    parse_args (with the suite's flags, megatron_flags.SUITE_FLAGS) -> validate_args
    -> gpt_config_from_args (TransformerConfig.__post_init__)
    -> pretrain_cfg_container_from_args (optimizer and DDP configs)

`parse_and_validate_args` itself is not called: after validating it sets Megatron's global
variables (tokenizer, W&B and TensorBoard writers, timers), which can be set only once per
process and may reach the network. The world size and rank come from the environment
(`parse_args` reads WORLD_SIZE and RANK); torch.distributed is not initialised.

megatron is imported only inside `validate_run`, never when this module is imported.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Iterator, Optional

# parse_args reads RANK and WORLD_SIZE (megatron/training/arguments.py, parse_args);
# LOCAL_RANK is read by Megatron's initialisation and set for the same reason.
ENV_KEYS = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
PROGRAM = "pretrain_gpt.py"


def validate_run(argv: list[str], world_size: int) -> Optional[str]:
    """Megatron's verdict on one run: None when it accepts `argv`, else its message.

    argv: Megatron's command-line arguments (no program name), as a generated script passes
        them (tools/megatron_check.py receives them from the script itself).
    world_size: the number of GPUs the run is launched on (torchrun's WORLD_SIZE).

    Runs Megatron's own parse_args and validate_args as rank 0 of `world_size`, then builds
    its TransformerConfig and the optimizer and DDP configs. An AssertionError, ValueError,
    TypeError, NotImplementedError, RuntimeError or KeyError raised there, or an argparse error
    (SystemExit), becomes the returned one-line message, prefixed with the exception's type.
    sys.argv and WORLD_SIZE / RANK / LOCAL_RANK are restored afterwards. ImportError (no
    megatron-core here) is raised, not returned.
    """
    with _as_rank0(argv, world_size):
        from megatron.training.argument_utils import (
            gpt_config_from_args,
            pretrain_cfg_container_from_args,
        )
        from megatron.training.arguments import parse_args, validate_args
        from megatron.training.global_vars import set_args

        from .flags import add_suite_flags

        stderr = io.StringIO()
        try:
            with contextlib.redirect_stderr(stderr):
                args = parse_args(add_suite_flags)
        except SystemExit as err:
            return _argparse_message(stderr.getvalue(), err)
        sys.stderr.write(stderr.getvalue())
        try:
            # Megatron prints its whole argument dump while validating; only the verdict matters.
            with contextlib.redirect_stdout(io.StringIO()):
                validate_args(args, {})
                set_args(args)  # the config builders read some values through get_args()
                model_config = gpt_config_from_args(args)
                pretrain_cfg_container_from_args(args, model_config)
        except (AssertionError, ValueError, TypeError, NotImplementedError, RuntimeError, KeyError) as err:
            return _one_line(err)
        except SystemExit as err:
            return f"SystemExit: {err.code}"
    return None


@contextlib.contextmanager
def _as_rank0(argv: list[str], world_size: int) -> Iterator[None]:
    saved_argv = sys.argv
    saved_env = {k: os.environ.get(k) for k in ENV_KEYS}
    sys.argv = [PROGRAM, *[str(a) for a in argv]]
    os.environ.update({"WORLD_SIZE": str(world_size), "RANK": "0", "LOCAL_RANK": "0"})
    try:
        yield
    finally:
        sys.argv = saved_argv
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _argparse_message(stderr: str, err: SystemExit) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if ": error: " in line]
    if errors:
        return "argparse: " + errors[-1].split(": error: ", 1)[1]
    return f"argparse: {lines[-1]}" if lines else f"SystemExit: {err.code}"
