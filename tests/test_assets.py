"""Every committed report is what report.py makes of the committed logs: `assets/report.md`
from `logs/` (the README's first command) and each `assets/<study>/report.md` from the command
its third line quotes. Re-run that command after changing the report code or the logs."""

import re
import shlex

import pytest

import report
from conftest import REPO

REPORTS = sorted(REPO.glob("assets/**/report.md"))


@pytest.mark.parametrize("committed_path", REPORTS, ids=[str(p.relative_to(REPO)) for p in REPORTS])
def test_committed_report_is_current(committed_path, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # the report names its inputs as given: logs/...
    committed = committed_path.read_text().splitlines()
    command = re.search(r"Produced by `python tools/report\.py (.*?)`", committed[2]).group(1)
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
    for line in committed:
        for image in (part.split(")")[0] for part in line.split("](")[1:]):
            assert (committed_path.parent / image).is_file(), f"report.md shows a missing {image}"


def test_the_main_report_is_built_from_every_log():
    assert REPO / "assets" / "report.md" in REPORTS
    assert "from `logs/`" in (REPO / "assets" / "report.md").read_text().splitlines()[2]
