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

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fp8suite.common.errors import exit_status  # noqa: E402
from fp8suite.megatron.validate import validate_run  # noqa: E402
from fp8suite.common.version import version_asked  # noqa: E402

ACCEPTS = "accepts these arguments"
REFUSES = "refuses these arguments"


def main() -> int:
    if version_asked("megatron_check.py", sys.argv[1:]):
        return 0
    if sys.argv[1:] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    try:
        import megatron.core
    except ImportError as e:
        print(f"megatron_check: megatron-core is not importable: {e}", file=sys.stderr)
        return 2
    version = getattr(megatron.core, "__version__", "?")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    problem = validate_run(sys.argv[1:], world)
    if problem:
        print(f"megatron-core {version} {REFUSES} (world size {world}): {problem}")
        return 1
    print(f"megatron-core {version} {ACCEPTS} (world size {world})")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
