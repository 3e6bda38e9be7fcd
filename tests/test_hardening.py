"""Hardening: no matrix, path or signal can crash, hang, inject into, or silently change a run.

The cases come from tests/fuzz/fuzz_matrix.py (the benchmark whose full run gives the README's
figures); here every malformed matrix runs, and a sample of the injection attempts and the
queue kills. One test per kind of fault:

1. one quoting path: every value a template writes is prepared by templating (the Jinja
   environment refuses anything else), and any text survives `shell_word` -> bash unchanged;
2. comment lines carry no raw text (names matched whole, control characters escaped);
3. every loader failure is a one-line problem, exit 2, nothing written (run.py too);
4. bounded input (size, depth, aliases, number of runs);
5. ranges of numbers; 6. no silent config loss (duplicate keys, empty excludes, the
   conflicting parallel key); 7. a killed queue closes stale state from evidence.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fuzz import fuzz_matrix as fz
from conftest import REPO
from fp8suite.common import errors
from fp8suite.render import templating
from fp8suite.common.errors import ConfigError
from fp8suite.config.matrix import load

RUN = REPO / "tools" / "run.py"


def write(tmp_path: Path, m: dict | str, name: str = "m.yaml") -> Path:
    path = tmp_path / name
    path.write_text(m if isinstance(m, str) else yaml.safe_dump(m, sort_keys=False))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(path, "m.yaml")
    return [str(p) for p in err.value.problems]


# 1. One quoting path ------------------------------------------------------------------------

def random_texts(n: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)
    alphabet = [chr(c) for c in range(32, 127)] + ["é", "ü", "\u00a0", "“", "”", "中", "\t", "\n"]
    specials = ["$(", "`", "'", '"', "\\", "${IFS}", ";", "|", "&", "!", "#", "*", "?", "[", "~", "{{", "%"]
    out = []
    for _ in range(n):
        parts = [rng.choice(specials + alphabet) for _ in range(rng.randint(1, 12))]
        out.append("".join(parts))
    return out


def test_shell_word_round_trips_through_bash():
    texts = random_texts(400) + [p.replace("@", "x") for p in fz.PAYLOADS] + ["", "-", "a,b", "--x=1"]
    texts = [t for t in texts if "\x00" not in t]
    script = "".join(f"printf '%s\\0' {templating.shell_word(t)}\n" for t in texts)
    done = subprocess.run(["bash", "-c", script], capture_output=True, check=True)
    assert done.stdout.decode("utf-8").split("\0")[:-1] == texts


def test_double_quoted_fragments_round_trip_through_bash():
    texts = [t for t in random_texts(300, seed=2) if "\x00" not in t]
    script = "".join(f'printf "%s\\0" "pre{templating._dq(t)}"\n' for t in texts)
    done = subprocess.run(["bash", "-c", script], capture_output=True, check=True)
    assert done.stdout.decode("utf-8").split("\0")[:-1] == ["pre" + t for t in texts]


@pytest.mark.parametrize("value", ["raw", 7, 1.5, None, True, ["a"]])
def test_templates_refuse_unprepared_values(value):
    env = templating.environment()
    with pytest.raises(errors.UnquotedValue):
        env.from_string("x={{ v }}").render(v=value)
    assert env.from_string("x={{ v }}").render(v=templating.shell_word("a b")) == "x='a b'"


def test_every_template_variable_is_prepared(tmp_path):
    """Render a matrix that takes every branch (W&B, container, mounts, options, a data blend,
    a tokenizer): the environment would raise on any raw value; and no context value is a
    plain string or number outside the three prepared kinds."""
    m = fz.base()
    m["data"] = {"mock_data": False, "data_path": ["0.5", "a", "0.5", "/abs/b"],
                 "tokenizer_model": "./tok", "vocab_size": 128}
    meta, runs = load(write(tmp_path, m), "m.yaml")
    rendered = templating.render_runs(meta, runs, "m.yaml", tmp_path / "out")
    assert len(rendered) == 2

    def walk(value, where):
        if isinstance(value, (templating.Shell, templating.Comment, templating.Directive)):
            return
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}")
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")
        elif value is None or isinstance(value, bool):
            return  # conditionals only
        else:
            # Strings used only in {% if %} (gradient_accumulation_fusion) are the exception.
            assert where == ".fusion", f"{where} = {value!r} is not prepared"

    ctx = templating.context(meta, runs[0], "m.yaml", "s.sh", tmp_path / "out")
    walk(ctx, "")


def test_sample_of_injection_attempts_is_inert(tmp_path):
    every = fz.injection_cases()
    cases = every[::61] + [next(c for c in every[5:] if c.kind == kind) for kind in ("file", "out")]
    assert len({c.kind for c in cases}) == 4
    results = fz.run_injections(cases, tmp_path, shutil.which("shellcheck"), sidecar=False)
    assert sum(r.accepted for r in results) >= 5
    for case, res in zip(cases, results):
        assert not res.executed, case
        assert not res.bash_n_failed and not res.shellcheck_failed, (case, res.traceback)
        assert "Traceback" not in res.traceback, (case, res.traceback)


def test_container_values_are_quoted_in_the_batch_script(tmp_path):
    """The two injections that executed: an image and a mount with $(...)."""
    m = fz.base()
    m["slurm"]["container_image"] = "img$(touch${IFS}/tmp/x)"
    assert any(p.startswith("m.yaml: slurm.container_image:") for p in problems(write(tmp_path, m)))
    # A mount is a path: '$' is refused (nothing expands it), other odd characters are allowed
    # and written inside double quotes escaped.
    m = fz.base()
    m["slurm"]["container_mounts"] = ["/a:/b'$(touch${IFS}/tmp/x)'"]
    assert any(p.startswith("m.yaml: slurm.container_mounts:") for p in problems(write(tmp_path, m)))
    m["slurm"]["container_mounts"] = ["/a:/b'`touch>/tmp/x`'"]
    meta, runs = load(write(tmp_path, m), "m.yaml")
    text = templating.render_runs(meta, runs, "m.yaml", tmp_path / "out")[0].scripts["slurm"][1]
    assert '--container-mounts="$SUITE_DIR:$SUITE_DIR,/a:/b\'\\`touch>/tmp/x\\`\'"' in text


# 2. Comment lines ---------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["a\nb", "a\rb", "a\x1bb", "a\x85b", "a\u2028b", "a\x00b", "a\tb"])
def test_comment_text_stays_on_one_line(text):
    out = templating.comment(text)
    assert "\n" not in out and "\r" not in out and not templating._UNSAFE_LINE.search(out)


@pytest.mark.parametrize("kind,field", [("out", "--out folder"), ("file", "matrix file name"),
                                        ("matrix", "run_name + axis value"), ("matrix", "description")])
def test_newlines_in_paths_and_names_stay_in_comments(tmp_path, kind, field):
    """A newline and a command after it, where a comment line shows the text: the scripts
    render (paths) or are refused (names), and running them runs no command."""
    res, job = fz.prepare_injection(fz.Injection(field, "x\ntouch @", kind), tmp_path, 0, sidecar=False)
    assert res.accepted == (kind != "matrix")
    for script in job["scripts"]:
        comments = [ln for ln in script.read_text().splitlines() if ln.startswith("#")]
        assert not any(ln.startswith("#") and "pwned" in ln and "\\n" not in ln for ln in comments)
    res = fz.run_injection(res, job, None)
    assert not res.executed and not res.bash_n_failed


@pytest.mark.parametrize("value", ["a\n", "a\r", "a\x0b", "a\u2028"])
def test_names_are_matched_whole(tmp_path, value):
    m = fz.base()
    m["axes"]["recipe"][value] = {}
    assert problems(write(tmp_path, m))
    m = fz.base()
    m["name"] = "fuzz" + value
    assert any(p.startswith("m.yaml: name:") for p in problems(write(tmp_path, m)))


# 3-6. Malformed matrices: every one handled -------------------------------------------------

MALFORMED = fz.malformed_cases()


def test_benchmark_has_enough_cases():
    assert len(MALFORMED) >= 150 and len(fz.injection_cases()) >= 400


@pytest.mark.parametrize("case", MALFORMED, ids=[c.name for c in MALFORMED])
def test_malformed_matrix_is_one_line_problems_exit_2_nothing_written(case, tmp_path):
    outcome = fz.check_malformed(case, tmp_path)
    assert outcome.ok, outcome.why
    assert outcome.seconds < 5


def test_out_folder_that_cannot_be_written_is_one_line(tmp_path, capsys):
    import render
    matrix = write(tmp_path, fz.base())
    (tmp_path / "afile").write_text("")
    for out in (tmp_path / "afile", tmp_path / "afile" / "sub"):
        assert render.main([str(matrix), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "Traceback" not in err[0], err


def test_duplicate_keys_name_both_lines(tmp_path):
    text = fz.dump(fz.base()).decode().replace("    bf16: {}\n", "    bf16: {}\n    fp8: {}\n")
    found = problems(write(tmp_path, text))
    assert any(p.startswith("m.yaml: axes.recipe.fp8: duplicate key: set on line") and "again on line" in p
               for p in found), found


def test_parallel_problem_names_context_parallel(tmp_path):
    m = fz.base()
    m["axes"]["recipe"]["fp8"]["megatron"]["model"] = {"--context-parallel-size": 3}
    found = problems(write(tmp_path, m))
    assert "m.yaml: axes.recipe.fp8.megatron.model.--context-parallel-size: run fz_fp8: world size 8 " \
           "(target.nodes x target.gpus_per_node) is not divisible by TP x PP x CP = 1 x 1 x 3" in found
    # Megatron's own rule on the sequence length under CP may add its line; nothing else.
    assert all("context-parallel" in line for line in found)


def test_min_free_gb_bound_keeps_bash_arithmetic_in_range():
    from fp8suite.config import limits
    assert int(limits.MAX_MIN_FREE_GB * 1024) < 2 ** 63 - 1


# 7. Queue stale state -----------------------------------------------------------------------

@pytest.fixture
def manifest(tmp_path):
    return fz._render_queue(tmp_path)


def _env(sleep: float) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FP8SUITE_", "TRAIN_CMD"))}
    env["TRAIN_CMD"] = f"{sys.executable} {fz.STANDIN} --fake-sleep {sleep}"
    return env


def _wait_for(predicate, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_sigkilled_queue_records_the_real_outcome_and_does_not_retrain(manifest, tmp_path):
    logs = tmp_path / "logs"
    cmd = [sys.executable, str(RUN), str(manifest), "--only", "fake_ok", "--resume"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(0.3), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = logs / "fake_ok.log"
    _wait_for(lambda: log.exists() and " iteration " in log.read_text())
    proc.kill()
    proc.wait()
    attempt = json.loads((logs / "runs.json").read_text())["runs"]["fake_ok"]["attempts"][-1]
    assert attempt["state"] == "running" and attempt["token"]
    # While the orphaned run goes on, a second queue refuses to start it again.
    again = subprocess.run(cmd, cwd=REPO, env=_env(0.01), capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "fake_ok is running now" in again.stderr, again.stderr
    _wait_for(lambda: not fz._group_alive(attempt["pid"]), within=60)
    assert "[after training is done]" in log.read_text()
    again = subprocess.run(cmd, cwd=REPO, env=_env(0.01), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stdout + again.stderr
    run = json.loads((logs / "runs.json").read_text())["runs"]["fake_ok"]
    assert run["state"] == "completed" and len(run["attempts"]) == 1
    assert "after run.py ended" in run["reason"] and run["iteration"] == 8 and run["exit_code"] == 0
    assert "skip fake_ok: completed" in again.stdout
    assert sorted(p.name for p in logs.glob("*.log")) == ["fake_ok.log"]


@pytest.mark.parametrize("content", ["[" * 100000 + "]" * 100000, '{"runs": {"fake_ok": "done"}}',
                                     '{"runs": {"fake_ok": {"attempts": [{"log": 5}]}}}', "\xff\xfe",
                                     '{"runs": []}', "null"],
                         ids=["deep", "record-a-string", "log-a-number", "not-utf8", "runs-a-list", "null"])
def test_corrupt_status_file_or_manifest_is_one_line(manifest, tmp_path, content):
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    (logs / "runs.json").write_text(content)
    out = subprocess.run([sys.executable, str(RUN), str(manifest), "--only", "fake_ok"], cwd=REPO,
                         env=_env(0.01), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-1000:]
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    bad = tmp_path / "bad.manifest.json"
    bad.write_text(content)
    out = subprocess.run([sys.executable, str(RUN), str(bad)], cwd=REPO, env=_env(0.01),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-1000:]


def _stale_state(tmp_path: Path, log_text: str, token: str = "t0ken") -> Path:
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    (logs / "fake_crash.log").write_text(log_text)
    attempt = {"mode": "local", "state": "running", "pid": None, "token": token,
               "log": str(logs / "fake_crash.log"), "meta": str(logs / "fake_crash.meta.json")}
    (logs / "runs.json").write_text(json.dumps({"runs": {"fake_crash": dict(attempt, attempts=[attempt])}}))
    return logs


def test_run_killed_before_its_pid_was_recorded_is_found_by_its_token(manifest, tmp_path):
    logs = _stale_state(tmp_path, "")
    holder = subprocess.Popen(["sleep", "30"], env=dict(os.environ, FP8SUITE_ATTEMPT="t0ken"))
    try:
        out = subprocess.run([sys.executable, str(RUN), str(manifest), "--only", "fake_crash"], cwd=REPO,
                             env=_env(0.01), capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and "fake_crash is running now" in out.stderr, out.stderr
    finally:
        holder.kill()
        holder.wait()
    log = (REPO / "tests" / "data" / "logs" / "megatron019" / "fp8delayed_1F1L_bad.log").read_text()
    logs = _stale_state(tmp_path, log)
    out = subprocess.run([sys.executable, str(RUN), str(manifest), "--only", "fake_crash", "--dry-run"],
                         cwd=REPO, env=_env(0.01), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    run = json.loads((logs / "runs.json").read_text())["runs"]["fake_crash"]
    assert run["state"] == "running"  # a dry run writes nothing
    out = subprocess.run([sys.executable, str(RUN), str(manifest), "--only", "fake_ok", "--only", "fake_crash",
                          "--resume"], cwd=REPO, env=_env(0.01), capture_output=True, text=True, timeout=60)
    first = json.loads((logs / "runs.json").read_text())["runs"]["fake_crash"]["attempts"][0]
    assert first["state"] == "failed" and "after run.py ended" in first["reason"], first


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_while_run_py_loads_exits_without_traceback(sig, tmp_path):
    """Signals at moments spread over run.py's start (imports, matrix check): no traceback."""
    # The interpreter's own start-up (before run.py's first line) is outside run.py's reach:
    # each signal is sent once run.py has begun.
    env = dict(os.environ)
    for delay in (0.0, 0.02, 0.05, 0.1, 0.2, 0.4):
        proc = subprocess.Popen([sys.executable, "-X", "importtime", str(RUN), "experiments/h200_8b.yaml",
                                 "--dry-run"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        # -X importtime writes a line per import: argparse is imported right after run.py
        # installs its handlers.
        for line in proc.stderr:
            if "argparse" in line:
                break
        time.sleep(delay)
        proc.send_signal(sig)
        rest = proc.stderr.read()
        proc.wait(timeout=30)
        assert "Traceback" not in rest, rest[-2000:]
        # 128 + N from run.py's handler; 0 when it had finished; -N when the signal came as the
        # interpreter shut down (it restores the default handlers then).
        assert proc.returncode in (0, 128 + sig, -sig), (delay, proc.returncode, rest[-500:])


def test_sample_of_queue_kills(tmp_path):
    figures, results = fz.bench_kills(1, seed=3, work=tmp_path)
    assert not any(r["problems"] for r in results), results
    assert figures["lost logs"] == figures["corrupt status files"] == figures["completed runs trained again"] == 0


def test_benchmark_cli_quick_prints_its_figures():
    """The command whose full run gives the README's figures, in its --quick form."""
    out = subprocess.run([sys.executable, str(REPO / "tests" / "fuzz" / "fuzz_matrix.py"), "--quick", "--bench", "malformed"],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "tracebacks                                                   0" in out.stdout
    assert "files written                                                0" in out.stdout
    assert out.stdout.rstrip().endswith("all goals met")


def test_a_closed_output_pipe_ends_every_cli_quietly(tmp_path):
    """`render.py ... | head -1`: no BrokenPipeError traceback, the status of a tool killed by
    SIGPIPE (141), from every command-line tool (pretrain_gpt.py is torchrun's, not a CLI's)."""
    import subprocess
    import sys
    tools = Path(__file__).resolve().parents[1] / "tools"
    for cli in sorted(tools.glob("*.py")):
        if cli.name == "pretrain_gpt.py":
            continue
        assert cli.read_text().rstrip().endswith("sys.exit(exit_status(main))"), cli.name
    matrix = tools.parent / "experiments" / "convergence_8b_width.yaml"
    # `true` exits without reading: the tool's first write finds the pipe closed.
    done = subprocess.run(["bash", "-c", f'"{sys.executable}" "{tools / "render.py"}" "{matrix}" '
                           f'--out "{tmp_path}" | true; echo "${{PIPESTATUS[0]}}"'],
                          capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.stdout.strip() == "141", done.stdout
