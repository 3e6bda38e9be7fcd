def gpt_config_from_args(args):
    return {"num_layers": args.num_layers}


def pretrain_cfg_container_from_args(args, model):
    return {"model": model}
