"""Speed advice (fp8suite.evidence.advice): every figure is computed here again from the logs the table
cites, the logs compare like with like, and render.py / run.py print what applies to a run."""

from __future__ import annotations

import json
import re
import statistics

import pytest
import yaml

from conftest import REPO
import render
import run as run_cli
from fp8suite.evidence import advice
from fp8suite.megatron import recipes
from fp8suite.logs.parse import read_log
from fp8suite.report.metrics import SHAPE_KEYS, timed_iter_ms, timed_rows

ENTRIES = tuple(e for e in advice.table() if not e.crashed)  # entries that measure a step time
CRASHES = tuple(e for e in advice.table() if e.crashed)


def _median(log: str) -> float:
    parsed = read_log(REPO / log)
    return statistics.median(timed_iter_ms(parsed.steps, timed_rows(parsed.steps, parsed.args, 3)))


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_figure_is_computed_from_the_cited_logs(entry):
    expected = _median(entry.slower) / _median(entry.faster) - 1
    assert entry.measurement.change == pytest.approx(expected)
    assert f"measured {expected * 100:+.1f}% step time" in entry.line()
    assert entry.slower in entry.line() and entry.faster in entry.line()
    assert expected > 0, f"{entry.id}: the cited 'slower' log is not slower"


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_cited_logs_compare_the_same_model_and_batch(entry):
    a, b = read_log(REPO / entry.slower).args, read_log(REPO / entry.faster).args
    assert a and b
    for key in SHAPE_KEYS:
        assert a.get(key) == b.get(key), (entry.id, key)
    assert recipes.of_args(a).recipe == recipes.of_args(b).recipe


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.id)
def test_conditions_come_from_the_sidecars(entry):
    meta = json.loads((REPO / entry.slower.replace(".log", ".meta.json")).read_text())
    m = entry.measurement
    assert m.gpu == recipes.gpu(meta["environment"]["gpu"]["name"]).name
    assert m.transformer_engine == meta["environment"]["transformer_engine"]
    assert m.megatron_core == meta["environment"]["megatron_core"]
    assert m.dp == int(read_log(REPO / entry.slower).args["data_parallel_size"])
    assert f"at DP={m.dp} on {m.gpu}" in entry.line()
    # The cited shape, so that a cost measured at one model and batch is not read as another's.
    args = read_log(REPO / entry.slower).args
    shape = (f"{args['num_layers']} layers, hidden {args['hidden_size']}, seq {args['seq_length']}, "
             f"micro batch {args['micro_batch_size']}, global batch {args['global_batch_size']}")
    assert m.shape == shape and f"; TE {m.transformer_engine}" in entry.line()


@pytest.mark.parametrize("entry", CRASHES, ids=lambda e: e.id)
def test_a_crash_entry_quotes_its_log(entry):
    """A crash entry's line is the cited log's own failure, with the conditions of its sidecar."""
    status = read_log(REPO / entry.crashed).status
    meta = json.loads((REPO / entry.crashed.replace(".log", ".meta.json")).read_text())
    assert status.name == "crashed"
    line = entry.line()
    assert (status.exception or status.reason) in line and entry.crashed in line
    gpu = recipes.gpu(meta["environment"]["gpu"]["name"]).name
    assert f"at DP={read_log(REPO / entry.crashed).args['data_parallel_size']} on {gpu}" in line
    assert f"TE {meta['environment']['transformer_engine']}" in line
    (record,) = advice.manifest_records([entry])
    assert record["step_time_change"] is None and record["logs"] == [entry.crashed]


def test_a_crash_entry_must_cite_a_crashed_log(tmp_path, monkeypatch):
    completed = "logs/param_gather_h100/pg_h100_w4096_l4_s4096_fp8_pao.log"
    assert "cited as crashed, but the log is completed" in _line_of(tmp_path, monkeypatch, completed)
    assert "crashed (cited log not found)" in _line_of(tmp_path, monkeypatch, "logs/nothing/x.log")


def _line_of(tmp_path, monkeypatch, crashed: str) -> str:
    table = tmp_path / "advice.yaml"
    table.write_text(yaml.safe_dump([{"id": "x", "setting": "s", "applies_when": {}, "advice": "a",
                                      "crashed": crashed}]))
    monkeypatch.setattr(advice, "TABLE", table)
    advice.table.cache_clear()
    try:
        (entry,) = advice.table()
        try:
            return entry.line()
        except ValueError as err:
            return str(err)
    finally:
        advice.table.cache_clear()


def test_the_precision_aware_optimizer_crash_applies_where_it_was_seen():
    (entry,) = [e for e in CRASHES if "precision-aware" in e.setting]
    flags = {"--fp8-format": "hybrid", "--fp8-recipe": "delayed", "--fp8-param-gather": True,
             "--use-precision-aware-optimizer": True, "--bf16": True}
    facts = dict(flags=flags, gpu="H100", tp=1, dp=1, nodes=1, fusion="auto")
    assert advice.applies(entry, advice.Facts(**facts))
    assert not advice.applies(entry, advice.Facts(**{**facts, "flags": {**flags, "--fp8-recipe": "tensorwise"}}))
    assert not advice.applies(entry, advice.Facts(**{**facts, "flags": {**flags, "--fp8-param-gather": False}}))
    assert not advice.applies(entry, advice.Facts(**{**facts, "dp": 2}))  # trained at DP=2 (tensorwise) only


def test_param_gather_advice_cites_the_ablation():
    entry = next(e for e in ENTRIES if e.id == "fp8_param_gather_low_dp")
    assert entry.slower.startswith("logs/h200x2_8b_ablations/") and "no_fp8_param_gather" in entry.faster
    dp1 = next(e for e in ENTRIES if e.id == "fp8_param_gather_dp1")
    assert dp1.measurement.dp == 1 and dp1.measurement.change > 0


def _dp1_matrix(tmp_path):
    data = yaml.safe_load((REPO / "experiments" / "h200x2_8b_bench.yaml").read_text())
    data["target"]["gpus_per_node"] = 1
    data["megatron"]["model"]["--num-layers"] = 4
    data["megatron"]["training"]["--global-batch-size"] = 8
    path = tmp_path / "dp1.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _advice_paragraphs(out: str) -> list[str]:
    """render's advice paragraphs, each unwrapped to one line: "advice for <runs>: <text>"."""
    blocks = re.split(r"\n  (?! )", out)  # one block per run line or advice paragraph
    return [" ".join(b.split()) for b in blocks if b.startswith("advice for ")]


def test_render_prints_and_records_the_advice_that_applies(tmp_path, capsys):
    code = render.main([str(_dp1_matrix(tmp_path)), "--out", str(tmp_path / "gen")])
    out = capsys.readouterr().out
    assert code == 0  # nothing is refused for speed
    paragraphs = _advice_paragraphs(out)
    (gather,) = [p for p in paragraphs if "--fp8-param-gather at data-parallel size 1: measured +" in p]
    runs = gather.split(": ", 1)[0]
    assert "bench_llama3_8b_h200x2_fp8_cs" in runs
    assert "bench_llama3_8b_h200x2_bf16" not in runs
    assert "bench_llama3_8b_h200x2_fp8_blockwise" not in runs  # blockwise runs without it
    assert "at DP=1 on H100" in gather and "logs/param_gather_h100/" in gather
    assert "data-parallel size 2:" not in out  # the DP=2 measurement is not cited at DP=1
    entries = json.loads((tmp_path / "gen" / "dp1.manifest.json").read_text())["runs"]
    recorded = {e["name"]: [a["id"] for a in e["advice"]] for e in entries}
    assert "fp8_param_gather_dp1" in recorded["bench_llama3_8b_h200x2_fp8_cs"]
    assert "fp8_param_gather_low_dp" not in recorded["bench_llama3_8b_h200x2_fp8_cs"]
    assert "fp8_param_gather_dp1" not in recorded["bench_llama3_8b_h200x2_bf16"]


def test_render_prints_each_advice_once_after_the_runs(tmp_path, capsys):
    """experiments/h200_8b.yaml: two advice entries apply to all 5 runs; each is printed once,
    after every run line, naming the runs, in lines of at most render.ADVICE_WIDTH columns (a
    path longer than that aside); the manifest still records them per run."""
    matrix = REPO / "experiments" / "h200_8b.yaml"
    assert render.main([str(matrix), "--out", str(tmp_path / "gen")]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    first_advice = next(i for i, line in enumerate(lines) if line.startswith("  advice for "))
    assert not any(line.startswith("  train_") for line in lines[first_advice:])
    assert "    advice:" not in out
    paragraphs = _advice_paragraphs(out)
    entries = json.loads((tmp_path / "gen" / "h200_8b.manifest.json").read_text())["runs"]
    names = [e["name"] for e in entries]
    texts = list(dict.fromkeys(a["text"] for e in entries for a in e["advice"]))
    assert len(names) == 5 and len(texts) == 2 and all(len(e["advice"]) == 2 for e in entries)
    assert paragraphs == [f"advice for 5 runs ({', '.join(names)}): {' '.join(t.split())}" for t in texts]
    assert all(len(line) <= render.ADVICE_WIDTH or " " not in line.strip()
               for line in lines[first_advice:]), lines[first_advice:]


def test_run_prints_advice_for_the_launch_world_size(capsys):
    """experiments/h200_8b.yaml runs at DP=8: the param-gather advice appears only when the
    launch makes it DP=2 or less."""
    matrix = str(REPO / "experiments" / "h200_8b.yaml")
    assert run_cli.main([matrix, "--dry-run", "--only", "*_fp8_cs"]) == 0
    assert "--fp8-param-gather at data-parallel size" not in capsys.readouterr().out
    code = run_cli.main([matrix, "--dry-run", "--only", "*_fp8_cs", "--env", "GPUS_PER_NODE=1",
                         "--", "--num-layers", "4", "--global-batch-size", "2"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "run.py: advice: train_llama3_8b_h200_fp8_cs: --fp8-param-gather at data-parallel size 1:" \
        in captured.out


def test_applies_when_conditions():
    entry = next(e for e in ENTRIES if e.id == "fp8_param_gather_low_dp")
    flags = {"--fp8-format": "hybrid", "--fp8-recipe": "tensorwise", "--fp8-param-gather": True, "--bf16": True}
    facts = dict(flags=flags, gpu="H100", tp=1, dp=2, nodes=1, fusion="auto")
    assert advice.applies(entry, advice.Facts(**facts))
    assert not advice.applies(entry, advice.Facts(**{**facts, "dp": 4}))
    # At DP=1 the one-GPU measurement applies instead, not the DP=2 one.
    dp1 = next(e for e in ENTRIES if e.id == "fp8_param_gather_dp1")
    assert not advice.applies(entry, advice.Facts(**{**facts, "dp": 1}))
    assert advice.applies(dp1, advice.Facts(**{**facts, "dp": 1}))
    assert not advice.applies(dp1, advice.Facts(**facts))
    assert not advice.applies(entry, advice.Facts(**{**facts, "gpu": "B200"}))  # measured on Hopper only
    assert not advice.applies(entry, advice.Facts(**{**facts, "flags": {**flags, "--fp8-param-gather": False}}))


def test_a_malformed_table_entry_is_named(tmp_path, monkeypatch):
    bad = tmp_path / "advice.yaml"
    bad.write_text("- {id: x, setting: s, applies_when: {dp_minimum: 1}, advice: a, slower: l, faster: m}\n")
    monkeypatch.setattr(advice, "TABLE", bad)
    advice.table.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"\[0\]\.applies_when: unknown dp_minimum; known: flags_on"):
            advice.table()
    finally:
        advice.table.cache_clear()


def test_missing_evidence_logs_say_so_instead_of_failing_render():
    """A checkout without logs/ still renders: the advice says its figure is unavailable."""
    entry = advice.Entry("x", "--fp8-param-gather", {}, "drop it", "logs/none/slow.log", "logs/none/fast.log")
    assert entry.measured() is None
    assert "measured cost unavailable (cited logs not found), logs/none/slow.log vs" in entry.line()
    (record,) = advice.manifest_records([entry])
    assert record["step_time_change"] is None and record["text"] == entry.line()


def test_no_speedup_is_predicted_for_a_run_a_committed_log_shows_crashing(tmp_path, capsys):
    """The precision-aware optimizer with --fp8-param-gather under delayed scaling crashed at DP=1:
    render claims no speedup for it (and says why); the manifest records none."""
    assert render.main([str(REPO / "experiments" / "param_gather_h100.yaml"), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    at = out.index(next(x for x in out if x.startswith("  pg_h100_w4096_l4_s4096_fp8_param_gather_pao:")))
    assert out[at + 1] == ("    predicted speedup over its BF16 twin: none: a committed log shows "
                           "these settings crash (advice below)")
    data = json.loads((tmp_path / "param_gather_h100.manifest.json").read_text())
    entry = next(e for e in data["runs"] if e["name"] == "pg_h100_w4096_l4_s4096_fp8_param_gather_pao")
    assert entry["predicted_speedup"] is None
    twin = next(e for e in data["runs"] if e["name"] == "pg_h100_w4096_l4_s4096_fp8_pao")
    assert twin["predicted_speedup"] is not None  # the same run without the parameter gather trained
