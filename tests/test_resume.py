"""Runs continued from checkpoints: several logs of one run stitched into one.

Every log here is generated from Megatron-Core 0.19's own lines: the real start-up and
arguments dump of tests/data/logs/megatron019/bf16.log, its iteration line (test_report_metrics.
ITER), and the checkpoint lines of megatron/training/checkpointing.py (`saving checkpoint at
iteration`, `successfully saved checkpoint from iteration`, `successfully loaded checkpoint
from ... at iteration N`), the time-limit exit of training.py and Slurm's cancellation line.

A launch's rows carry its own marks, so a test can tell which launch a kept row came from:
iteration `it` logs loss `10 - it / 100` (+ 1 for a row that a later launch replaces, i.e.
logged after the last save before a stop) and 1000 ms (5000 ms for a replaced row).
"""

from __future__ import annotations

import json
import math
import random
from datetime import timedelta
from pathlib import Path

import pytest

import report
from fp8suite.report import compare
from fp8suite.report import metrics
from fp8suite.logs import resume
from fp8suite.logs import runs
from fp8suite.logs.parse import parse_log
from helpers import CKPT, Launch, T0, launch_text, loss_of, plan


def write(folder: Path, names: list, launches: list, planned: int, **kw) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, ln in zip(names, launches):
        (folder / name).write_text(launch_text(ln, planned, **kw))


def loaded(folder: Path) -> list:
    return runs.load_runs(runs.find_logs([str(folder)]), {})


def expected_span(ln: Launch) -> float:
    return sum(5.0 if ln.lost_after is not None and it > ln.lost_after else 1.0
               for it in range(ln.first, ln.last + 1))


def check_stitched(run, launches: list, names: list, planned: int) -> None:
    """The stitched run against what its launches say, whatever they are."""
    log = run.log
    kept_until = [ln.lost_after for ln in launches[:-1]] + [launches[-1].last]
    # Steps: 1..last, every row from the launch that owns it, none of the lost ones.
    assert log.steps.iterations == list(range(1, launches[-1].last + 1))
    assert log.steps.column(metrics.LOSS) == pytest.approx(
        [loss_of(it) for it in log.steps.iterations], abs=1e-6)
    assert set(log.steps.column(metrics.ITER_MS)) == {1000.0}
    # One segment per launch; spans sum to the runtime; downtime is the gaps.
    assert [(s.first_iteration, s.last_iteration) for s in log.segments] == [
        (ln.first, ln.last) for ln in launches]
    s = metrics.summarize(run, 3)
    assert s.segments == len(launches)
    assert s.runtime_s == pytest.approx(sum(expected_span(ln) for ln in launches), abs=1e-3)
    assert s.iterations_done == launches[-1].last and s.iterations_planned == planned
    assert log.steps.segment_starts == [ln.first for ln in launches]
    assert kept_until[-1] == launches[-1].last
    # The resumes are segments, not restarts inside a log: no "1 restart" note.
    assert log.restarts == 0 and not any(n[0].isdigit() and "restart" in n for n in s.notes)
    # The status is the last launch's own.
    assert s.status == parse_log((run_path_bytes(run))).status.name
    assert run.stitched == [str(Path(run.directory) / n) for n in names]
    note = next(n for n in run.notes if n.startswith("one run in"))
    assert note.startswith(f"one run in {len(launches)} segments ("
                           + ", ".join(f"`{n}`" for n in names) + "), each resumed from the "
                           "previous one's checkpoint (at iteration "
                           + ", ".join(str(ln.load) for ln in launches[1:]) + ")")
    assert resume.resumed_at(log) is None
    assert "without the downtime between launches" in note
    assert [a.segment for a in run.attempts if Path(a.path).name in names] == [True] * len(names)


def run_path_bytes(run) -> bytes:
    return Path(run.path).read_bytes()


# --- the named cases ---------------------------------------------------------------------------


def test_two_segments_after_a_time_limit_exit(tmp_path):
    launches = plan([60], [0], [600], 100, ["exit-duration", "done"])
    names = ["run.log", "run.1.log"]
    write(tmp_path, names, launches, 100)
    (run,) = loaded(tmp_path)
    check_stitched(run, launches, names, 100)
    s = metrics.summarize(run, 3)
    assert s.status == "completed" and s.runtime_s == pytest.approx(100.0)
    assert s.downtime_s == pytest.approx(600.0)
    assert [a.status for a in run.attempts] == ["time-limit", "completed"]
    assert [a.resumed_at for a in run.attempts] == [None, 60]


def test_killed_after_a_save_loses_what_it_logged_past_it(tmp_path):
    # Killed at iteration 58 after saving at 50 (mid-line): 8 iterations lost, the next launch
    # redoes 51-58 with its own values.
    launches = plan([50], [8], [120], 90, ["killed", "done"])
    launches[0].cut_mid_line = True
    names = ["run.log", "run.1.log"]
    write(tmp_path, names, launches, 90)
    (run,) = loaded(tmp_path)
    launches[0].last = 57  # the cut line is not whole: its iteration never logged
    check_stitched(run, launches, names, 90)
    assert ("7 iterations logged past the checkpoint the next segment resumed from were lost "
            "and left out" in " ".join(run.notes))
    s = metrics.summarize(run, 3)
    assert s.runtime_s == pytest.approx(50 + 7 * 5 + 40)
    assert s.downtime_s == pytest.approx(120 + 5.0, abs=1e-3)  # from the last whole line


def test_three_segments_slurm_job_ids_and_time_limits(tmp_path):
    launches = plan([40, 80], [3, 5], [3600, 60], 120,
                    ["slurm-time-limit", "slurm-time-limit", "done"])
    launches[1].max_allocated_mb = 65536.0  # the peak memory of the run: the largest
    names = ["run.812345.log", "run.812399.log", "run.813002.log"]
    write(tmp_path, names, launches, 120)
    (run,) = loaded(tmp_path)
    check_stitched(run, launches, names, 120)
    s = metrics.summarize(run, 3)
    assert s.runtime_s == pytest.approx(43 + 3 * 4 + 45 + 5 * 4 + 40)
    assert s.downtime_s == pytest.approx(3660)
    assert run.name == "run"
    assert s.peak_alloc_gb == pytest.approx(64.0)


def test_the_last_segment_still_cut_is_the_runs_status(tmp_path):
    launches = plan([30], [2], [60], 100, ["exit-duration", "slurm-time-limit"])
    launches[1].last = 70
    names = ["run.log", "run.1.log"]
    write(tmp_path, names, launches, 100)
    (run,) = loaded(tmp_path)
    check_stitched(run, launches, names, 100)
    assert run.log.status.name == "time-limit" and run.log.status.last_iteration == 70


def test_a_fresh_restart_after_a_crash_stays_a_separate_attempt(tmp_path):
    # run.log crashed at 25 with no checkpoint; run.1.log started afresh, saved at 40 and hit
    # its time limit; run.2.log resumed from 40 and completed: the run is run.1 + run.2.
    crash = Launch(1, 25, [], "crashed", T0 - timedelta(hours=2))
    launches = plan([40], [0], [300], 80, ["exit-duration", "done"])
    write(tmp_path, ["run.log"], [crash], 80)
    names = ["run.1.log", "run.2.log"]
    write(tmp_path, names, launches, 80)
    (run,) = loaded(tmp_path)
    check_stitched(run, launches, names, 80)
    assert [(Path(a.path).name, a.status, a.segment) for a in run.attempts] == [
        ("run.log", "crashed", False), ("run.1.log", "time-limit", True),
        ("run.2.log", "completed", True)]
    # The crash was another launch, not a segment: no "before a restart" note from it.
    assert not any(n.startswith("before a restart") for n in run.notes)


def test_a_later_fresh_attempt_that_crashed_does_not_hide_the_completed_chain(tmp_path):
    launches = plan([40], [5], [300], 80, ["slurm-time-limit", "done"])
    names = ["run.812345.log", "run.812399.log"]
    write(tmp_path, names, launches, 80)
    write(tmp_path, ["run.812500.log"], [Launch(1, 12, [], "crashed", T0 + timedelta(days=1))], 80)
    (run,) = loaded(tmp_path)
    check_stitched(run, launches, names, 80)
    assert [(a.status, a.segment) for a in run.attempts] == [
        ("time-limit", True), ("completed", True), ("crashed", False)]


def test_fresh_attempts_without_checkpoints_are_as_before(tmp_path):
    crash = Launch(1, 25, [], "crashed", T0)
    again = Launch(1, 60, [], "done", T0 + timedelta(hours=1))
    write(tmp_path, ["run.log", "run.1.log"], [crash, again], 60)
    (run,) = loaded(tmp_path)
    assert run.stitched == [] and Path(run.path).name == "run.1.log"
    assert run.log.steps.iterations == list(range(1, 61))
    assert len(run.log.segments) == 1
    assert [a.segment for a in run.attempts] == [False, False]
    assert not any(n.startswith("one run in") for n in run.notes)


def test_a_load_without_a_matching_save_is_a_note_and_the_log_alone(tmp_path):
    # run.log saved at 100 and hit its time limit; run.1.log loaded iteration 200 (another
    # run's checkpoint): not stitched, shown from its own log, which starts at 201.
    first = Launch(1, 100, [100], "exit-duration", T0)
    other = Launch(201, 260, [], "done", T0 + timedelta(hours=1), load=200,
                   load_dir="/lustre/ckpt/pretrained")
    write(tmp_path, ["run.log", "run.1.log"], [first, other], 260)
    (run,) = loaded(tmp_path)
    assert run.stitched == [] and run.log.steps.iterations == list(range(201, 261))
    assert any("resumed from a checkpoint at iteration 200 (/lustre/ckpt/pretrained) that no "
               "earlier log of this run saved; its iterations start at 201" in n
               for n in run.notes)
    assert [a.segment for a in run.attempts] == [False, False]


def test_a_single_log_that_resumed_from_elsewhere_says_so(tmp_path):
    only = Launch(501, 560, [], "done", T0, load=500)
    write(tmp_path, ["run.log"], [only], 560)
    (run,) = loaded(tmp_path)
    assert run.log.steps.iterations[0] == 501
    assert any("at iteration 500" in n and "start at 501" in n for n in run.notes)


def test_a_chain_that_began_from_elsewhere_is_stitched_with_the_note(tmp_path):
    first = Launch(501, 540, [540], "exit-duration", T0, load=500,
                   load_dir="/lustre/ckpt/pretrained")
    second = Launch(541, 600, [], "done", T0 + timedelta(hours=1), load=540)
    write(tmp_path, ["run.log", "run.1.log"], [first, second], 600)
    (run,) = loaded(tmp_path)
    assert [Path(p).name for p in run.stitched] == ["run.log", "run.1.log"]
    assert run.log.steps.iterations == list(range(501, 601))
    assert resume.resumed_at(run.log) == (500, "/lustre/ckpt/pretrained")
    assert any("at iteration 500 (/lustre/ckpt/pretrained) that no earlier log of this run "
               "saved; its iterations start at 501" in n for n in run.notes)


def test_a_segment_that_crashed_after_its_save_is_an_earlier_failure(tmp_path):
    launches = plan([30], [4], [900], 60, ["crashed", "done"])
    names = ["run.log", "run.1.log"]
    write(tmp_path, names, launches, 60)
    (run,) = loaded(tmp_path)
    check_stitched(run, launches, names, 60)
    s = metrics.summarize(run, 3)
    assert s.status == "completed"
    assert "before a restart: RuntimeError: CUDA error: an illegal memory access was encountered" \
        in s.notes
    assert run.log.earlier_failures == [
        "RuntimeError: CUDA error: an illegal memory access was encountered"]


def test_the_same_iteration_saved_to_another_folder_is_no_match(tmp_path):
    first = Launch(1, 50, [50], "exit-duration", T0, save_dir="/lustre/ckpt/other_run")
    second = Launch(51, 80, [], "done", T0 + timedelta(hours=1), load=50)
    write(tmp_path, ["run.log", "run.1.log"], [first, second], 80)
    (run,) = loaded(tmp_path)
    assert run.stitched == [] and run.log.steps.iterations[0] == 51


def test_a_segment_that_restarts_inside_its_log_from_an_older_checkpoint(tmp_path):
    # run.log saved at 30 and 40, lost 41-50; run.1.log resumed at 40, logged 41-70 (all
    # lost), then restarted inside the same log from the checkpoint of 30 and went to 90.
    a = Launch(1, 50, [30, 40], "killed", T0, lost_after=40)
    b1 = Launch(41, 70, [], "killed", T0 + timedelta(hours=1), load=40, lost_after=40)
    b2 = Launch(31, 90, [], "done", T0 + timedelta(hours=2), load=30)
    (tmp_path / "run.log").write_text(launch_text(a, 90))
    (tmp_path / "run.1.log").write_text(launch_text(b1, 90) + launch_text(b2, 90))
    (run,) = loaded(tmp_path)
    log = run.log
    assert [Path(p).name for p in run.stitched] == ["run.log", "run.1.log"]
    assert log.steps.iterations == list(range(1, 91))
    assert log.steps.column(metrics.LOSS) == pytest.approx([loss_of(it) for it in range(1, 91)],
                                                           abs=1e-6)
    assert [(g.first_iteration, g.last_iteration) for g in log.segments] == [
        (1, 50), (41, 70), (31, 90)]
    assert log.steps.segment_starts == [1, 31]
    assert log.restarts == 1 and log.status.name == "completed"


def test_a_completed_attempt_that_a_later_one_continues_is_a_segment(tmp_path):
    # run.log completed its 60 iterations (saving at 60); run.1.log extended the run to 100
    # from that checkpoint and hit its time limit at 80: the run is both, time-limited.
    a = Launch(1, 60, [60], "done", T0)
    b = Launch(61, 80, [80], "exit-duration", T0 + timedelta(hours=1), load=60)
    write(tmp_path, ["run.log", "run.1.log"], [a, b], 100)
    (run,) = loaded(tmp_path)
    assert [Path(p).name for p in run.stitched] == ["run.log", "run.1.log"]
    assert run.log.status.name == "time-limit" and run.log.steps.iterations == list(range(1, 81))


def test_two_resumes_from_one_checkpoint_the_completed_one_is_shown(tmp_path):
    # run.1 and run.2 both resumed from run.log's save at 40; run.1 crashed, run.2 completed.
    a = Launch(1, 44, [40], "killed", T0, lost_after=40)
    b = Launch(41, 52, [], "crashed", T0 + timedelta(hours=1), load=40, lost_after=40)
    c = Launch(41, 70, [], "done", T0 + timedelta(hours=2), load=40)
    write(tmp_path, ["run.log", "run.1.log", "run.2.log"], [a, b, c], 70)
    (run,) = loaded(tmp_path)
    assert [Path(p).name for p in run.stitched] == ["run.log", "run.2.log"]
    assert [a.segment for a in run.attempts] == [True, False, True]
    assert run.log.status.name == "completed"
    assert run.log.steps.column(metrics.LOSS) == pytest.approx(
        [loss_of(it) for it in range(1, 71)], abs=1e-6)


@pytest.mark.parametrize("nan_at, diverged", [((35, 36), 35), ((44, 45), None)])
def test_divergence_counts_only_in_kept_iterations(tmp_path, nan_at, diverged):
    # NaN losses in run.log at iterations it kept (35) make the run diverged; at iterations
    # past its save at 40 (lost, 44) they do not.
    a = Launch(1, 46, [40], "killed", T0, lost_after=40, nan_at=nan_at)
    b = Launch(41, 70, [], "done", T0 + timedelta(hours=1), load=40)
    write(tmp_path, ["run.log", "run.1.log"], [a, b], 70)
    (run,) = loaded(tmp_path)
    assert run.attempts[0].status == "diverged"
    st = run.log.status
    assert (st.name, st.diverged_at) == (("diverged", diverged) if diverged else
                                         ("completed", None))
    if diverged:
        assert st.reason == ("lm loss non-finite from iteration 35 on (2 of 46 logged "
                             "iterations); the run was resumed from a later checkpoint and then "
                             "says completed 70/70")
        assert metrics.summarize(run, 3).final_loss is None


def test_a_load_by_a_later_launch_inside_a_fresh_log_is_no_resume(tmp_path):
    # run.log saved at 20; run.1.log started afresh (1-25, saving at 20 too) and, within the
    # same file, restarted from its own checkpoint of 20: it continues nothing.
    a = Launch(1, 22, [20], "exit-duration", T0, lost_after=20)
    b1 = Launch(1, 25, [20], "killed", T0 + timedelta(hours=1), lost_after=20)
    b2 = Launch(21, 40, [], "done", T0 + timedelta(hours=2), load=20)
    (tmp_path / "run.log").write_text(launch_text(a, 40))
    (tmp_path / "run.1.log").write_text(launch_text(b1, 40) + launch_text(b2, 40))
    (run,) = loaded(tmp_path)
    assert run.stitched == [] and Path(run.path).name == "run.1.log"
    assert resume.resumed_at(run.log) is None
    assert not any("resumed from a checkpoint" in n for n in run.notes)
    assert run.log.steps.iterations == list(range(1, 41)) and run.log.restarts == 1


def test_clock_going_back_between_launches(tmp_path):
    # The second launch's clock reads 10 minutes before the first one's last line (another
    # node, a clock reset): no negative downtime, the runtime still the sum of the spans.
    launches = plan([50], [0], [-600], 90, ["exit-duration", "done"])
    names = ["run.log", "run.1.log"]
    write(tmp_path, names, launches, 90)
    (run,) = loaded(tmp_path)
    check_stitched(run, launches, names, 90)
    s = metrics.summarize(run, 3)
    assert s.runtime_s == pytest.approx(90.0) and s.downtime_s is None


def test_the_latest_save_at_the_loaded_iteration_is_the_one_continued(tmp_path):
    # run.log and run.1.log both saved at 40 (run.1 started afresh); run.2 loaded 40: it
    # continues run.1, the latest that saved it.
    a = Launch(1, 45, [40], "exit-duration", T0, lost_after=40)
    b = Launch(1, 45, [40], "exit-duration", T0 + timedelta(hours=1), lost_after=40)
    c = Launch(41, 70, [], "done", T0 + timedelta(hours=2), load=40)
    write(tmp_path, ["run.log", "run.1.log", "run.2.log"], [a, b, c], 70)
    (run,) = loaded(tmp_path)
    assert [Path(p).name for p in run.stitched] == ["run.1.log", "run.2.log"]


def test_runs_held_in_memory_are_stitched_without_their_files():
    launches = plan([30], [2], [60], 50, ["exit-duration", "done"])
    found = [runs.LoggedRun(name, f"/nowhere/{name}.log", "/nowhere",
                            parse_log(launch_text(ln, 50).encode()))
             for name, ln in zip(["run", "run.1"], launches)]
    (run,) = runs.group_attempts(found)
    assert run.stitched == ["/nowhere/run.log", "/nowhere/run.1.log"]
    assert run.log.steps.iterations == list(range(1, 51)) and len(run.log.segments) == 2


def test_predecessors_and_chains():
    def log(load=None, saves=()):
        p = parse_log(b"")  # no segments: the load is where its training began
        p.checkpoint_loads = [(load, CKPT)] if load is not None else []
        p.checkpoint_saves = [(n, CKPT) for n in saves]
        return p
    logs = [log(saves=[10, 20]), log(load=20, saves=[30]), log(), log(load=30), log(load=0),
            log(load=99)]
    preds = resume.predecessors(logs)
    assert preds == [None, 0, None, 1, None, None]
    assert resume.chain(preds, 3) == [0, 1, 3] and resume.chain(preds, 2) == [2]


@pytest.mark.parametrize("line, expected", [
    ("  successfully loaded checkpoint from /c/run [ t 1/1, gtp_remat 1/1, p 1/1 ] at iteration 100",
     [(100, "/c/run")]),
    ("  successfully loaded checkpoint from /c/run [ t 1/2, p 1/1 ] at iteration 7", [(7, "/c/run")]),
    ("[default0]:  successfully loaded checkpoint from /c/my run [ t 1/1, p 1/1 ] at iteration 3\r",
     [(3, "/c/my run")]),
    ("  successfully loaded checkpoint from ckpt at iteration 12", [(12, "ckpt")]),
])
def test_load_lines_of_several_releases(line, expected):
    assert parse_log(line.encode() + b"\n").checkpoint_loads == expected


@pytest.mark.parametrize("line, expected", [
    ("  [2026-11-23 04:05:01.123456] successfully saved checkpoint from iteration     100 to "
     "/c/run [ t 1/1, gtp_remat 1/1, p 1/1 ]", [(100, "/c/run")]),
    ("  successfully saved checkpoint from iteration    2000 to /c/run [ t 1/8, p 1/4 ]",
     [(2000, "/c/run")]),
    ("[rank0]:   successfully saved checkpoint at iteration      50 to ckpt", [(50, "ckpt")]),
])
def test_save_lines_of_several_releases(line, expected):
    assert parse_log(line.encode() + b"\n").checkpoint_saves == expected


# --- many generated chains -------------------------------------------------------------------


NAMINGS = {
    "repeat": lambda n: ["run.log"] + [f"run.{k}.log" for k in range(1, n)],
    "slurm": lambda n: [f"run.{812345 + 17 * k}.log" for k in range(n)],
}


@pytest.mark.parametrize("seed", range(24))
def test_generated_chains(tmp_path, seed):
    rng = random.Random(seed)
    n = rng.randint(2, 4)
    saves, point = [], 0
    for _ in range(n - 1):
        point += rng.randint(12, 40)
        saves.append(point)
    lost = [rng.choice([0, 0, rng.randint(1, 9)]) for _ in saves]
    gaps = [rng.choice([rng.uniform(1, 7200), -rng.uniform(1, 600)]) for _ in saves]
    planned = saves[-1] + rng.randint(12, 40)
    ends = [rng.choice(["exit-duration", "slurm-time-limit", "killed", "crashed"])
            for _ in saves]
    last_end = rng.choice(["done", "done", "exit-duration", "crashed"])
    launches = plan(saves, lost, gaps, planned, ends + [last_end])
    if last_end != "done":
        launches[-1].last = rng.randint(launches[-1].first + 4, planned)
    names = NAMINGS[rng.choice(sorted(NAMINGS))](n)
    fresh = rng.random() < 0.5  # an unrelated fresh attempt, crashed, before the chain
    if fresh and names[0] == "run.log":
        names = [f"run.{k}.log" for k in range(1, n + 1)]
        write(tmp_path, ["run.log"], [Launch(1, 9, [], "crashed", T0 - timedelta(days=1))],
              planned)
    write(tmp_path, names, launches, planned)
    (run,) = loaded(tmp_path)
    check_stitched(run, launches, names, planned)
    s = metrics.summarize(run, 3)
    gaps_known = [g for g in gaps if g >= 0]
    ends_at = [ln.start + timedelta(seconds=expected_span(ln)) for ln in launches]
    expected_down = [(b.start - a).total_seconds() for a, b in zip(ends_at, launches[1:])]
    known = [d for d in expected_down if d >= 0]
    assert (s.downtime_s is None) == (not known)
    if known:
        assert s.downtime_s == pytest.approx(sum(known), abs=1e-3)
    assert len(gaps_known) == len(known)
    assert s.status == {"done": "completed", "exit-duration": "time-limit",
                        "crashed": "crashed"}[last_end]
    # The same segments, spans, downtimes, memory and status as parsing the logs as one log
    # (the parser's own reading of several launches in one file).
    joined = b"".join((tmp_path / n).read_bytes().rstrip(b"\n") + b"\n" for n in names)
    whole = parse_log(joined)

    def seg(g):
        return (g.first_iteration, g.last_iteration, g.rows, round(g.span_s, 6), g.span_from,
                None if g.downtime_before_s is None else round(g.downtime_before_s, 6))
    assert [seg(g) for g in run.log.segments] == [seg(g) for g in whole.segments]
    assert run.log.memory_peak_mb == whole.memory_peak_mb
    assert (run.log.status.name, run.log.status.reason) == (whole.status.name, whole.status.reason)
    # Steps differ only where an earlier launch logged past the point the last one stopped:
    # those rows were lost, the stitched run leaves them out.
    assert whole.steps.iterations[:len(run.log.steps)] == run.log.steps.iterations
    # A segment that crashed after its save is a failure before a restart; the fresh attempt
    # that crashed before the chain is not.
    assert len(run.log.earlier_failures) == ends.count("crashed")
    assert ("before a restart: RuntimeError: CUDA error: an illegal memory access was "
            "encountered" in s.notes) == ("crashed" in ends)


# --- the report reads the stitched steps ---------------------------------------------------------


def test_report_time_to_target_and_median_use_the_stitched_steps(tmp_path):
    """A BF16 baseline in three segments and an FP8 run in one log: time to target, median
    step time and the loss gap come from the stitched rows, never from the lost ones (5000 ms,
    loss + 1)."""
    d = tmp_path / "logs" / "conv"
    planned = 120
    launches = plan([40, 80], [6, 9], [1800, 900], planned,
                    ["exit-duration", "killed", "done"])
    write(d, ["bf16.log", "bf16.1.log", "bf16.2.log"], launches, planned)
    fp8 = Launch(1, planned, [], "done", T0, extra={"fp8": "hybrid", "fp8_recipe": "tensorwise"})
    (d / "fp8.log").write_text(launch_text(fp8, planned))
    out = tmp_path / "out"
    assert report.main([str(tmp_path / "logs"), "--out", str(out)]) == 0
    data = json.loads((out / "summary.json").read_text())
    by = {r["name"]: r for r in data["runs"]}
    bf16 = by["bf16"]
    assert bf16["segments"] == 3 and bf16["status"] == "completed"
    assert bf16["iterations_done"] == planned and bf16["median_iteration_ms"] == 1000.0
    assert bf16["runtime_s"] == pytest.approx(46 + 6 * 4 + 49 + 9 * 4 + 40)
    assert bf16["downtime_s"] == pytest.approx(2700)
    assert [a["segment"] for a in bf16["attempts"]] == [True, True, True]
    (cmp,) = data["comparisons"]
    # Same losses at every kept iteration: no gap, and the FP8 run reaches the target exactly
    # when the baseline does, in the same time (1 s per iteration in both).
    assert cmp["loss_gap_mean"] == pytest.approx(0.0, abs=1e-9)
    assert cmp["time_to_target_iteration"] == planned
    assert cmp["time_to_target_s"] == pytest.approx(planned * 1.0)
    assert cmp["time_to_target_speedup"] == pytest.approx(1.0)
    text = (out / "report.md").read_text()
    assert ("one run in 3 segments (`bf16.log`, `bf16.1.log`, `bf16.2.log`), each resumed from "
            "the previous one's checkpoint (at iteration 40, 80)") in text
    assert "without the downtime between launches" in text
    assert "bf16.1.log` + `" in text  # the Log item names every segment's log
    assert ("`bf16.1.log` running/truncated (89/120, resumed at 40); `bf16.2.log` completed "
            "(120/120, resumed at 80) (shown: `bf16.log` + `bf16.1.log` + `bf16.2.log`, "
            "stitched)") in text
    assert "3m 15s (+45m 00s down between 3 segments)" in text
    # The groups' own arithmetic, straight from the stitched run.
    (g,) = compare.build_groups(runs.load_runs(runs.find_logs([str(d)]), {}), 3)
    base = next(r for r in g.runs if r.name == "bf16")
    window = g.window
    curve = metrics.smoothed(list(range(1, planned + 1)),
                             [loss_of(it) for it in range(1, planned + 1)], window)
    assert g.target == pytest.approx(curve[-1][1])
    hit = compare.time_to_target(base, window, g.target, 3, 1000.0)
    assert hit[0] == planned and hit[1] == pytest.approx(planned * 1.0)
    assert math.isclose(g.summaries["bf16"].median_iter_ms, 1000.0)
