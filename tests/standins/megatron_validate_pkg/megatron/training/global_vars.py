"""Stand-in for megatron/training/global_vars.py: set_args keeps the args."""

_GLOBAL_ARGS = None


def set_args(args):
    global _GLOBAL_ARGS
    _GLOBAL_ARGS = args
