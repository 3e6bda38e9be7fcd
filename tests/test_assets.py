"""Every committed report is what report.py makes of the committed logs: `assets/report.md`
from `logs/` (the README's first command) and each `assets/<study>/report.md` from the command
its third line quotes. Re-run that command after changing the report code or the logs."""

import shlex

import pytest

import report
from dev.rebuild_reports import COMMAND
from conftest import REPO

REPORTS = sorted(REPO.glob("assets/**/report.md"))


@pytest.mark.parametrize("committed_path", REPORTS, ids=[str(p.relative_to(REPO)) for p in REPORTS])
def test_committed_report_is_current(committed_path, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # the report names its inputs as given: logs/...
    committed = committed_path.read_text().splitlines()
    command = COMMAND.search(committed[2]).group(1)
    args = shlex.split(command)
    if "--out" in args:  # the output folder goes to a scratch folder
        at = args.index("--out")
        del args[at:at + 2]
    assert report.main([*args, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    fresh = (tmp_path / "report.md").read_text().splitlines()
    # The third line quotes the command that made the report, which names its output folder.
    assert fresh[:2] + fresh[3:] == committed[:2] + committed[3:], \
        f"{committed_path.relative_to(REPO)} is stale: run python tools/report.py {command}"
    anchors = {_anchor(line) for line in committed if line.startswith("#")}
    for line in committed:
        for target in (part.split(")")[0] for part in line.split("](")[1:]):
            if target.startswith("#"):  # a section of this report
                assert target[1:] in anchors, f"report.md links to a missing section {target}"
            else:
                assert (committed_path.parent / target).is_file(), f"report.md shows a missing {target}"


def _anchor(heading: str) -> str:
    """A Markdown heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces
    to hyphens."""
    text = heading.lstrip("#").strip().lower()
    return "".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-")


def test_the_main_report_is_built_from_every_log():
    assert REPO / "assets" / "report.md" in REPORTS
    assert "from `logs/`" in (REPO / "assets" / "report.md").read_text().splitlines()[2]


def test_the_committed_ablations_compare_each_run_with_the_base_of_its_own_sitting():
    """The ablation matrix ran in two sittings on 2xH200 with its base launched in each: runs of
    the first sitting are measured against the first base launch, the rest against the second."""
    from fp8suite.report import compare
    from fp8suite.logs import runs

    logs = runs.load_runs(runs.find_logs([str(REPO / "logs" / "h200x2_8b_ablations")]), {})
    (g,) = compare.build_groups(logs, 3, "abl_llama3_8b_h200x2_fp8_cs_base")
    base = g.summaries["abl_llama3_8b_h200x2_fp8_cs_base"]
    assert [a.path.rsplit("/", 1)[1] for a in base.repeats] == [
        "abl_llama3_8b_h200x2_fp8_cs_base.log", "abl_llama3_8b_h200x2_fp8_cs_base.1.log"]
    first = {"no_manual_gc", "no_overlap", "no_cudnn_norm", "bf16_moments", "tp2_sp", "te_cuda_graphs"}
    for name, v in g.versus.items():
        setting = name.split("_h200x2_", 1)[1].split("_", 2)[-1] if "fp8_cs" in name else ""
        if setting in first:
            assert v.baseline_log == "abl_llama3_8b_h200x2_fp8_cs_base.log", name
        else:
            assert v.baseline_log == "", name
    assert g.spread is not None and g.spread < 0.05
