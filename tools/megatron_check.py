#!/usr/bin/env python3
"""Ask megatron-core whether it accepts a run's arguments, without training.

Takes Megatron's command line exactly as tools/pretrain_gpt.py does and goes through the same
public config path up to the point where training would start:

    parse_args -> validate_args -> gpt_config_from_args (TransformerConfig.__post_init__)
    -> pretrain_cfg_container_from_args (optimizer, DDP, checkpoint, logger configs)

No process group, model or data is created. The world size and rank come from WORLD_SIZE and
RANK, as under torchrun. A generated script runs it in place of training with

    TRAIN_CMD="python3 tools/megatron_check.py" LOG_FILE=- WORLD_SIZE=2 \\
        bash experiments/generated/<run>.sh

which is what `tools/verify_env.py --matrix` does for every run. Prints one line,
"megatron-core <version> accepts these arguments (world size N)" or
"megatron-core <version> refuses these arguments: <Megatron's message>", and exits 0 or 1.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys

from fp8suite.version import version_asked  # tools/ is on sys.path: this script lives there

ACCEPTS = "accepts these arguments"
REFUSES = "refuses these arguments"


def check() -> str:
    """Megatron's message when it refuses ``sys.argv[1:]``, or "" when it accepts them.

    Raises:
        ImportError: megatron-core is not installed.
    """
    from megatron.training.argument_utils import gpt_config_from_args, pretrain_cfg_container_from_args
    from megatron.training.arguments import parse_args, validate_args
    from megatron.training.global_vars import set_args

    try:
        # Megatron prints its whole argument dump while validating; only the verdict matters.
        with contextlib.redirect_stdout(io.StringIO()):
            args = parse_args()
            validate_args(args)
            set_args(args)
            model = gpt_config_from_args(args)
            pretrain_cfg_container_from_args(args, model)
    except SystemExit as e:  # argparse: unknown flag or bad value (its message went to stderr)
        return f"argument parser exited with status {e.code} (see the line above)"
    except (AssertionError, ValueError, TypeError, RuntimeError, NotImplementedError, KeyError) as e:
        text = " ".join(str(e).split()) or "(no message)"
        return f"{type(e).__name__}: {text}"
    return ""


def main() -> int:
    if version_asked("megatron_check.py", sys.argv[1:]):
        return 0
    try:
        import megatron.core
    except ImportError as e:
        print(f"megatron_check: megatron-core is not importable: {e}", file=sys.stderr)
        return 2
    version = getattr(megatron.core, "__version__", "?")
    world = os.environ.get("WORLD_SIZE", "1")
    problem = check()
    if problem:
        print(f"megatron-core {version} {REFUSES} (world size {world}): {problem}")
        return 1
    print(f"megatron-core {version} {ACCEPTS} (world size {world})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
