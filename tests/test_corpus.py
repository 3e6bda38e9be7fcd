"""The corpus builder: .deb reading, markup to text, JSONL and provenance (no network, no apt).

The .deb fixtures are real packages built in the test with `dpkg-deb --build`; the converters
are the ones the builder uses (BeautifulSoup, docutils, pod2text). Where dpkg-deb or pod2text
is missing (not Debian), the tests that need them skip.
"""

import hashlib
import json
import random
import re
import shutil
import subprocess

import pytest

import make_corpus
from fp8suite.corpus import build as corpus
from fp8suite.corpus import markup

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not on PATH")
needs_pod2text = pytest.mark.skipif(shutil.which("pod2text") is None, reason="pod2text not on PATH")

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


def make_deb(directory, package, version, files, copyright_text=DEP5, compression="xz"):
    """A real .deb from `dpkg-deb --build`, its files under a tree in a temporary folder."""
    tree = directory / f"tree-{package}-{version}"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
        f"Maintainer: Demo <demo@example.org>\nDescription: demo\n")
    if copyright_text is not None:
        files = {**files, f"usr/share/doc/{package}/copyright": copyright_text.encode()}
    for path, blob in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_bytes(blob)
    path = directory / f"{package}_{version.replace(':', '%3a')}_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", f"-Z{compression}", "--build", str(tree),
                    str(path)], check=True, capture_output=True)
    shutil.rmtree(tree)
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
    text = markup.html_to_text(page, main=("role", "main"))
    assert text == (
        "Title\n\nFirst paragraph spans lines & has inline markup.\n\n"
        "def f(x):\n        return x\n\n- one\n\n- two\n\nName  Size\n\nint  4 bytes\n"
    )


def test_html_without_main_keeps_everything_but_navigation():
    page = ('<body><div class="navheader">Prev Next</div><p>Body text.</p>'
            '<div class="navfooter">Home</div></body>')
    assert markup.html_to_text(page, main=("id", "absent")) == "Body text.\n"


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
    text = markup.rst_to_text(rst)
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


@needs_pod2text
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
    # pod2text: headings flush left, ordinary paragraphs unwrapped, bullets as Pod::Text marks
    # them, verbatim blocks as written; text outside POD and =begin html blocks are left out.
    assert markup.pod_to_text(pod) == (
        'NAME\nperlfoo - bold and $a->{b} and "For Loops" in perlsyn and text\n\n'
        "*   An item with <angle> brackets and no index entry.\n\n"
        "    verbatim   code\n    kept\n"
    )


def test_unknown_kind_lists_valid_ones():
    with pytest.raises(ValueError, match="valid: html, pod, rst, text"):
        markup.text_of("markdown", b"x")


# ----------------------------------------------------------------------------- licences


def test_licence_from_dep5_copyright():
    lic = corpus.licence_from_copyright(DEP5)
    assert lic == {"machine_readable": True, "licence": "GPL-2+", "all_licences": ["GPL-2+", "MIT"]}


def test_licence_from_free_form_copyright():
    assert corpus.licence_from_copyright("This is free software under the GPL.\n") == {
        "machine_readable": False}


# ----------------------------------------------------------------------------- .deb files


@needs_dpkg
@pytest.mark.parametrize("compression", ["xz", "gzip", "zstd", "none"])
def test_open_deb_reads_control_and_selected_files(tmp_path, compression):
    path = make_deb(tmp_path, "demo-doc", "1:1.0-1", {"usr/share/doc/demo/a.txt": b"hello",
                                                       "usr/share/doc/demo/b.html.gz": b"\x1f\x8b",
                                                       "usr/bin/tool": b"\x7fELF"},
                    compression=compression)
    deb = corpus.open_deb(path, lambda p: p.startswith("usr/share/doc/demo/"))
    assert (deb.package, deb.version) == ("demo-doc", "1:1.0-1")
    assert deb.files == {"usr/share/doc/demo/a.txt": b"hello", "usr/share/doc/demo/b.html.gz": b"\x1f\x8b"}
    assert deb.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@needs_dpkg
def test_unreadable_debs_are_one_line_errors_naming_the_file(tmp_path):
    good = make_deb(tmp_path, "demo-doc", "1.0", {"usr/share/doc/demo/a.txt": PROSE.encode() * 50},
                    compression="gzip").read_bytes()
    cases = {
        "not_1_all.deb": b"PK\x03\x04 not an ar archive",
        "empty_1_all.deb": b"",
        "cut_1_all.deb": good[:len(good) // 2],        # data member cut short
        "noise_1_all.deb": good[:200] + bytes(len(good) - 200),
    }
    for name, blob in cases.items():
        bad = tmp_path / name
        bad.write_bytes(blob)
        with pytest.raises(corpus.DebError) as caught:
            corpus.open_deb(bad)
        message = str(caught.value)
        assert message.startswith(f"{bad}: ") and "\n" not in message, (name, message)
        assert "not a readable Debian package" in message or "corrupt data archive" in message


def test_missing_dpkg_deb_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(corpus.DebError, match="dpkg-deb not found"):
        corpus.open_deb(tmp_path / "x_1_all.deb")


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


@needs_dpkg
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


@needs_dpkg
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


def test_cli_names_missing_converters_in_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(corpus, "SOURCES", SOURCES + (
        corpus.Source("demo-pod", include=("usr/share/perl/*.pod",), kind="pod"),))
    monkeypatch.setenv("PATH", str(tmp_path))   # no pod2text (nor dpkg-deb) here
    out = tmp_path / "out"
    assert make_corpus.main(["--debs", str(tmp_path), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("make_corpus: error: missing converters: pod needs pod2text")
    assert "\n" not in err and not out.exists()


@needs_dpkg
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


# ----------------------------------------------------------------------------- many generated pages
# Each case is a random document of one format built from pieces whose words are known: prose
# words (P0, P1, ...) must all come through, in order; words in chrome, dropped directives or
# non-POD code (X0, X1, ...) must not; and no markup may be left.


class Words:
    def __init__(self):
        self.keep, self.drop = [], []

    def p(self, n=3):
        words = [f"P{len(self.keep) + i}" for i in range(n)]
        self.keep.extend(words)
        return " ".join(words)

    def x(self):
        self.drop.append(f"X{len(self.drop)}")
        return self.drop[-1]


def check_words(text, words):
    found = re.findall(r"\b[PX]\d+\b", text)
    assert [w for w in found if w.startswith("P")] == words.keep, text
    assert not [w for w in found if w.startswith("X")], text


def html_case(rng):
    w = Words()
    chrome = [lambda: f'<div class="sphinxsidebar"><p>{w.x()}</p></div>',
              lambda: f"<nav><ul><li>{w.x()}</li></ul></nav>",
              lambda: f"<script>var {w.x()} = 1;</script>",
              lambda: f'<a class="headerlink" href="#">{w.x()}</a>',
              lambda: f'<div role="navigation">{w.x()}</div>',
              lambda: f"<!-- {w.x()} -->"]
    blocks = [lambda: f"<p>{w.p()} <em>{w.p(1)}</em>\n   {w.p(2)}</p>",
              lambda: (lambda n: f"<h{n}>{w.p(2)}</h{n}>")(rng.randint(1, 6)),
              lambda: f"<ul><li>{w.p(2)}</li><li><p>{w.p(2)}</p></li></ul>",
              lambda: f"<table><tr><th>{w.p(1)}</th><td>{w.p(1)}</td></tr></table>",
              lambda: f"<pre>{w.p(1)}\n    {w.p(1)}</pre>",
              lambda: f"<div><section>{w.p()}<br>{w.p(1)}</section></div>"]
    parts = []
    for _ in range(rng.randint(3, 12)):
        parts.append(rng.choice(chrome)() if rng.random() < 0.3 else rng.choice(blocks)())
    return "<html><head><title>t</title></head><body>" + "\n".join(parts) + "</body></html>", w


def rst_case(rng):
    w = Words()
    inline = [lambda: f":c:func:`{w.p(1)}`", lambda: f":ref:`{w.p(1)} <some-target>`",
              lambda: f"``{w.p(1)}``", lambda: f"**{w.p(1)}**", lambda: f"*{w.p(1)}*",
              lambda: f"`{w.p(1)} <http://example.org>`_", lambda: f":doc:`~{w.p(1)}`",
        lambda: f"{w.p(1)}_", lambda: f"`{w.p(1)} {w.p(1)}`_", lambda: f"|{w.p(1)}|",
              lambda: w.p(1)]
    blocks = [
        lambda: " ".join(rng.choice(inline)() for _ in range(rng.randint(1, 5))) + ".",
        lambda: (lambda t: f"{t}\n{rng.choice('=-~^')* (len(t) + 2)}")(w.p(2)),
        lambda: f".. toctree::\n   :maxdepth: 2\n\n   {w.x()}",
        lambda: f".. code-block:: c\n\n   {w.x()}();",
        lambda: f".. kernel-doc:: {w.x()}.c\n   :internal:",
        lambda: f".. {w.x()}: http://example.org",
        lambda: f".. a comment {w.x()}",
        lambda: f".. note::\n   {w.p()}",
        lambda: f".. c:function:: int {w.p(1)}(void)\n\n   {w.p()}",
        lambda: f"- {w.p()}\n- {w.p(1)}",
        lambda: f"{w.p(1)}::\n\n    {w.p(1)}",
    ]
    return "\n\n".join(rng.choice(blocks)() for _ in range(rng.randint(2, 10))) + "\n", w


def pod_case(rng):
    w = Words()
    codes = [lambda: f"B<{w.p(1)}>", lambda: f"I<{w.p(1)}>", lambda: f"C<{w.p(1)}>",
             lambda: f"C<< {w.p(1)}->{{a}} >>", lambda: f"L<{w.p(1)}|perlfunc>",
             lambda: f"F<{w.p(1)}>", lambda: f"X<{w.x()}>", lambda: "E<gt>", lambda: w.p(1)]
    blocks = [
        lambda: " ".join(rng.choice(codes)() for _ in range(rng.randint(1, 5))),
        lambda: f"=head{rng.randint(1, 4)} {w.p(2)}",
        lambda: f"=over 4\n\n=item *\n\n{w.p()}\n\n=back",
        lambda: f"=begin html\n\n<p>{w.x()}</p>\n\n=end html",
        lambda: f"    {w.p(1)} verbatim",
    ]
    body = "\n\n".join(rng.choice(blocks)() for _ in range(rng.randint(2, 8)))
    return f"code {w.x()} before POD\n\n=pod\n\n{body}\n\n=cut\n\nsub {w.x()} {{}}\n", w


@pytest.mark.parametrize("seed", range(40))
def test_generated_html_keeps_prose_in_order_and_drops_chrome(seed):
    page, words = html_case(random.Random(seed))
    text = markup.html_to_text(page)
    check_words(text, words)
    assert "<" not in text and "\x00" not in text


@pytest.mark.parametrize("seed", range(40))
def test_generated_rst_keeps_prose_in_order_and_drops_machinery(seed):
    source, words = rst_case(random.Random(seed))
    text = markup.rst_to_text(source)
    check_words(text, words)
    assert not re.search(r"``|\*\*|:\w+:`|^\.\. |<http|\w_\b|\|", text, re.M), text


@needs_pod2text
@pytest.mark.parametrize("seed", range(25))
def test_generated_pod_keeps_prose_in_order_and_drops_code_outside_pod(seed):
    source, words = pod_case(random.Random(seed))
    text = markup.pod_to_text(source)
    check_words(text, words)
    assert not re.search(r"[A-Z]<|^=\w", text, re.M), text
