"""Runs launched by hand as several nodes: one log per node, joined by the report into one run.

The launches here are real: the generated launch script started once per node (NNODES=2,
NODE_RANK=0/1, MASTER_ADDR=127.0.0.1) with tests/standins/fake_megatron.py as TRAIN_CMD, which
prints on each node what Megatron-Core prints there (arguments and end markers on node 0,
iterations on the last node). Other cases split a one-log run into the node logs Megatron would
have written (`split`) and check that joining them gives the run back.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import report
from conftest import REPO
from fp8suite.megatron import logvocab as V
from fp8suite.report import metrics
from fp8suite.logs import nodes
from fp8suite.common import paths
from fp8suite.logs import runs
from fp8suite.logs.parse import parse_log
from helpers import free_port

SCRIPT = REPO / "experiments" / "generated" / "train_llama3_8b_h200_fp8_cs.sh"
RUN = SCRIPT.stem
STANDIN = REPO / "tests" / "standins" / "fake_megatron.py"


def launch_nodes(log_dir: Path, *args: str, nnodes: int = 2, **env) -> list:
    """The generated script started once per node, at the same time; their exit statuses."""
    port = free_port()
    procs = []
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM", "FAKE_MEGATRON"))}
    for rank in range(nnodes):
        full = {**base, "PYTHON": sys.executable,
                "TRAIN_CMD": f"{sys.executable} {STANDIN} --fake-sleep 0.01",
                "LOG_DIR": str(log_dir), "TRITON_CACHE_DIR": str(log_dir.parent / "triton"),
                "NNODES": str(nnodes), "GPUS_PER_NODE": "1", "NODE_RANK": str(rank),
                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                "FAKE_MEGATRON_RENDEZVOUS_S": "30", "FAKE_MEGATRON_MEMORY_MB": "1000", **env}
        procs.append(subprocess.Popen(["bash", str(SCRIPT), "--train-iters", "6",
                                       "--log-interval", "1", *args], env=full,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))
    return [p.wait(timeout=120) for p in procs]


def report_of(log_dir: Path, out: Path, capsys) -> tuple:
    """(runs as loaded, report.md text, summary.json) of `log_dir`."""
    loaded = runs.load_runs(runs.find_logs([str(log_dir)]), {})
    assert report.main([str(log_dir), "--out", str(out)]) == 0
    capsys.readouterr()
    return loaded, (out / "report.md").read_text(), json.loads((out / "summary.json").read_text())


# --- naming ----------------------------------------------------------------------------------


@pytest.mark.parametrize("run", ["r", "a.b", "train_x-1", "x.node", "m.node1x"])
def test_log_names_round_trip(run, tmp_path):
    for node in (0, 1, 2, 13):
        for n in (0, 1, 2, 12):
            log = paths.attempt_log(tmp_path, run, n, node)
            assert paths.log_name(log.stem) == (run, node, n or -1), log.name
            assert paths.run_of_log(log.stem) == (run, n or -1)
            assert log.name == (f"{run}.node{node}" if node else run) + (f".{n}" if n else "") + ".log"
        assert paths.node_run_name(run, node) == (f"{run}.node{node}" if node else run)


def test_the_script_names_node_logs_by_the_rule(tmp_path):
    """The bash rule of the launch script is paths.next_log's, node by node, never overwriting."""
    logs = tmp_path / "logs"
    for rank in (1, 1, 0, 2, 0, 1):
        expected = paths.next_log(logs, RUN, rank)
        env = {**os.environ, "PYTHON": sys.executable, "TRAIN_CMD": "true", "LOG_DIR": str(logs),
               "TRITON_CACHE_DIR": str(tmp_path / "triton"), "NNODES": "3", "NODE_RANK": str(rank)}
        done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        assert f"logging to {expected}" in done.stdout
        meta = json.loads(paths.sidecar_of(expected).read_text())
        assert meta["log"] == str(expected)
        assert meta["overrides"]["env"]["NODE_RANK"] == str(rank)
        assert meta["overrides"]["env"]["NNODES"] == "3"
    assert sorted(p.name for p in logs.glob("*.log")) == sorted([
        f"{RUN}.log", f"{RUN}.1.log", f"{RUN}.node1.log", f"{RUN}.node1.1.log",
        f"{RUN}.node1.2.log", f"{RUN}.node2.log"])


# --- two nodes through the launch script -------------------------------------------------------


def test_two_node_launch_is_one_completed_run(tmp_path, capsys):
    logs = tmp_path / "logs"
    assert launch_nodes(logs) == [0, 0]
    node0, node1 = logs / f"{RUN}.log", logs / f"{RUN}.node1.log"
    assert sorted(p.name for p in logs.glob("*.log")) == sorted([node0.name, node1.name])
    assert paths.sidecar_of(node1).is_file() and paths.sidecar_of(node0).is_file()
    # Each node's log alone is incomplete, as Megatron's are.
    assert " iteration " not in node0.read_text() and "arguments" not in node1.read_text()

    loaded, text, data = report_of(logs, tmp_path / "out", capsys)
    (run,) = loaded
    assert run.name == RUN and run.nodes == [str(node0), str(node1)]
    assert run.log.steps.iterations == [1, 2, 3, 4, 5, 6]
    assert run.log.args["seq_length"] and run.log.args["world_size"] == "2"
    s = metrics.summarize(run, 1)
    assert (s.status, s.iterations_done, s.iterations_planned) == ("completed", 6, 6)
    # Tokens/s from node 0's arguments and the last node's iteration times.
    gbs, seq = int(run.log.args["global_batch_size"]), int(run.log.args["seq_length"])
    assert s.tokens_per_s_gpu == pytest.approx(gbs * seq / (s.median_iter_ms / 1000) / 2)
    assert s.runtime_s is not None and s.runtime_s > 0
    # Peak memory: the largest any node printed (node 1's rank prints 1100 MB).
    assert run.log.memory_peak_mb["max allocated"] == pytest.approx(1100.0)
    # The report: one run, both logs named.
    (entry,) = data["runs"]
    assert entry["status"] == "completed" and entry["tokens_per_s_per_gpu"]
    assert re.search(rf"- Log: `[^`]*/{re.escape(node0.name)}` \+ `[^`]*/{re.escape(node1.name)}` ",
                     text), text
    assert any(f"`{node0.name}` (node 0), `{node1.name}` (node 1)" in n for n in entry["notes"])


@pytest.mark.parametrize("crash_node", [0, 1])
def test_a_crash_on_one_node_is_a_crashed_run_naming_it(tmp_path, capsys, crash_node):
    logs = tmp_path / "logs"
    codes = launch_nodes(logs, FAKE_MEGATRON_CRASH_AT="4", FAKE_MEGATRON_CRASH_NODE=str(crash_node))
    assert codes == [1, 1]
    loaded, text, data = report_of(logs, tmp_path / "out", capsys)
    (run,) = loaded
    s = metrics.summarize(run, 1)
    assert s.status == "crashed" and s.iterations_done == 3
    assert s.reason.startswith(f"crashed on node {crash_node} in iteration 4: ValueError: "
                               "fake_megatron: crash in iteration 4"), s.reason
    assert len(run.nodes) == 2 and data["runs"][0]["status"] == "crashed"
    assert f"crashed on node {crash_node} in iteration 4" in text


def test_two_attempts_of_a_two_node_run_are_one_run_with_its_attempts(tmp_path, capsys):
    logs = tmp_path / "logs"
    assert launch_nodes(logs, FAKE_MEGATRON_CRASH_AT="2") == [1, 1]
    assert launch_nodes(logs) == [0, 0]
    loaded, text, data = report_of(logs, tmp_path / "out", capsys)
    (run,) = loaded
    assert run.name == RUN and Path(run.path).name == f"{RUN}.1.log"
    assert [a.status for a in run.attempts] == ["crashed", "completed"]
    assert [[Path(p).name for p in a.nodes] for a in run.attempts] == [
        [f"{RUN}.log", f"{RUN}.node1.log"], [f"{RUN}.1.log", f"{RUN}.node1.1.log"]]
    assert metrics.summarize(run, 1).status == "completed"
    # A completed launch is listed with its itr time (the stand-in's own timing).
    assert re.search(re.escape(f"`{RUN}.log` + `{RUN}.node1.log` crashed (1/6); `{RUN}.1.log` + "
                               f"`{RUN}.node1.1.log` completed (6/6, itr time ") + r"[0-9,.]+ ms\) "
                     + re.escape(f"(shown: `{RUN}.1.log` + `{RUN}.node1.1.log`)"), text)
    assert len(data["runs"]) == 1


def test_a_stray_node_log_is_shown_with_a_note(tmp_path, capsys):
    logs = tmp_path / "logs"
    assert launch_nodes(logs) == [0, 0]
    (logs / f"{RUN}.log").unlink()
    loaded, text, data = report_of(logs, tmp_path / "out", capsys)
    (run,) = loaded
    assert run.name == f"{RUN}.node1" and run.nodes == []
    assert run.log.steps.iterations == [1, 2, 3, 4, 5, 6]
    assert any(n.startswith(f"node 1's log of run {RUN}, launched by hand as several nodes, with "
                            "no node-0 log") for n in run.notes)
    assert [r["name"] for r in data["runs"]] == [f"{RUN}.node1"]
    assert f"{RUN}.node1.log" in text


def test_node_0_alone_says_its_other_nodes_are_missing(tmp_path, capsys):
    logs = tmp_path / "logs"
    assert launch_nodes(logs) == [0, 0]
    for p in logs.glob(f"{RUN}.node1.*"):
        p.unlink()
    (run,) = runs.load_runs(runs.find_logs([str(logs)]), {})
    assert run.name == RUN and any("node 0 of a launch on 2 nodes" in n for n in run.notes)


def test_a_slurm_job_log_with_both_nodes_interleaved_parses_as_one_run(tmp_path):
    """What srun does with the nodes' output: one file, lines of both nodes as they come."""
    port, out = free_port(), tmp_path / "job.log"
    procs = []
    with open(out, "ab") as f:
        for rank in (0, 1):
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("FAKE_MEGATRON")},
                   "NNODES": "2", "NODE_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(port), "GPUS_PER_NODE": "1"}
            procs.append(subprocess.Popen(
                [sys.executable, str(STANDIN), "--fake-sleep", "0.01", "--train-iters", "8",
                 "--log-interval", "1", "--seq-length", "64", "--fake-memory-mb", "500"],
                env=env, stdout=f, stderr=subprocess.STDOUT))
        assert [p.wait(timeout=60) for p in procs] == [0, 0]
    log = parse_log(out.read_bytes())
    assert log.status.name == "completed" and log.status.last_iteration == 8
    assert log.steps.iterations == list(range(1, 9)) and log.args["world_size"] == "2"
    assert log.memory_peak_mb["max allocated"] == pytest.approx(600.0)


# --- joining, generated cases ----------------------------------------------------------------

STAMP = re.compile(r"(?:\[|datetime: )(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?)")


def random_logs(rng: random.Random, n: int) -> list:
    """n logs of lines, some stamped (ascending within a log), some not; every line ends with
    its log's tag <k>."""
    out = []
    for k in range(n):
        t, lines = datetime(2026, 11, 23, 4, 0, 0), []
        for i in range(rng.randint(0, 30)):
            if rng.random() < 0.5:
                t += timedelta(milliseconds=rng.choice([0, 1, 10, 500, 1000]))
                stamp = t.isoformat(" ", "microseconds")
                lines.append(rng.choice([f" [{stamp}] iteration {i}/ 9 | <{k}>",
                                         f"[marker] datetime: {stamp} <{k}>"]))
            else:
                lines.append(f"line {i} <{k}>")
        out.append(lines)
    return out


@pytest.mark.parametrize("seed", range(40))
def test_interleave_keeps_every_line_and_each_logs_order(seed):
    rng = random.Random(seed)
    logs = random_logs(rng, rng.randint(1, 4))
    buffers = [("\n".join(lines) + ("\n" if lines and rng.random() < 0.8 else "")).encode()
               for lines in logs]
    merged = nodes.interleave(buffers).decode().splitlines()
    assert sorted(merged) == sorted(line for lines in logs for line in lines)
    for k, lines in enumerate(logs):
        assert [line for line in merged if line.endswith(f"<{k}>")] == lines
    # Stamped lines come in time order; a line without one comes before the next line of its
    # own log that has one (or at the end).
    stamps = [m.group(1) for line in merged if (m := STAMP.search(line))]
    assert stamps == sorted(stamps)
    for k, lines in enumerate(logs):
        for i, line in enumerate(lines):
            if STAMP.search(line):
                continue
            nxt = next((x for x in lines[i + 1:] if STAMP.search(x)), None)
            before = merged[:merged.index(nxt)] if nxt else merged
            later = [x for x in before[merged.index(line) + 1:] if STAMP.search(x)]
            assert all(STAMP.search(x).group(1) <= STAMP.search(nxt).group(1) for x in later) \
                if nxt else True


def split(text: str, nnodes: int = 2) -> list:
    """A one-log run as Megatron writes it per node: iteration and validation lines on the last
    node, each `[Rank N] ... memory` line on its own node, everything else on node 0."""
    out = [[] for _ in range(nnodes)]
    lines = text.split("\n")
    for line in lines:
        if V.ANCHOR.search(line.encode()) or "validation loss at iteration" in line:
            out[-1].append(line)
        elif (m := re.search(r"\[Rank (\d+)\] \(after", line)):
            out[min(int(m.group(1)), nnodes - 1)].append(line)
        else:
            out[0].append(line)
    return ["\n".join(part) for part in out]


def restamp(text: str) -> str:
    """The start-up markers of a generated launch moved to just before its first iteration (the
    resume tests take them, as they are, from one real log)."""
    first = text.rfind("\n", 0, re.search(r" iteration +\d+/ *\d+ \|", text).start()) + 1
    head, rest = text[:first], text[first:]
    stamps = [datetime.fromisoformat(m.group(1)) for m in STAMP.finditer(head)]
    if not stamps:
        return text
    start = datetime.fromisoformat(STAMP.search(rest).group(1)) - timedelta(seconds=2)
    shift = start - max(stamps)
    return STAMP.sub(lambda m: m.group(0).replace(
        m.group(1), (datetime.fromisoformat(m.group(1)) + shift).isoformat(" ", "microseconds")),
        head) + rest


def generated_runs():
    """(name, [launch texts]) of one-log runs: every ending the resume tests write."""
    from helpers import Launch, T0, plan
    from helpers import launch_text as text_of

    def launch_text(*args):
        return restamp(text_of(*args))

    cases = {}
    for end in ("done", "exit-duration", "slurm-time-limit", "killed", "crashed"):
        cases[f"one launch, {end}"] = [launch_text(Launch(1, 40, [20], end, T0), 40)]
    cases["nan loss"] = [launch_text(Launch(1, 30, [], "done", T0, nan_at=(12, 13)), 30)]
    cases["two segments"] = [launch_text(ln, 100) for ln in
                             plan([60], [5], [600], 100, ["exit-duration", "done"])]
    cases["three segments"] = [launch_text(ln, 120) for ln in
                               plan([40, 80], [0, 3], [60, 30], 120,
                                    ["slurm-time-limit", "killed", "done"])]
    return cases


GENERATED = generated_runs()


def facts(run) -> tuple:
    log = run.log
    s = metrics.summarize(run, 3)
    return (s.status, s.iterations_done, s.iterations_planned, log.steps.iterations,
            [repr(x) for x in log.steps.column(V.LOSS)], log.args, log.memory_peak_mb, s.segments,
            s.runtime_s and round(s.runtime_s, 3), s.downtime_s and round(s.downtime_s, 3),
            [(a.status, a.iterations_done, a.resumed_at, a.segment) for a in run.attempts],
            s.diverged_at)


@pytest.mark.parametrize("case", sorted(GENERATED))
@pytest.mark.parametrize("nnodes", [2, 3])
def test_joined_node_logs_are_the_run_one_log_would_be(case, nnodes, tmp_path):
    """Every launch of the run split into its nodes' logs: the report reads the same run
    (steps, status, arguments, memory, segments, attempts) as from one log per launch."""
    texts = GENERATED[case]
    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir()
    many.mkdir()
    for n, text in enumerate(texts):
        paths.attempt_log(one, "run", n).write_text(text)
        for node, part in enumerate(split(text, nnodes)):
            paths.attempt_log(many, "run", n, node).write_text(part)
    (a,) = runs.load_runs(runs.find_logs([str(one)]), {})
    (b,) = runs.load_runs(runs.find_logs([str(many)]), {})
    fa, fb = facts(a), facts(b)
    assert fb == fa
    assert len(b.attempts) == len(a.attempts) and all(len(x.nodes) == nnodes for x in b.attempts) \
        or (len(texts) == 1 and len(b.nodes) == nnodes)
    if a.stitched:
        assert len(b.stitched) == nnodes * len(a.stitched)
    if fa[0] == "crashed":
        # The crash's traceback is on node 0 (split puts everything but iterations there).
        assert metrics.summarize(b, 3).reason.startswith("crashed on node 0 ")


# --- pairing, generated cases ------------------------------------------------------------------


def iso(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="seconds")


@pytest.mark.parametrize("seed", range(60))
def test_each_node_log_joins_the_launch_it_overlaps_or_stays_alone(seed, tmp_path):
    """Launches of one run at random times on random nodes: a node log joins the node-0 launch
    its time overlaps, and every log is in the report, joined or alone."""
    rng = random.Random(seed)
    t, truth = 1.8e9, []
    for n in range(rng.randint(1, 4)):
        t += rng.choice([2 * nodes.SLACK_S + 1, 3600, 86400])
        span = rng.choice([5, 60, 3600])
        present = [0] + [k for k in (1, 2) if rng.random() < 0.7]
        if rng.random() < 0.25:
            present = present[1:] or [1]  # node 0's log lost
        truth.append((n, t, t + span, present))
        t += span
    names = {}
    for n, start, end, present in truth:
        for node in present:
            attempt = sum(1 for *_, p in truth[:n] if node in p)
            log = paths.attempt_log(tmp_path, "run", attempt, node)
            log.write_text("")
            jitter = rng.uniform(0, 20)
            paths.sidecar_of(log).write_text(json.dumps(
                {"started": iso(start + jitter), "ended": iso(end - jitter)}))
            names[log.name] = (n, node)
    loaded = runs.load_runs(runs.find_logs([str(tmp_path)]), {})
    seen = []
    for run in loaded:
        for a in run.attempts or [run]:
            group = [Path(p).name for p in (getattr(a, "nodes", []) or [a.path])]
            seen += group
            launches = {names[g][0] for g in group}
            assert len(launches) == 1, group  # one launch per joined run
            if names[group[0]][1] > 0:  # a node log alone: its launch had no node-0 log
                (n,) = launches
                assert 0 not in truth[n][3] and len(group) == 1
                assert run.name.startswith("run.node")
                assert any("no node-0 log of the same launch" in note for note in run.notes)
            else:
                n = names[group[0]][0]
                assert sorted(names[g][1] for g in group) == truth[n][3]
    assert sorted(seen) == sorted(names)  # nothing dropped, nothing twice


def test_without_times_node_logs_join_by_attempt_number(tmp_path):
    for name in ("r.log", "r.1.log", "r.node1.log", "r.node1.1.log", "r.node1.2.log"):
        (tmp_path / name).write_text("no timestamps here\n")
    loaded = runs.load_runs(runs.find_logs([str(tmp_path)]), {})
    got = sorted((r.name, [Path(p).name for a in r.attempts for p in a.nodes or [a.path]])
                 for r in loaded)
    assert got == [("r", ["r.log", "r.node1.log", "r.1.log", "r.node1.1.log"]),
                   ("r.node1", ["r.node1.2.log"])]


def test_the_queue_names_a_node_log_as_the_scripts_do(tmp_path):
    """run.py on node k > 0 (NODE_RANK=k) gives each run <run>.node<k>.log, not node 0's name."""
    from helpers import render_queue_matrix, run_cli, train_cmd
    manifest = render_queue_matrix(tmp_path)
    for env, name in ((["--env", "NNODES=2", "--env", "NODE_RANK=1"], "fake_ok.node1.log"),
                      (["--env", "NNODES=2", "--env", "NODE_RANK=0"], "fake_ok.log")):
        out = run_cli(str(manifest), "--dry-run", "--only", "fake_ok", *env, train=train_cmd())
        assert out.returncode == 0, out.stderr
        assert f"LOG_FILE={tmp_path / 'logs' / name} " in out.stdout, out.stdout


def crash_logs() -> tuple:
    """Node 0: arguments, then an NCCL error (its collectives failed); node 1: three
    iterations, then its worker's ValueError."""
    from helpers import ITER
    node0 = ("------------------------ arguments ------------------------\n"
             "  train_iters ..................................... 10\n"
             "-------------------- end of arguments ---------------------\n"
             "[before the start of training step] datetime: 2026-11-23 04:00:00.000000 \n"
             "Traceback (most recent call last):\n"
             '  File "/workspace/pretrain_gpt.py", line 41, in <module>\n'
             "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1969\n")
    node1 = "".join(ITER.format(ts=f"2026-11-23 04:00:0{it}.000000", it=it, total=10,
                                samples=8 * it, ms=1000.0, tflops=100.0, lr=3e-4, gbs=8,
                                loss=5.0, scale=1.0, gnorm=1.0, skip=0, nan=0) + "\n"
                    for it in (1, 2, 3))
    node1 += ("Traceback (most recent call last):\n"
              '  File "/workspace/pretrain_gpt.py", line 41, in <module>\n'
              "ValueError: bad batch\n")
    return node0.encode(), node1.encode()


@pytest.mark.parametrize("first_to_end", [0, 1])
def test_crashes_on_both_nodes_name_the_one_that_ended_first(first_to_end):
    """Both nodes' logs end in a traceback: the run is crashed with the reason of the node
    whose launch ended first (the sidecars' `ended`), the other named in a note."""
    node0, node1 = crash_logs()
    ended = ["2026-11-23T04:00:10+00:00", "2026-11-23T04:00:20+00:00"]
    if first_to_end == 1:
        ended.reverse()
    sides = [{"started": "2026-11-23T03:59:50+00:00", "ended": e} for e in ended]
    log, _ = nodes.join([(0, node0, sides[0]), (1, node1, sides[1])])
    assert log.status.name == "crashed" and log.steps.iterations == [1, 2, 3]
    other = 1 - first_to_end
    what = ["DistBackendError: NCCL error", "ValueError: bad batch"]
    assert log.status.reason.startswith(f"crashed on node {first_to_end} ")
    assert what[first_to_end] in log.status.reason
    assert any(n.startswith(f"also crashed: node {other}: ") and what[other] in n
               for n in log.status.notes), log.status.notes


def test_a_late_exit_code_on_another_node_reaches_the_run():
    node0, node1 = crash_logs()
    node0 = node0[:node0.index(b"Traceback")]
    node1 = node1[:node1.index(b"Traceback")]
    log, notes = nodes.join([(0, node0, {"exit_code": 0}), (1, node1, {"exit_code": 137})])
    assert log.status.name == "running/truncated"
    assert notes == ["node 1 exited with code 137 (its sidecar)"]
    assert nodes.joined_sidecar([(0, {"exit_code": 0}), (1, {"exit_code": 137})])["exit_code"] == 137
    assert nodes.joined_sidecar([(0, {"exit_code": 2}), (1, {"exit_code": 137})])["exit_code"] == 2


@pytest.mark.parametrize("node,time_limit,iterations,expected", [
    (1, 1.0, (1, 2, 3), "time-limited"),   # the last node stopped early with a time limit set
    (1, None, (1, 2, 3), "completed"),     # no time limit: node 0's log says how it ended
    (2, 1.0, (), "completed"),             # a middle node prints no iteration lines at all
    (0, 1.0, (1, 2, 3), "failed"),         # node 0 has the end lines: without them, a failure
])
def test_the_queue_on_a_node_without_megatrons_end_lines(tmp_path, node, time_limit, iterations,
                                                         expected):
    """Megatron prints "[after training is done]" and "[exiting program ...]" on rank 0 only: a
    clean exit on node k > 0 is not a failure for lack of them."""
    import io

    from fp8suite.launch import local
    from fp8suite.logs.tail import LogTail
    from helpers import ITER
    log = tmp_path / f"r.node{node}.log"
    log.write_text("".join(ITER.format(ts=f"2026-11-23 04:00:0{it}.000000", it=it, total=10,
                                       samples=8 * it, ms=1000.0, tflops=100.0, lr=3e-4, gbs=8,
                                       loss=5.0, scale=1.0, gnorm=1.0, skip=0, nan=0) + "\n"
                           for it in iterations))
    tail = LogTail(log)
    tail.finish()
    opts = local.Options(env={"NNODES": "3", "NODE_RANK": str(node)}, time_limit=time_limit)
    state, reason = local._outcome(0, tail, io.BytesIO(), opts, False, False, local.Signals())
    assert state == expected, reason
    if node:
        assert reason.endswith(f"on node {node}; Megatron's end line is in node 0's log")


# --- the committed two-node run on two H200s ---------------------------------------------------


def test_the_committed_two_node_h200_launch_reads_as_one_completed_run(tmp_path, capsys):
    """logs/h200x2_two_nodes: the bench script launched twice on one 2xH200 host (NNODES=2,
    GPUS_PER_NODE=1, NODE_RANK=0/1, MASTER_ADDR=127.0.0.1, one GPU each), 4 layers, 30 steps."""
    logs = REPO / "logs" / "h200x2_two_nodes"
    node0, node1 = sorted(logs.glob("*.log"), key=lambda p: ".node1." in p.name)
    sidecars = [json.loads(paths.sidecar_of(p).read_text()) for p in (node0, node1)]
    assert [s["overrides"]["env"]["NODE_RANK"] for s in sidecars] == ["0", "1"]
    assert {s["overrides"]["env"]["NNODES"] for s in sidecars} == {"2"}
    assert {s["exit_code"] for s in sidecars} == {0}
    assert {s["environment"]["gpu"]["name"] for s in sidecars} == {"NVIDIA H200"}
    # Megatron wrote its arguments on node 0 and its iterations on node 1, as on two hosts.
    alone = [parse_log(p.read_bytes()) for p in (node0, node1)]
    assert alone[0].steps.iterations == [] and alone[0].args["world_size"] == "2"
    assert alone[1].steps.iterations == list(range(1, 31)) and not alone[1].args

    loaded, text, data = report_of(logs, tmp_path / "out", capsys)
    (run,) = loaded
    assert run.nodes == [str(node0), str(node1)]
    s = metrics.summarize(run, 3)
    assert (s.status, s.iterations_done, s.iterations_planned) == ("completed", 30, 30)
    assert run.log.args["num_layers"] == "4" and run.log.args["world_size"] == "2"
    gbs, seq = int(run.log.args["global_batch_size"]), int(run.log.args["seq_length"])
    assert s.tokens_per_s_gpu == pytest.approx(gbs * seq / (s.median_iter_ms / 1000) / 2)
    (entry,) = data["runs"]
    assert entry["status"] == "completed" and entry["gpu"] == "NVIDIA H200"


def test_progress_counts_a_launchs_node_logs_with_its_node_0(tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "PROGRESS_MIN_LOGS", 1)
    logs = tmp_path / "logs"
    assert launch_nodes(logs) == [0, 0]
    # A launch on one node beside it: the count steps by one launch at a time, up to the total.
    shutil.copy(logs / f"{RUN}.log", logs / "z_single.log")
    lines = []
    runs.load_runs(runs.find_logs([str(logs)]), {}, progress=lines.append)
    assert re.fullmatch(r"parsing 3 logs, [0-9.]+ MB \(2 launches: node logs read with their "
                        r"node 0\)", lines[0]), lines
    assert re.fullmatch(rf"\[1/2\] {RUN} \+ 1 node log [0-9.]+ MB", lines[1]), lines
    assert re.fullmatch(r"\[2/2\] z_single [0-9.]+ MB", lines[2]), lines


@pytest.mark.parametrize("failure, expected", [
    ("Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
     "ValueError: boom on node 1\n", "ValueError: boom on node 1"),
    ("", "crashed: a task failed"),
])
def test_a_task_failed_on_one_node_comes_before_srun_cancelling_the_others(failure, expected):
    """Issue 26, kind 5: srun's --kill-on-bad-exit prints a plain STEP CANCELLED line on the
    surviving node after the failed task's report; the failure, named with its node, decides."""
    from fp8suite.logs.parse import parse_log

    it = (" [2026-12-06 20:37:51.262753] iteration        {i}/       8 | consumed samples: 8 | "
          "elapsed time per iteration (ms): 50.1 | lm loss: 8.5E+00 |\n")
    log = ("-------------------- end of arguments ---------------------\n"
           + it.format(i=1) + it.format(i=2) + failure
           + "srun: error: fp8n2: task 1: " + ("Exited with exit code 1" if failure else "Killed") + "\n"
           + "srun: launch/slurm: _step_signal: Terminating StepId=16.0\n"
           + "slurmstepd-fp8n1: error: *** STEP 16.0 ON fp8n1 CANCELLED AT 2026-12-06T20:37:51 ***\n"
           + "srun: error: fp8n1: task 0: Terminated\n")
    status = parse_log(log.encode()).status
    assert status.name == "crashed", status
    assert expected in status.reason and "on node fp8n2 (srun: task 1: " in status.reason
    # A plain cancellation with no failed task stays a cancellation.
    plain = parse_log(log.replace("srun: error: fp8n2", "srun: note: fp8n2")
                      .replace(failure, "").encode()).status
    assert plain.name == "cancelled", plain
