"""Shared test helpers.

Golden files live in tests/golden/. After an intended change to rendered scripts or reports,
re-record them with:

    python -m pytest tests --update-golden

and review the diff with `git diff tests/golden`.
"""

import difflib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
# The CLIs live in tools/ and import the fp8suite package from there.
sys.path.insert(0, str(REPO / "tools"))


def committed_matrices() -> list[Path]:
    """The matrices git tracks in experiments/ (top level), sorted: drafts a user keeps beside
    them untracked are not the suite's committed matrices. Outside a git checkout (an unpacked
    release) every experiments/*.yaml counts."""
    found = subprocess.run(["git", "ls-files", "-z", "--", "experiments/*.yaml"], cwd=REPO,
                           capture_output=True, text=True)
    if found.returncode != 0:
        return sorted((REPO / "experiments").glob("*.yaml"))
    names = [n for n in found.stdout.split("\0") if n and "/" not in n[len("experiments/"):]]
    return sorted(REPO / n for n in names)


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", help="re-record tests/golden/ files")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU with megatron-core + Transformer Engine")
    config.addinivalue_line("markers", "slurm: needs a running Slurm controller (see .ci/slurm_setup.sh)")


def gpu_stack_missing() -> str:
    """Why GPU tests cannot run here, or '' when a GPU and megatron-core are present."""
    if not shutil.which("nvidia-smi") or subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True).returncode != 0:
        return "no NVIDIA GPU here"
    for module in ("torch", "megatron.core", "transformer_engine"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            return f"{module} is not importable (pip install -e .[gpu])"
    return ""


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    reason = gpu_stack_missing() if gpu_items else ""
    for item in gpu_items if reason else []:
        item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def golden(request):
    """Compare text with tests/golden/<name>; --update-golden rewrites the file instead."""
    update = request.config.getoption("--update-golden")

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        assert path.exists(), f"missing golden file {path}; record it with --update-golden"
        expected = path.read_text()
        if text != expected:
            diff = "".join(
                difflib.unified_diff(
                    expected.splitlines(keepends=True),
                    text.splitlines(keepends=True),
                    fromfile=f"golden/{name}",
                    tofile="actual",
                )
            )
            pytest.fail(f"{name} differs from its golden file "
                        f"(re-record with --update-golden if intended):\n{diff}")

    return check
