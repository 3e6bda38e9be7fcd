"""fp8suite.common.paths: the naming rules, and that the scripts and launchers follow the same ones."""

import re
from pathlib import Path

import pytest

from conftest import REPO
from fp8suite.common import paths

GENERATED = REPO / "experiments" / "generated"


def test_root_and_display_paths(tmp_path):
    assert paths.ROOT == REPO
    assert paths.display_path(REPO / "experiments" / "x.yaml") == "experiments/x.yaml"
    assert paths.display_path(tmp_path / "a.log") == str(tmp_path / "a.log")
    assert paths.suite("logs/a") == REPO / "logs" / "a" and paths.suite(tmp_path) == tmp_path
    assert paths.GENERATED == GENERATED and paths.TEMPLATES == REPO / "templates"


def test_a_log_folder_linked_elsewhere_keeps_its_place_in_the_suite(tmp_path, monkeypatch):
    """logs/<matrix> as a symlink to a scratch disk: runs.json and the messages name the log by
    its place in the suite, so the folder can be copied back and still be read."""
    suite, scratch = tmp_path / "suite", tmp_path / "scratch" / "m"
    (suite / "logs").mkdir(parents=True)
    scratch.mkdir(parents=True)
    (suite / "logs" / "m").symlink_to(scratch)
    monkeypatch.setattr(paths, "ROOT", suite)
    assert paths.display_path(suite / "logs" / "m" / "r.log") == "logs/m/r.log"
    # A link outside the suite that points into it is still shown from the suite.
    (tmp_path / "into").symlink_to(suite / "logs")
    assert paths.display_path(tmp_path / "into" / "x.log") == "logs/x.log"
    assert paths.display_path(scratch / "r.log") == str(scratch.resolve() / "r.log")


@pytest.mark.parametrize("taken", [[], [0], [0, 1], [0, 1, 2, 3], [1], [0, 2]])
def test_next_log_takes_the_first_free_attempt(tmp_path, taken):
    for n in taken:
        paths.attempt_log(tmp_path, "r", n).write_text("")
    expected = next(n for n in range(10) if n not in taken)
    assert paths.next_log(tmp_path, "r") == paths.attempt_log(tmp_path, "r", expected)
    assert [paths.attempt_log(tmp_path, "r", n).name for n in (0, 1, 12)] == ["r.log", "r.1.log", "r.12.log"]


@pytest.mark.parametrize("log", ["r.log", "r.1.log", "r.1234.log", "a.b.log", "noext"])
def test_sidecar_beside_every_log(log):
    side = paths.sidecar_of(Path("/x") / log)
    assert side.parent == Path("/x") and side.name.endswith(".meta.json")
    assert side.name == log.removesuffix(".log") + ".meta.json"


@pytest.mark.parametrize("job", ["17", "%j", "$SLURM_JOB_ID"])
def test_job_log_and_its_sidecar(job):
    log = paths.job_log("logs/m", "r", job)
    assert log == f"logs/m/r.{job}.log"
    assert paths.job_sidecar("logs/m", "r", job) == str(paths.sidecar_of(Path(log)))


def test_manifest_script_and_status_names(tmp_path):
    assert paths.manifest(tmp_path, "experiments/h200_8b.yaml") == tmp_path / "h200_8b.manifest.json"
    assert paths.script(tmp_path, "r", ".sbatch") == tmp_path / "r.sbatch"
    assert paths.status_file(tmp_path) == tmp_path / "runs.json"
    assert paths.default_log_dir("m") == "logs/m"


@pytest.mark.parametrize("script", sorted(GENERATED.glob("*.sh")), ids=lambda p: p.name)
def test_scripts_record_exactly_the_knobs_of_paths(script):
    text = script.read_text()
    listed = re.search(r"^for knob in (.*?); do$", text, re.S | re.M).group(1)
    assert tuple(listed.replace("\\", " ").split()) == paths.KNOBS
    header = text.split("set -euo pipefail")[0]
    assert [k for k in paths.KNOBS if k not in header] == [], "the header documents every knob"


@pytest.mark.parametrize("sbatch", sorted(GENERATED.glob("*.sbatch")), ids=lambda p: p.name)
def test_batch_scripts_name_their_logs_by_the_rule(sbatch):
    text = sbatch.read_text()
    run = sbatch.stem
    output = re.search(r"^#SBATCH --output=(.*)$", text, re.M).group(1)
    folder = output.rsplit("/", 1)[0]
    assert output == paths.job_log(folder, run, "%j")
    meta = re.search(r"^default_meta_file=(.*)$", text, re.M).group(1)
    assert meta.endswith(paths.job_sidecar("", run, "$SLURM_JOB_ID"))
