#!/usr/bin/env python3
"""Record megatron-core's command-line flags (the real parser's) into a JSON snapshot.

Run it where megatron-core imports (a GPU host; Python >= 3.12). The renderer and the CI
tests check every rendered Megatron flag against the snapshot, since CI cannot import
megatron itself. It also re-reads the installed megatron-core's argument assertions into
tools/fp8suite/data/megatron_assertions_<version>.json (fp8suite.megatron.assertions.refresh):
reviews of unchanged assertions are kept, new ones are listed as unreviewed.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fp8suite.common.errors import exit_status  # noqa: E402
from fp8suite.megatron import assertions as megatron_assertions  # noqa: E402
from fp8suite.megatron.flags import snapshot_path  # noqa: E402
from fp8suite.common.version import add_version_option  # noqa: E402

# argparse's action classes are private; map them to the plain names the snapshot uses.
ACTIONS = {
    "_StoreAction": "store",
    "_StoreTrueAction": "store_true",
    "_StoreFalseAction": "store_false",
    "_StoreConstAction": "store_const",
    "BooleanOptionalAction": "boolean_optional",
    "_AppendAction": "append",
    "_AppendConstAction": "append_const",
    "_CountAction": "count",
    "_ExtendAction": "extend",
}


def parser_flags(parser: argparse.ArgumentParser) -> dict[str, dict]:
    flags = {}
    for action in parser._actions:
        kind = type(action).__name__
        if kind in ("_HelpAction", "_VersionAction"):
            continue
        choices = None
        if action.choices is not None:
            # Enum-typed flags (--attention-backend) are written by member name.
            choices = [getattr(c, "name", str(c)) for c in action.choices]
        for option in action.option_strings:
            flags[option] = {
                "action": ACTIONS.get(kind, kind),
                "dest": action.dest,
                "nargs": action.nargs,
                "choices": choices,
                "type": getattr(action.type, "__name__", None) if action.type else None,
            }
    return dict(sorted(flags.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example:\n  PYTHONPATH=/tmp/site python3 tools/snapshot_megatron_flags.py\n\n"
               "exit status: 0 written, 1 megatron-core cannot be imported or its assertions read, 2 bad usage",
    )
    ap.add_argument("--out", type=Path, help="output file (default: the package's data dir); the "
                    "assertion list goes beside it")
    add_version_option(ap)
    args = ap.parse_args(argv)

    warnings.filterwarnings("ignore")
    try:
        import megatron.core
        from megatron.training.arguments import add_megatron_arguments
    except ImportError as err:
        print(f"snapshot_megatron_flags: cannot import megatron-core ({err}); "
              "run this where `pip install -e .[gpu]` worked (Python >= 3.12)", file=sys.stderr)
        return 1

    version = megatron.core.__version__
    parser = add_megatron_arguments(argparse.ArgumentParser(allow_abbrev=False))
    try:
        import torch
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        torch_version = torch.__version__
    except ImportError:
        gpu, torch_version = "no GPU", "none"
    snapshot = {
        "megatron_core": version,
        "recorded_on": f"{gpu}, Python {platform.python_version()}, torch {torch_version}",
        "recorded_by": "tools/snapshot_megatron_flags.py",
        "flags": parser_flags(parser),
    }
    out = args.out or snapshot_path(version)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(snapshot, indent=1) + "\n")
    print(f"wrote {out}: {len(snapshot['flags'])} flags of megatron-core {version}")
    source = Path(megatron.core.__file__).resolve().parent.parent.parent  # the folder holding megatron/
    listed = megatron_assertions.list_path(version)
    try:
        path, total, new = megatron_assertions.refresh(
            source, version, out=out.parent / listed.name, reviewed=listed if listed.exists() else None)
    except (OSError, SyntaxError, ValueError) as err:
        print(f"snapshot_megatron_flags: cannot read megatron-core's assertions under {source}: {err}",
              file=sys.stderr)
        return 1
    print(f"wrote {path}: {total} assertions, {new} new (status unreviewed: review each and give it "
          "a rule in fp8suite/config/rules.py or a reason)")
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
