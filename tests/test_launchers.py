"""Launchers behind one interface, found by name: the registry, run.py's dispatch, and that a
new launcher is new files only (a module in fp8suite/launch/ and its template)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from conftest import REPO
import run as run_cli
import fp8suite.launch as launch_package
from fp8suite.launch import registry as launchers
from fp8suite.render import scripts
from fp8suite.common import paths
from fp8suite.common.errors import UsageError
from fp8suite.launch.base import Launcher

from helpers import BASE, run_render

GENERATED = REPO / "experiments" / "generated"


def test_registry_finds_every_launcher_module():
    every = launchers.all()
    assert launchers.names() == ("local", "slurm") and list(every) == sorted(every)
    for name, one in every.items():
        assert isinstance(one, Launcher) and one.name == name and one.summary
        assert (paths.TEMPLATES / scripts.kinds()[name].template).is_file()
    assert len({one.suffix for one in every.values()}) == len(every)
    assert launchers.get("slurm").can("watch") and launchers.get("slurm").can("cancel")
    assert not launchers.get("local").can("watch") and not launchers.get("local").can("cancel")
    with pytest.raises(UsageError, match=re.escape("--launcher slrum: no such launcher (did you mean "
                                                   "slurm?); launchers: local, slurm")):
        launchers.get("slrum")


@pytest.mark.parametrize("manifest", sorted(GENERATED.glob("*.manifest.json")), ids=lambda p: p.name)
def test_manifests_list_every_launchers_script(manifest):
    for entry in json.loads(manifest.read_text())["runs"]:
        assert list(entry["scripts"]) == list(launchers.names())
        for name, script in entry["scripts"].items():
            assert script == f"experiments/generated/{entry['name']}{launchers.get(name).suffix}"
            assert (REPO / script).is_file()


def args_of(*argv):
    return run_cli.parser().parse_args(["m.yaml", *argv])


@pytest.mark.parametrize("argv,name,launching", [
    ([], "local", True),
    (["--launcher", "local"], "local", True),
    (["--slurm"], "slurm", True),
    (["--launcher", "slurm"], "slurm", True),
    (["--slurm", "--watch"], "slurm", True),
    (["--watch"], "slurm", False),
    (["--cancel"], "slurm", False),
    (["--launcher", "slurm", "--cancel"], "slurm", False),
])
def test_run_picks_the_launcher_by_name(argv, name, launching):
    one, launch = run_cli.launcher_of(args_of(*argv))
    assert (one.name, launch) == (name, launching)


@pytest.mark.parametrize("argv,problem", [
    (["--launcher", "local", "--watch"], "--watch: the local launcher runs in the foreground; "
                                         "--watch is for launchers whose runs outlive run.py"),
    (["--launcher", "local", "--cancel"], "--cancel: the local launcher runs in the foreground; "
                                          "--cancel is for launchers whose runs outlive run.py"),
    (["--partition", "gpu"], "--partition is an sbatch option: add --slurm"),
    (["--watch", "--account", "a"], "--account is an sbatch option: add --slurm"),
    (["--slurm", "--cancel"], "--slurm and --cancel exclude each other"),
])
def test_option_problems_come_from_the_launchers(argv, problem):
    assert problem in run_cli.check(args_of(*argv), {})


def test_two_launchers_at_once_is_refused():
    with pytest.raises(UsageError, match="name two launchers"):
        run_cli.launcher_of(args_of("--launcher", "local", "--slurm"))


ECHO = '''
"""A launcher that only prints each run's script: the example of a new launcher."""

from fp8suite.launch.base import Launcher


class EchoLauncher(Launcher):
    name = "echo"
    summary = "print what would run"

    @classmethod
    def add_arguments(cls, ap):
        ap.add_argument("--echo-prefix", default="echo:")

    def launch(self, selected, states, args, extra, env, display):
        for plan, run in selected:
            text = run.scripts["echo"].read_text().strip()
            states[plan.name].begin(run.name, mode=self.name, state="completed",
                                    reason=f"{args.echo_prefix} {text}")
            states[plan.name].save()
        return 0
'''


def test_a_new_launcher_is_new_files_only(tmp_path, capsys, monkeypatch):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "echo.py").write_text(ECHO)
    templates = tmp_path / "templates"
    shutil.copytree(paths.TEMPLATES, templates)
    (templates / "echo.sh.j2").write_text("<%#- launch script: launcher echo, suffix .echo -#%>\n"
                                          "{{ run }} via {{ script_arg }} ({{ label }})\n")
    monkeypatch.setattr(paths, "TEMPLATES", templates)
    monkeypatch.setattr(launch_package, "__path__", [*launch_package.__path__, str(package)])
    monkeypatch.setattr(launchers, "_found", None)
    scripts.kinds.cache_clear()
    try:
        assert launchers.names() == ("echo", "local", "slurm")
        code, lines, out = run_render(tmp_path, capsys, BASE)
        assert (code, lines) == (0, [])
        assert (out / "r_cs.echo").read_text().startswith("r_cs via ")
        entry = json.loads((out / "m.manifest.json").read_text())["runs"][1]
        assert list(entry["scripts"]) == ["echo", "local", "slurm"]
        assert "--launcher NAME" in run_cli.parser().format_help() and "echo: print what" in \
            run_cli.parser().format_help()
        code = run_cli.main([str(out / "m.manifest.json"), "--launcher", "echo", "--echo-prefix", ">>",
                             "--state", str(tmp_path / "state")])
        state = json.loads((tmp_path / "state" / "runs.json").read_text())["runs"]
        assert code == 0 and state["r_bf16"]["state"] == "completed"
        assert state["r_bf16"]["reason"].startswith(">> r_bf16 via ")
        assert state["r_cs"]["reason"].endswith("(FP8 tensorwise (hybrid))")
    finally:
        monkeypatch.setattr(launchers, "_found", None)
        scripts.kinds.cache_clear()


@pytest.mark.parametrize("text, minutes", [("90", 90), ("90:30", 90.5), ("01:00:00", 60),
                                           ("2-00", 2880), ("1-02:03", 1563), ("1-00:00:30", 1440.5),
                                           ("UNLIMITED", None), ("", None), ("1:2:3:4", None)])
def test_slurm_time_formats(text, minutes):
    """sbatch --time's formats, as --time-limit is checked against them (issue 26, kind 10)."""
    from fp8suite.launch.slurm import slurm_minutes

    assert slurm_minutes(text) == (pytest.approx(minutes) if minutes is not None else None)


def test_batch_scripts_ask_for_cpus_beside_their_gpus():
    """Issue 26: a batch script that asks for GPUs asks for CPUs for its one task per node too
    (8 per GPU), or a cluster's default of one CPU per task puts every rank on one core."""
    import re

    from conftest import REPO
    from fp8suite.render.templating import CPUS_PER_GPU

    scripts = sorted((REPO / "experiments" / "generated").glob("*.sbatch"))
    assert scripts
    for script in scripts:
        text = script.read_text()
        gpus = re.search(r"^#SBATCH --gpus-per-node=(\d+)$", text, re.M)
        cpus = re.search(r"^#SBATCH --cpus-per-task=(\d+)$", text, re.M)
        assert (cpus is None) == (gpus is None), script.name
        if gpus:
            assert int(cpus.group(1)) == CPUS_PER_GPU * int(gpus.group(1)), script.name
        assert "\n#SBATCH --open-mode=append\n" in text, script.name
