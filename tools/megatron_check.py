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
"megatron-core <version> refuses these arguments: <Megatron's message>".
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fp8suite.common.errors import exit_status  # noqa: E402
from fp8suite.megatron.validate import validate_run  # noqa: E402
from fp8suite.common.version import add_version_option  # noqa: E402

EPILOG = """examples:
  WORLD_SIZE=8 python tools/megatron_check.py --num-layers 32 --hidden-size 4096 ... --bf16
  TRAIN_CMD="python3 tools/megatron_check.py" LOG_FILE=- bash experiments/generated/<run>.sh

exit status: 0 megatron-core accepts the arguments, 1 it refuses them, 2 megatron-core is not
importable
"""

ACCEPTS = "accepts these arguments"
REFUSES = "refuses these arguments"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(prog="megatron_check.py", description=__doc__, epilog=EPILOG,
                                 usage="%(prog)s [-h] [--version] [MEGATRON_ARG ...]",
                                 formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    ap.add_argument("megatron_args", nargs="*", metavar="MEGATRON_ARG",
                    help="Megatron's command line, as tools/pretrain_gpt.py takes it")
    add_version_option(ap)
    # Only -h/--help and --version are this tool's; everything else is Megatron's.
    ap.parse_known_args([a for a in argv if a in ("-h", "--help", "--version")])
    try:
        import megatron.core
    except ImportError as e:
        print(f"megatron_check: megatron-core is not importable: {e}", file=sys.stderr)
        return 2
    version = getattr(megatron.core, "__version__", "?")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    problem = validate_run(argv, world)
    if problem:
        print(f"megatron-core {version} {REFUSES} (world size {world}): {problem}")
        return 1
    print(f"megatron-core {version} {ACCEPTS} (world size {world})")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
