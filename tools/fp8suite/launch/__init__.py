"""Running rendered scripts: the launchers (local queue, Slurm), their status file and sidecars."""
