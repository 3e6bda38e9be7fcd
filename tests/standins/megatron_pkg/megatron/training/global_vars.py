_ARGS = None


def set_args(args):
    global _ARGS
    _ARGS = args
