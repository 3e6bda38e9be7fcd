"""Records of the stand-in's calls: (sys.argv, WORLD_SIZE, RANK, LOCAL_RANK) per parse_args."""

CALLS: list = []
