"""The corpus builder: .deb reading, markup to text, JSONL and provenance (no network, no apt)."""

import hashlib
import io
import json
import tarfile

import pytest

import make_corpus
from fp8suite import corpus

DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo

Files: *
Copyright: 2024 Someone
License: GPL-2+

Files: debian/*
Copyright: 2024 Packager
License: MIT

License: GPL-2+
 The text of the licence.
"""

PROSE = "A sentence of plain English prose, long enough to count as a document. " * 10


def _tar_xz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _ar(members: dict[str, bytes]) -> bytes:
    out = [b"!<arch>\n"]
    for name, data in members.items():
        header = (f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n").encode()
        assert len(header) == 60
        out.append(header + data + (b"\n" if len(data) % 2 else b""))
    return b"".join(out)


def make_deb(directory, package, version, files, copyright_text=DEP5):
    """A minimal but real .deb: debian-binary, control.tar.xz and data.tar.xz in an ar archive."""
    control = f"Package: {package}\nVersion: {version}\nArchitecture: all\nDescription: demo\n"
    data = {f"./{path}": blob for path, blob in files.items()}
    if copyright_text is not None:
        data[f"./usr/share/doc/{package}/copyright"] = copyright_text.encode()
    deb = _ar({
        "debian-binary": b"2.0\n",
        "control.tar.xz": _tar_xz({"./control": control.encode()}),
        "data.tar.xz": _tar_xz(data),
    })
    path = directory / f"{package}_{version}_all.deb"
    path.write_bytes(deb)
    return path


# ----------------------------------------------------------------------------- markup to text


def test_html_keeps_main_body_and_drops_chrome():
    page = """<html><head><title>T</title><script>var x = 1;</script></head><body>
    <div class="related" role="navigation"><a href="#">next</a></div>
    <div class="body" role="main">
      <h1>Title<a class="headerlink" href="#t">\u00b6</a></h1>
      <p>First   paragraph
         spans lines &amp; has <em>inline</em> markup.</p>
      <pre>def f(x):
        return x</pre>
      <ul><li>one</li><li><p>two</p></li></ul>
      <table><tr><th>Name</th><th>Size</th></tr><tr><td><p>int</p></td><td>4 bytes</td></tr></table>
    </div>
    <div class="footer">Copyright</div></body></html>"""
    text = corpus.html_to_text(page, main=("role", "main"))
    assert text == (
        "Title\n\nFirst paragraph spans lines & has inline markup.\n\n"
        "def f(x):\n        return x\n\n- one\n\n- two\n\nName  Size\n\nint  4 bytes\n"
    )


def test_html_without_main_keeps_everything_but_navigation():
    page = ('<body><div class="navheader">Prev Next</div><p>Body text.</p>'
            '<div class="navfooter">Home</div></body>')
    assert corpus.html_to_text(page, main=("id", "absent")) == "Body text.\n"


def test_rst_strips_markup_but_keeps_prose_and_literal_blocks():
    rst = """.. SPDX-License-Identifier: GPL-2.0

.. _kref_label:

=====================
Reference counting
=====================

.. toctree::
   :maxdepth: 2

   intro
   usage

Use :c:func:`kref_get` and ``kref_put()``; see :ref:`the rules <kref_rules>`
and `the paper <http://example.org>`_. This is **important** and *emphasised*, see RFC_.
Names such as __attribute__ and __user stay.

.. note::
   Notes stay, without their indent.

To use a kref, add one to your structure::

    struct my_data {
        struct kref refcount;
    };

.. code-block:: c

   hidden_code();

+------+--------+
| Name | Size   |
+======+========+
| int  | 4      |
+------+--------+

::

    literal after a bare marker

...and done.
"""
    text = corpus.rst_to_text(rst)
    assert text == (
        "Reference counting\n\n"
        "Use kref_get and kref_put(); see the rules\n"
        "and the paper. This is important and emphasised, see RFC.\n"
        "Names such as __attribute__ and __user stay.\n\n"
        "Notes stay, without their indent.\n\n"
        "To use a kref, add one to your structure:\n\n"
        "    struct my_data {\n        struct kref refcount;\n    };\n\n"
        "Name  Size\nint  4\n\n"
        "    literal after a bare marker\n\n"
        "...and done.\n"
    )


def test_pod_to_text():
    pod = """If you read this file as is, ignore the funny characters.

=head1 NAME

perlfoo - B<bold> and C<< $a->{b} >> and L<perlsyn/"For Loops"> and L<text|perlop>

=begin html

<p>hidden</p>

=end html

=over 4

=item *

An item with E<lt>angleE<gt> brackets and X<index>no index entry.

=back

    verbatim   code
    kept

=cut

sub code_after_cut { }
"""
    assert corpus.pod_to_text(pod) == (
        'NAME\n\nperlfoo - bold and $a->{b} and "For Loops" in perlsyn and text\n\n'
        "An item with <angle> brackets and no index entry.\n\n"
        "    verbatim   code\n    kept\n"
    )


def test_unknown_kind_lists_valid_ones():
    with pytest.raises(ValueError, match="valid: html, pod, rst, text"):
        corpus.text_of("markdown", b"x")


# ----------------------------------------------------------------------------- licences


def test_licence_from_dep5_copyright():
    lic = corpus.licence_from_copyright(DEP5)
    assert lic == {"machine_readable": True, "licence": "GPL-2+", "all_licences": ["GPL-2+", "MIT"]}


def test_licence_from_free_form_copyright():
    assert corpus.licence_from_copyright("This is free software under the GPL.\n") == {
        "machine_readable": False}


# ----------------------------------------------------------------------------- .deb files


def test_open_deb_reads_control_and_selected_files(tmp_path):
    path = make_deb(tmp_path, "demo-doc", "1.0-1", {"usr/share/doc/demo/a.txt": b"hello",
                                                     "usr/bin/tool": b"\x7fELF"})
    deb = corpus.open_deb(path, lambda p: p.endswith(".txt"))
    assert (deb.package, deb.version) == ("demo-doc", "1.0-1")
    assert deb.files == {"usr/share/doc/demo/a.txt": b"hello"}
    assert deb.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_not_a_deb_and_zstd_members_are_one_line_errors(tmp_path):
    bad = tmp_path / "x_1_all.deb"
    bad.write_bytes(b"PK\x03\x04 not an ar archive")
    with pytest.raises(corpus.DebError, match="not a Debian package"):
        corpus.open_deb(bad)
    zst = tmp_path / "z_1_all.deb"
    zst.write_bytes(_ar({"debian-binary": b"2.0\n", "control.tar.zst": b"\x28\xb5\x2f\xfd"}))
    with pytest.raises(corpus.DebError, match="zstd-compressed; unpack it with dpkg-deb"):
        corpus.open_deb(zst)
    broken = tmp_path / "b_1_all.deb"
    broken.write_bytes(_ar({"debian-binary": b"2.0\n", "control.tar.xz": b"\xfd7zXZ\x00garbage"}))
    with pytest.raises(corpus.DebError, match="b_1_all.deb: corrupt archive"):
        corpus.open_deb(broken)


def test_find_deb_needs_exactly_one(tmp_path):
    with pytest.raises(corpus.DebError, match="apt-get download demo"):
        corpus.find_deb(tmp_path, "demo")
    (tmp_path / "demo_1_all.deb").write_bytes(b"")
    (tmp_path / "demo_2_all.deb").write_bytes(b"")
    with pytest.raises(corpus.DebError, match="several demo_"):
        corpus.find_deb(tmp_path, "demo")


# ----------------------------------------------------------------------------- the whole build


SOURCES = (
    corpus.Source("demo-doc", include=("usr/share/doc/demo-doc/*.rst",), kind="rst",
                  exclude=("*/skip/*",)),
    corpus.Source("demo-html", include=("usr/share/demo/*.html",), kind="html", main=("id", "body"),
                  licence="PSF-2.0 (by hand)"),
)


def _debs(tmp_path):
    import gzip

    rst_dir = "usr/share/doc/demo-doc/"
    make_deb(tmp_path, "demo-doc", "1.0-1", {
        rst_dir + "b.rst.gz": gzip.compress(("Title B\n=======\n\n" + PROSE).encode()),
        rst_dir + "a.rst": ("Title A\n-------\n\n" + PROSE).encode(),
        rst_dir + "copy.rst": ("Title A\n-------\n\n" + PROSE).encode(),   # duplicate of a.rst
        rst_dir + "tiny.rst": b"Index\n=====\n\n.. toctree::\n\n   a\n",     # too small
        rst_dir + "skip/c.rst": PROSE.encode(),                              # excluded
    })
    make_deb(tmp_path, "demo-html", "2.0", {
        "usr/share/demo/page.html": f'<div id="nav">menu</div><div id="body"><p>{PROSE}</p></div>'.encode(),
    }, copyright_text="Free-form copyright text.\n")
    return {s.package: corpus.find_deb(tmp_path, s.package) for s in SOURCES}


def test_build_corpus_writes_jsonl_and_provenance(tmp_path):
    debs = _debs(tmp_path)
    result = corpus.build_corpus(debs, tmp_path / "out", sources=SOURCES, min_chars=200)
    records = [json.loads(line) for line in result.jsonl.read_text().splitlines()]
    assert sorted(r["source"] for r in records) == [
        "demo-doc:usr/share/doc/demo-doc/a.rst",
        "demo-doc:usr/share/doc/demo-doc/b.rst.gz",
        "demo-html:usr/share/demo/page.html",
    ]
    assert [r["source"] for r in records] == sorted((r["source"] for r in records),
                                                    key=lambda s: hashlib.sha256(s.encode()).hexdigest())
    assert all(set(r) == {"text", "source"} and r["text"].endswith(PROSE.strip() + "\n") for r in records)
    assert "menu" not in next(r["text"] for r in records if r["source"].startswith("demo-html"))

    prov = json.loads(result.provenance.read_text())
    assert prov["documents"] == 3 and prov["jsonl_sha256"] == hashlib.sha256(
        result.jsonl.read_bytes()).hexdigest()
    doc, page = prov["packages"]
    assert doc["package"] == "demo-doc" and doc["version"] == "1.0-1"
    assert doc["deb_sha256"] == hashlib.sha256(debs["demo-doc"].read_bytes()).hexdigest()
    assert doc["licence"] == "GPL-2+" and doc["machine_readable"] is True
    assert (doc["files_selected"], doc["documents"], doc["dropped_small"], doc["dropped_duplicate"]) == (4, 2, 1, 1)
    assert page["licence"] == "PSF-2.0 (by hand)" and page["machine_readable"] is False
    assert prov["text_bytes"] == doc["text_bytes"] + page["text_bytes"]


def test_build_corpus_is_deterministic(tmp_path):
    debs = _debs(tmp_path)
    first = corpus.build_corpus(debs, tmp_path / "one", sources=SOURCES, min_chars=200)
    second = corpus.build_corpus(debs, tmp_path / "two", sources=SOURCES, min_chars=200)
    assert first.jsonl.read_bytes() == second.jsonl.read_bytes()
    assert first.provenance.read_bytes() == second.provenance.read_bytes()


def test_cli_reports_a_missing_deb_in_one_line(tmp_path, capsys):
    assert make_corpus.main(["--debs", str(tmp_path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("make_corpus: error:") and "apt-get download" in err
    assert "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "out" / "corpus.jsonl").exists()


def test_cli_builds_from_debs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(corpus, "SOURCES", SOURCES)
    _debs(tmp_path)
    out = tmp_path / "out"
    assert make_corpus.main(["--debs", str(tmp_path), "--out", str(out), "--min-chars", "200"]) == 0
    captured = capsys.readouterr()
    assert "3 documents" in captured.out
    assert "demo-doc 1.0-1: 4 files, 2 documents" in captured.err
    assert (out / "corpus.jsonl").exists() and (out / "provenance.json").exists()


def test_cli_list(capsys):
    assert make_corpus.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert all(s.package in out for s in corpus.SOURCES)
