"""Every flag a committed script can hand to Megatron is one megatron-core 0.19.2 accepts.

CI cannot import megatron (it needs Python >= 3.12), so the parser's flag set was recorded on a
GPU host by tools/snapshot_megatron_flags.py into tools/fp8suite/data/; this checks against it.
"""

import json
import re

import pytest

from conftest import REPO
from fp8suite.megatron.flags import load_snapshot, snapshot_path

GENERATED = REPO / "experiments" / "generated"
# Bash arrays of Megatron arguments in the scripts: MODEL_ARGS=( ... ), DATA_ARGS+=(...), ...
ARRAY = re.compile(r"^\s*([A-Z]+_ARGS)\+?=\((.*?)\)\s*(?:;|$)", re.M | re.S)
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# Added at launch by tools/run.py rather than by the scripts.
RUN_PY_FLAGS = ["--exit-duration-in-mins"]


def test_snapshot_was_recorded_on_a_gpu_host():
    data = json.loads(snapshot_path("0.19.2").read_text())
    assert data["megatron_core"] == "0.19.2"
    assert data["recorded_on"].startswith("NVIDIA"), data["recorded_on"]
    assert len(data["flags"]) > 500


@pytest.mark.parametrize("script", sorted(GENERATED.glob("*.sh")), ids=lambda p: p.name)
def test_every_script_flag_is_known(script):
    flags = load_snapshot("0.19.2")
    text = script.read_text()
    arrays = ARRAY.findall(text)
    assert {name for name, _ in arrays} >= {"MODEL_ARGS", "DATA_ARGS", "FUSION_ARGS"}
    used = {flag for _, body in arrays for flag in FLAG.findall(body)}
    unknown = sorted(used - set(flags))
    assert not unknown, f"{script.name} passes flags megatron-core 0.19.2 does not accept: {unknown}"


@pytest.mark.parametrize("manifest", sorted(GENERATED.glob("*.manifest.json")), ids=lambda p: p.name)
def test_every_manifest_flag_is_known(manifest):
    flags = load_snapshot("0.19.2")
    for run in json.loads(manifest.read_text())["runs"]:
        used = {t for t in run["megatron_args"] if t.startswith("--")}
        assert used <= set(flags), f"{run['name']}: {sorted(used - set(flags))}"
    assert set(RUN_PY_FLAGS) <= set(flags)
