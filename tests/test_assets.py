"""The committed report is what report.py makes of the committed logs (re-run the README's
first command after changing the report code or the logs)."""

import report
from conftest import REPO


def test_committed_report_is_current(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(REPO)  # the report names its inputs as given: logs/
    assert report.main(["logs/", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    fresh = (tmp_path / "report.md").read_text().splitlines()
    committed = (REPO / "assets" / "report.md").read_text().splitlines()
    # The third line quotes the command that made the report, which names its output folder.
    assert fresh[:2] + fresh[3:] == committed[:2] + committed[3:], "assets/report.md is stale: run python tools/report.py logs/"
    for line in committed:
        for image in (part.split(")")[0] for part in line.split("](")[1:]):
            assert (REPO / "assets" / image).is_file(), f"report.md shows a missing {image}"
