"""What a run launched with: its environment variables that can change speed or numerics
(megatron.envvars) and its software and GPU, read from its sidecar.

Environment: the sidecar's `launch_env` (what the process had when the launch script called
the sidecar, after the script exported the matrix's env). An older sidecar has none; then the
matrix's env (its manifest entry's `env`: the run's own entry, else the manifest beside the
script it names) updated with the caller's `overrides.env` is what ran, but only when the
script is still the one that ran (its SHA-256 equals the sidecar's `script_sha256`): a script
rendered since may export something else. Otherwise the environment is unknown (None), and an
unknown environment differs from nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

from ..common import paths
from ..megatron import envvars

# The sidecar's `environment` entries compared between runs: (name shown, where it is read).
# A missing entry, or None, is unknown and differs from nothing, except apex's None, which
# says it was not installed (environment.package_version found no distribution).
SOFTWARE = (("gpu", ("gpu", "name")), ("driver", ("gpu", "driver")), ("cuda", ("cuda",)),
            ("torch", ("torch",)), ("transformer_engine", ("transformer_engine",)),
            ("megatron_core", ("megatron_core",)), ("apex", ("apex",)))
NOT_INSTALLED = "(not installed)"


def software(sidecar: dict) -> dict[str, str]:
    """{name: version text} of the run's GPU and software (SOFTWARE), the known ones only."""
    env = sidecar.get("environment")
    if not isinstance(env, dict):
        return {}
    out = {}
    for name, where in SOFTWARE:
        value, found = env, True
        for key in where:
            if isinstance(value, dict) and key in value:
                value = value[key]
            else:
                found = False
                break
        if not found or isinstance(value, (dict, list)):
            continue
        if value is None:
            if name == "apex":
                out[name] = NOT_INSTALLED
            continue
        out[name] = str(value)
    return out


def launch_env(sidecar: dict, manifest: dict) -> Optional[dict[str, str]]:
    """The run's environment variables that are settings (envvars.is_setting), or None when
    unknown (see the module doc). `manifest` is the run's manifest entry ({} when none)."""
    recorded = sidecar.get("launch_env")
    if isinstance(recorded, dict):
        return envvars.settings({k: v for k, v in recorded.items() if isinstance(v, str)})
    script = sidecar.get("script")
    wanted = sidecar.get("script_sha256")
    if not isinstance(script, str) or not isinstance(wanted, str) or not script:
        return None
    try:
        if hashlib.sha256(paths.suite(script).read_bytes()).hexdigest() != wanted:
            return None
    except OSError:
        return None
    entry = manifest if isinstance(manifest.get("env"), dict) else _entry_beside(sidecar)
    if entry is None or not isinstance(entry.get("env"), dict):
        return None
    env = dict(entry["env"])
    overrides = sidecar.get("overrides")
    if isinstance(overrides, dict) and isinstance(overrides.get("env"), dict):
        env.update(overrides["env"])
    return envvars.settings({k: v for k, v in env.items() if isinstance(v, (str, int, float))})


def _entry_beside(sidecar: dict) -> Optional[dict]:
    """The sidecar's run's entry in the manifest beside its script (paths.manifest of the
    script's folder and the sidecar's matrix), or None."""
    matrix, run = sidecar.get("matrix"), sidecar.get("run")
    if not isinstance(matrix, str) or not matrix or not isinstance(run, str):
        return None
    where = paths.manifest(paths.suite(sidecar["script"]).parent, matrix)
    try:
        data = json.loads(Path(where).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    runs = data.get("runs") if isinstance(data, dict) else None
    if not isinstance(runs, list):
        return None
    return next((r for r in runs if isinstance(r, dict) and r.get("name") == run), None)
