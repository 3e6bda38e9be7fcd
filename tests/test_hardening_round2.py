"""Hardening, round two (issue 30): one test per kind of fault.

The cases come from tests/fuzz/fuzz_matrix.py (round_two_cases, the `hostile` bench), whose full
run gives the figures in docs/hardening.md:

1. one reader of YAML text: every reader / constructor error is "invalid YAML: line L,
   column C", a lone surrogate is refused naming its key, nothing written or staged;
2. one set of names and values a launch can never take (fp8suite.config.reserved), shared by the
   matrix, run.py --env and the templates;
3. what sits beside a log: refused when not a regular file, bounded, checked for shape;
   impossible step times left out with a note; non-UTF-8 file names;
4. disks: a full disk or a FIFO where an output goes: one line, exit 1, nothing left behind;
5. one atomic-write helper (fp8suite.common.fileio).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from fuzz import fuzz_matrix as fz
import render
import report
from conftest import REPO
from fp8suite.common import fileio
from fp8suite.common import paths
from fp8suite.launch import plan
from fp8suite.config import reserved
from fp8suite.render import templating
from fp8suite.common.errors import ConfigError, UsageError
from fp8suite.config.matrix import load

LOGS = REPO / "tests" / "data" / "logs" / "megatron019"


def write(tmp_path: Path, m, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(m if isinstance(m, bytes) else fz.dump(m) if isinstance(m, dict) else m.encode())
    return path


def render_lines(tmp_path: Path, capsys, matrix: Path, *extra: str) -> tuple[int, list[str], Path]:
    out = tmp_path / "gen"
    code = render.main([str(matrix), "--out", str(out), *extra])
    return code, capsys.readouterr().err.strip().splitlines(), out


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(path, "m.yaml")
    return [str(p) for p in err.value.problems]


# 1. One reader of YAML text -----------------------------------------------------------------

@pytest.mark.parametrize("label", list(fz.READER_CHARS))
def test_raw_characters_yaml_refuses_are_invalid_yaml_with_line_and_column(tmp_path, capsys, label):
    good = fz.dump(fz.base()).decode()
    text = good.replace("Fuzzing base", f"Fuzz{fz.READER_CHARS[label]}ing base", 1)
    line = text[: text.index(fz.READER_CHARS[label])].count("\n") + 1
    code, err, out = render_lines(tmp_path, capsys, write(tmp_path, text))
    assert code == 2 and "Traceback" not in "\n".join(err)
    assert re.fullmatch(rf"m\.yaml: invalid YAML: line {line}, column \d+: character #x[0-9a-f]{{4}} .*",
                        err[0].split("/")[-1]), err
    assert not out.exists()


@pytest.mark.parametrize("text,shown", [("when: 2024-02-30\n", "2024-02-30"),
                                        ("when: 2024-01-01 25:00:00\n", "25:00:00"),
                                        ("when: 0x" + "f" * 5000 + "\n", "an integer of 20000 bits"),
                                        ("when: !!bool maybe\n", "'maybe' (bool)"),
                                        ("when: !!timestamp nope\n", "'nope' (timestamp)"),
                                        ("when: !!int ''\n", "'' (int)")])
def test_constructor_errors_are_invalid_yaml_with_line_and_column(tmp_path, text, shown):
    found = problems(write(tmp_path, fz.dump(fz.base()).decode() + text))
    assert len(found) == 1 and re.match(r"m\.yaml: invalid YAML: line \d+, column 7: cannot read", found[0])
    assert shown in found[0]


@pytest.mark.parametrize("escape,key", [("\\ud800", "description"), ("\\udfff", "description")])
def test_lone_surrogate_is_refused_naming_its_key_and_nothing_is_staged(tmp_path, capsys, escape, key):
    good = fz.dump(fz.base()).decode()
    text = good.replace("description: Fuzzing base matrix.", f'description: "a{escape}b"')
    code, err, out = render_lines(tmp_path, capsys, write(tmp_path, text))
    assert code == 2
    assert any(line.endswith(f"m.yaml: {key}: line 2, column 14: {escape} is half of a UTF-16 "
                             "surrogate pair: no encoder can write it; write the character itself")
               for line in err), err
    assert not out.exists() or not list(out.rglob("*"))


def test_the_reference_file_goes_through_the_same_reader(tmp_path, capsys):
    """report.py --reference: the suite's other YAML input, read by the same reader."""
    bad = tmp_path / "ref.yaml"
    bad.write_text("source: x\nshape: {num_layers: 2}\nrows: [\x1b]\n")
    os.mkfifo(tmp_path / "fifo.yaml")
    for path, expected in ((bad, r"invalid YAML: line 3, column 8: character #x001b"),
                           (tmp_path / "fifo.yaml", r"not a regular file")):
        code, _, err = fz._call(report.main, [str(LOGS / "bf16.log"), "--out", str(tmp_path / "out"),
                                              "--reference", str(path)], limit=10)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and re.search(expected, lines[0]), err
        assert lines[0].startswith(f"report.py: --reference {path}: ")


# 2. Names and values a launch can never take ------------------------------------------------

@pytest.mark.parametrize("name", reserved.BASH_READONLY)
def test_bash_readonly_names_are_refused_and_would_stop_the_script(tmp_path, name):
    # The premise: bash itself refuses the export (the script would die there).
    done = subprocess.run(["bash", "-c", f"set -e; export {name}=1; echo alive"], capture_output=True, text=True)
    assert "alive" not in done.stdout
    m = fz.put(fz.base(), f"env/{name}", "1")
    assert any(p.startswith(f"m.yaml: env.{name}: cannot be set by the matrix: readonly in bash")
               for p in problems(write(tmp_path, m)))
    with pytest.raises(UsageError):
        plan.launch_env([f"{name}=1"])


@pytest.mark.parametrize("name", sorted(fz.RESERVED_NAMES))
def test_reserved_names_are_refused_by_the_matrix_and_by_run_env(tmp_path, name):
    m = fz.put(fz.base(), f"env/{name}", "1")
    assert any(p.startswith(f"m.yaml: env.{name}: cannot be set") for p in problems(write(tmp_path, m)))
    with pytest.raises(UsageError) as err:
        plan.launch_env([f"{name}=1"])
    assert err.value.lines == [f"--env {name}: cannot be set: {reserved.env_name_problem(name, launch=True)}"]


def test_run_env_names_are_matched_whole():
    # `$` in a pattern accepts a final newline: "FOO\n" was taken as a name.
    with pytest.raises(UsageError) as err:
        plan.launch_env(["FOO\n=1"])
    assert err.value.lines == ["--env FOO\\n=1: expected NAME=VALUE, e.g. --env GPUS_PER_NODE=1"]


def test_every_variable_a_rendered_script_assigns_is_refused(tmp_path):
    """Read from the rendered scripts themselves: a variable a template starts assigning is
    refused without anyone updating a list (launch settings, PYTHONPATH, which the script
    only extends, and the matrix's own env stay settable)."""
    meta, runs = load(write(tmp_path, fz.base()), "m.yaml")
    texts = [text for rendered in templating.render_runs(meta, runs, "m.yaml", tmp_path / "out")
             for _, text in rendered.scripts.values()]
    assigned = {name for text in texts
                for name in re.findall(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\+?=", text, re.M)}
    matrix_env = {name for run in runs for name in run.settings.env}  # the matrix's own exports
    settable = set(paths.KNOBS) | {paths.SUITE_DIR} | reserved.EXTENDED | matrix_env
    assert assigned - settable, "no assignment found: the pattern is stale"
    for name in sorted(assigned - settable):
        assert reserved.env_name_problem(name, launch=True), name
    for knob in paths.KNOBS:
        if knob not in reserved.OWNED:
            assert plan.launch_env([f"{knob}=1"]) == {knob: "1"}


def test_run_env_payloads_never_run(tmp_path):
    """run.py with BASH_ENV=<file> or SHELLOPTS=xtrace + PS4=$(...): exit 2, nothing runs
    (before, both reached every launched script's bash)."""
    manifest = fz._render_queue(tmp_path)
    marker = tmp_path / "pwned"
    cases = fz.env_cases(marker)
    for name in ("BASH_ENV=<file>", "SHELLOPTS=xtrace + PS4=$(...)"):
        result = fz.check_env_case(name, cases[name], manifest, marker)
        assert result.ok, (name, result.why)


@pytest.mark.parametrize("value", ["/opt/bin:$PATH", "${HOME}/x", "a$b"])
def test_dollar_in_values_is_refused_where_nothing_expands_it(tmp_path, value):
    m = fz.put(fz.base(), "env/PATH", value)
    assert any(p.startswith("m.yaml: env.PATH:") and "holds '$'" in p for p in problems(write(tmp_path, m)))
    m = fz.put(fz.base(), "checkpoint", {"dir": value})
    assert any(p.startswith("m.yaml: checkpoint.dir:") for p in problems(write(tmp_path, m)))
    with pytest.raises(UsageError) as err:
        plan.launch_env([f"PATH={value}"])
    assert "holds '$'" in err.value.lines[0]


@pytest.mark.parametrize("option", fz.SUITE_SBATCH)
def test_sbatch_options_the_suite_sets_are_refused(tmp_path, option):
    m = fz.put(fz.base(), "slurm/sbatch_options", ["--exclusive", option])
    assert any(p.startswith("m.yaml: slurm.sbatch_options: entry 1") for p in problems(write(tmp_path, m)))


def test_every_sbatch_option_the_batch_script_writes_is_reserved(tmp_path):
    m = fz.base()
    m["slurm"]["request_gpus"] = True
    meta, runs = load(write(tmp_path, m), "m.yaml")
    text = templating.render_runs(meta, runs, "m.yaml", tmp_path / "out")[0].scripts["slurm"][1]
    written = set(re.findall(r"^#SBATCH (--[a-z-]+)", text, re.M)) - set(reserved.DEFAULTED_SBATCH)
    assert written and written <= set(reserved.SUITE_SBATCH), written - set(reserved.SUITE_SBATCH)
    for option in written:
        assert reserved.sbatch_option_problem(f"{option}=1")


@pytest.mark.parametrize("folder", ["logs/%u", "/scratch/%j/logs", "logs/%x"])
def test_percent_patterns_in_the_log_folder_are_refused(tmp_path, folder):
    found = problems(write(tmp_path, fz.put(fz.base(), "log_dir", folder)))
    assert any(p.startswith("m.yaml: log_dir:") and "sbatch expands" in p for p in found), found


@pytest.mark.parametrize("value", fz.LOG_LIKE_VALUES)
def test_run_names_that_read_back_as_another_runs_log_are_refused(tmp_path, value):
    m = fz.base()
    m["axes"]["recipe"][value] = m["axes"]["recipe"].pop("fp8")
    found = problems(write(tmp_path, m))
    assert any(p.startswith("m.yaml: run_name: run name 'fz_" + value) for p in found), found


def test_accepted_run_names_read_back_as_themselves():
    for name in ("fz_bf16", "a.b", "v1.0a", "x.node0", "x.node01", "x.nodes2"):
        assert reserved.run_name_problem(name) == ""
        assert paths.log_name(name) == (name, 0, -1)


@pytest.mark.parametrize("line,key", [("~: 1\n", "~"), ("1: x\n", "1"), ("true: 1\n", "True"),
                                      ("1.5: x\n", "1.5")])
def test_non_string_top_level_keys_are_refused(tmp_path, line, key):
    found = problems(write(tmp_path, fz.dump(fz.base()).decode() + line))
    assert any(p.startswith(f"m.yaml: {key}: a key must be a name") for p in found), found


# 3. What sits beside a log ------------------------------------------------------------------

def test_read_regular_refuses_what_is_not_a_regular_file_and_bounds_the_read(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    os.symlink("/dev/zero", tmp_path / "zero")
    (tmp_path / "dir").mkdir()
    for name, kind in (("fifo", "FIFO"), ("zero", "device"), ("dir", "folder")):
        with pytest.raises(fileio.NotRegularFile) as err:
            fileio.read_regular(tmp_path / name, 1024)
        assert err.value.kind == kind
    (tmp_path / "big").write_bytes(b"x" * 2048)
    with pytest.raises(fileio.TooLarge):
        fileio.read_regular(tmp_path / "big", 1024)
    assert fileio.read_regular(tmp_path / "big", 2048) == b"x" * 2048


BESIDE = fz._beside_cases()


@pytest.mark.parametrize("case", list(BESIDE))
def test_report_survives_what_sits_beside_a_log(tmp_path, case):
    result = fz.check_beside_case(case, BESIDE[case], tmp_path)
    assert result.ok, result.why


def _report_notes(tmp_path: Path, make) -> dict:
    logs = tmp_path / "logs"
    logs.mkdir()
    for log in ("bf16.log", "fp8cs.log"):
        (logs / log).write_bytes((LOGS / log).read_bytes())
    make(logs)
    assert report.main([str(logs), "--out", str(tmp_path / "out")]) == 0
    return json.loads((tmp_path / "out" / "summary.json").read_text())


def test_hostile_sidecars_and_kernel_tables_are_left_out_with_a_note(tmp_path):
    def make(logs):
        os.mkfifo(logs / "fp8cs.meta.json")
        (logs / "fp8cs.kernels.json").write_text(json.dumps(fz.KERNEL_SHAPES["total_us text"]))
    text = json.dumps(_report_notes(tmp_path, make))
    assert "sidecar fp8cs.meta.json unreadable (not a regular file (FIFO))" in text
    assert "kernel table fp8cs.kernels.json left out: kernels[0] is not" in text


@pytest.mark.parametrize("kind", list(fz.BAD_STEP_TIMES))
def test_impossible_step_times_are_left_out_with_a_note(tmp_path, kind):
    rows = _report_notes(tmp_path, BESIDE[f"step times {kind}"])
    text = json.dumps(rows)
    assert "-330" not in text.replace("-330.0 ms), left out", "") and "Infinity" not in text
    if kind in ("negative", "zero", "denormal"):
        assert re.search(r"iteration times? of zero or less, or denormal \(e\.g\. [-0-9.e]+ ms\), left out",
                         text), text


def test_kernel_table_shapes_are_checked_where_tables_are_read(tmp_path):
    from fp8suite.logs import kernels
    for name, shape in fz.KERNEL_SHAPES.items():
        assert kernels.table_problem(shape), name
        path = tmp_path / "t.json"
        path.write_text(json.dumps(shape))
        if isinstance(shape, dict):
            with pytest.raises(ValueError):
                kernels.table_of(path)


# 4. Disks -----------------------------------------------------------------------------------

@contextlib.contextmanager
def full_disk(tmp_path: Path, monkeypatch):
    """A full disk: a filled 64 KiB tmpfs where it can be mounted (root, as on CI), else every
    write of a staged file failing with ENOSPC."""
    with fz.full_disk(tmp_path / "disk") as out:
        if out is None:
            def no_space(fd, data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            monkeypatch.setattr(fileio, "write_all", no_space)
            out = tmp_path / "out"
            out.mkdir()
        yield out


def _left(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]


def test_render_on_a_full_disk_is_one_line_exit_1_nothing_left(tmp_path, capsys, monkeypatch):
    matrix = write(tmp_path, fz.base())
    with full_disk(tmp_path, monkeypatch) as out:
        code = render.main([str(matrix), "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        left = _left(out)
        written = [p for p in out.rglob("*") if p.is_file()]
    assert code == 1 and len(err) == 1 and "No space left on device" in err[0], err
    assert not left and not written


def test_render_that_cannot_create_out_on_a_full_disk_is_exit_1(tmp_path, capsys, monkeypatch):
    matrix = write(tmp_path, fz.base())

    def no_space(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
    monkeypatch.setattr(Path, "mkdir", no_space)
    code = render.main([str(matrix), "--out", str(tmp_path / "new")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and "No space left on device" in err[0], err


def test_render_with_a_fifo_in_out_does_not_hang(tmp_path, capsys):
    matrix = write(tmp_path, fz.base())
    out = tmp_path / "gen"
    out.mkdir()
    os.mkfifo(out / "fz_bf16.sh")
    code, _, err = fz._call(render.main, [str(matrix), "--out", str(out)], limit=10)
    assert code == 1 and "hang:" not in err and len(err.strip().splitlines()) == 1, err
    assert "fz_bf16.sh: not a regular file (FIFO)" in err
    assert sorted(p.name for p in out.iterdir()) == ["fz_bf16.sh"]  # nothing else written or left


def test_report_on_a_full_disk_is_one_line_exit_1(tmp_path, capsys, monkeypatch):
    with full_disk(tmp_path, monkeypatch) as out:
        code = report.main([str(LOGS / "bf16.log"), "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        left = _left(out)
    assert code == 1 and len(err) == 1 and err[0].startswith("report.py: cannot write "), err
    assert "internal error" not in err[0] and not left


# 5. One atomic-write helper -----------------------------------------------------------------

def test_one_atomic_write_helper():
    """Temp-and-rename lives in fileio only: no other module stages files its own way."""
    pattern = re.compile(r"os\.replace\(|mkstemp\(|\.replace\((?:tmp|staged)|\.tmp\"|NamedTemporaryFile\(")
    offenders = []
    for path in sorted((REPO / "tools").rglob("*.py")):
        if path.name in ("fileio.py", "fuzz_matrix.py", "bench_report.py") or "te_wgrad" in path.parts:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, offenders


def test_staged_files_are_removed_when_a_write_fails(tmp_path, monkeypatch):
    (tmp_path / "a").write_text("old")
    calls = []

    real = fileio.write_all

    def fail_second(fd, data):
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, data)
    monkeypatch.setattr(fileio, "write_all", fail_second)
    with pytest.raises(OSError):
        with fileio.Staged() as staged:
            staged.add(tmp_path / "a", "new")
            staged.add(tmp_path / "b", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"] and (tmp_path / "a").read_text() == "old"


# The benchmark ------------------------------------------------------------------------------

def test_fuzzer_hostile_bench_quick_meets_every_goal(capsys):
    assert fz.main(["--quick", "--bench", "hostile"]) == 0, capsys.readouterr().out[-2000:]
