"""JSONL -> indexed dataset: bad-line accounting, the builder path, tokenizer training.

Most tests use a fake tokenizer and a fake builder and run anywhere (Python 3.11, no megatron).
Tokenizer training runs where `tokenizers` imports; the last test builds a real .bin/.idx and
reads it back where megatron-core imports:

    /opt/py312/bin/python -m pytest tests/test_preprocess.py
"""

import io
import json
import sys

import pytest

import preprocess_data
from fp8suite.corpus import preprocess as pp

EOD = 0


def fake_tokenizer() -> pp.Tokenizer:
    """Characters as token ids (ord + 1, so 0 stays free for the EOD)."""
    return pp.Tokenizer(
        encode_batch=lambda texts: [[ord(c) + 1 for c in t] for t in texts],
        decode=lambda ids: "".join(chr(i - 1) for i in ids),
        eod=EOD, eod_token="<|endoftext|>", vocab_size=1000)


class FakeBuilder:
    """Records documents like IndexedDatasetBuilder and writes its files, so renames can be seen."""

    instances = []

    def __init__(self, bin_path, vocab_size):
        self.bin_path, self.vocab_size, self.documents = bin_path, vocab_size, []
        open(bin_path, "wb").close()
        FakeBuilder.instances.append(self)

    def add_document(self, tensor, lengths):
        assert lengths == [len(tensor)]
        self.documents.append(list(tensor))

    def finalize(self, idx_path):
        with open(self.bin_path, "w") as f:
            json.dump(self.documents, f)
        with open(idx_path, "w") as f:
            f.write(str(len(self.documents)))


def jsonl(*records) -> list[bytes]:
    return [(r if isinstance(r, str) else json.dumps(r)).encode() + b"\n" for r in records]


# ----------------------------------------------------------------------------- reading lines


def test_malformed_lines_are_counted_with_line_numbers():
    lines = jsonl({"text": "ok one"}, "{not json", {"body": "x"}, {"text": 7}, {"text": "  "}, "[1, 2]",
                  {"text": "ok two"}) + [b"\n", b'{"text": "\xff"}\n']
    bad = pp.BadLines()
    docs = list(pp.read_documents(lines, "text", bad))
    assert docs == [(1, "ok one"), (7, "ok two")]
    assert bad.count == 7
    assert bad.by_reason == {"not JSON": 1, "no 'text' key": 1, "'text' is not a string": 1,
                             "empty 'text'": 1, "not a JSON object": 1, "blank line": 1, "not UTF-8": 1}
    assert [n for n, _ in bad.first] == [2, 3, 4, 5, 6]
    assert bad.describe(9).startswith("7 of 9 lines malformed (77.78%): ")
    assert bad.describe(9).endswith("first at line 2, 3, 4, 5, 6, ...")


def test_batches_keep_line_numbers_and_split_by_size():
    docs = [(i, "x" * 10) for i in range(1, 6)]
    assert [[n for n, _ in b] for b in pp.batches(docs, max_docs=2)] == [[1, 2], [3, 4], [5]]
    assert [len(b) for b in pp.batches(docs, max_chars=25)] == [3, 2]


# ----------------------------------------------------------------------------- the builder path


def test_preprocess_appends_eod_and_renames_outputs(tmp_path):
    prefix = str(tmp_path / "sub" / "corpus")
    lines = jsonl({"text": "ab"}, {"text": "cde", "source": "x"}, "garbage")
    summary = pp.preprocess(lines, "text", fake_tokenizer(), prefix, make_builder=FakeBuilder,
                            max_bad_fraction=0.5)
    assert (summary.documents, summary.tokens, summary.lines, summary.bad.count) == (2, 7, 3, 1)
    assert summary.bin_path == tmp_path / "sub" / "corpus_text_document.bin"
    assert summary.idx_path.name == "corpus_text_document.idx"
    assert json.loads(summary.bin_path.read_text()) == [[98, 99, EOD], [100, 101, 102, EOD]]
    assert FakeBuilder.instances[-1].vocab_size == 1000
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [
        "corpus_text_document.bin", "corpus_text_document.idx"]


def test_too_many_bad_lines_fail_and_write_nothing(tmp_path):
    lines = jsonl({"text": "good"}, "bad", "bad")
    with pytest.raises(pp.PreprocessError, match=r"2 of 3 lines malformed .* --max-bad-fraction 0.01; nothing written"):
        pp.preprocess(lines, "text", fake_tokenizer(), str(tmp_path / "c"), make_builder=FakeBuilder)
    assert list(tmp_path.iterdir()) == []


def test_no_documents_is_an_error(tmp_path):
    with pytest.raises(pp.PreprocessError, match="no usable documents"):
        pp.preprocess(jsonl({"text": ""}), "text", fake_tokenizer(), str(tmp_path / "c"),
                      make_builder=FakeBuilder, max_bad_fraction=1.0)
    assert list(tmp_path.iterdir()) == []


def test_max_tokens_cuts_the_last_document_and_keeps_its_eod(tmp_path):
    lines = jsonl({"text": "aaaa"}, {"text": "bbbb"}, {"text": "cccc"})
    summary = pp.preprocess(lines, "text", fake_tokenizer(), str(tmp_path / "c"),
                            make_builder=FakeBuilder, max_tokens=8)
    assert json.loads(summary.bin_path.read_text()) == [[98] * 4 + [EOD], [99, 99, EOD]]
    assert (summary.tokens, summary.capped_at_line) == (8, 2)


def test_progress_line():
    stream = io.StringIO()
    progress = pp.Progress(stream, total_bytes=10_000_000, interval=0)
    progress.update(1234, 2_500_000, 3_000_000, force=True)
    assert stream.getvalue().startswith("1,234 docs  2.5/10.0 MB  3.00M tokens  ")
    assert stream.getvalue().endswith(" tokens/s\n")


def test_missing_megatron_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "megatron.core.datasets.indexed_dataset", None)
    with pytest.raises(pp.PreprocessError, match=r"needs megatron-core .*pip install 'megatron-core"):
        pp.megatron_builder("/nonexistent.bin", 32768)


def test_round_trip_problems():
    tok = fake_tokenizer()
    assert pp.round_trip_problems(["ab"], [[98, 99, EOD]], tok) == []
    assert pp.round_trip_problems(["ab", "cd"], [[98, 99], [100, 99, EOD]], tok) == [
        "document 0 does not end with the EOD id 0", "document 1 decodes to different text"]


# ----------------------------------------------------------------------------- the CLI


@pytest.fixture
def fake_backends(monkeypatch):
    """The CLI with the fake tokenizer and builder; read-back parses the fake .bin."""
    monkeypatch.setattr(pp, "load_tokenizer", lambda directory: fake_tokenizer())
    monkeypatch.setattr(pp, "megatron_builder", FakeBuilder)
    monkeypatch.setattr(pp, "read_back", lambda stem, n: json.loads(
        open(f"{stem}.bin").read())[:n])


def test_cli_writes_and_summarises(tmp_path, fake_backends, capsys):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(jsonl({"text": "hello"}, {"text": "world"})))
    rc = preprocess_data.main(["--input", str(src), "--tokenizer-model", str(tmp_path),
                               "--output-prefix", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert rc == 0
    assert "documents   2\n" in out and "tokens      12 " in out
    assert "bad lines   0 of 2 lines malformed" in out
    assert "check       first 2 documents read back" in out
    assert f"--data-path {tmp_path / 'out'}_text_document " in out


def test_cli_bad_fraction_exits_nonzero_in_one_line(tmp_path, fake_backends, capsys):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(jsonl({"text": "hello"}, "{broken", {"txt": "x"})))
    rc = preprocess_data.main(["--input", str(src), "--tokenizer-model", str(tmp_path),
                               "--output-prefix", str(tmp_path / "out"), "--max-bad-fraction", "0.5"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err[-1].startswith("preprocess_data: error: 2 of 3 lines malformed (66.67%): ")
    assert "first at line 2, 3" in err[-1] and "Traceback" not in "\n".join(err)
    assert not list(tmp_path.glob("out*"))


def test_cli_without_megatron_fails_before_reading(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(pp, "load_tokenizer", lambda directory: fake_tokenizer())
    monkeypatch.setitem(sys.modules, "megatron.core.datasets.indexed_dataset", None)
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(jsonl({"text": "hello"})))
    rc = preprocess_data.main(["--input", str(src), "--tokenizer-model", str(tmp_path),
                               "--output-prefix", str(tmp_path / "out")])
    assert rc == 1
    assert "needs megatron-core" in capsys.readouterr().err


def test_cli_argument_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        preprocess_data.main(["--input", "x.jsonl", "--tokenizer-model", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--output-prefix is required unless --train-tokenizer" in capsys.readouterr().err
    assert preprocess_data.main(["--input", str(tmp_path / "missing.jsonl"), "--tokenizer-model",
                                 str(tmp_path), "--output-prefix", "o"]) == 1
    assert "--input" in capsys.readouterr().err


def test_tokenizer_config_names_the_eod():
    cfg = pp.tokenizer_config()
    assert cfg["eos_token"] == pp.EOD_TOKEN and cfg["pad_token"] != cfg["eos_token"]


# ----------------------------------------------------------------------------- real libraries

TEXTS = [
    "The quick brown fox jumps over the lazy dog. " * 20,
    "Floating point formats trade range for precision; FP8 has two of them, E4M3 and E5M2.\n" * 10,
    "def scale(x, amax):\n    return x / amax  # per-tensor scaling\n" * 10,
    "Unicode survives a byte-level BPE: naïve café, 東京, ✓.\n" * 5,
]


@pytest.fixture
def trained(tmp_path):
    pytest.importorskip("tokenizers")
    directory = tmp_path / "tok"
    pp.train_tokenizer(iter(TEXTS), 400, directory)
    return directory


def test_train_tokenizer_writes_a_loadable_directory(trained):
    assert sorted(p.name for p in trained.iterdir()) == ["tokenizer.json", "tokenizer_config.json"]
    assert json.loads((trained / "tokenizer_config.json").read_text())["eos_token"] == pp.EOD_TOKEN
    tok = pp._load_with_tokenizers(trained)
    assert (tok.eod, tok.vocab_size) == (0, 400)
    for text in TEXTS:
        ids = tok.encode_batch([text])[0]
        assert pp.EOD_TOKEN not in tok.decode(ids) and tok.decode(ids) == text
        assert max(ids) < 400


def test_load_tokenizer_through_transformers(trained, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tok = pp.load_tokenizer(trained)
    assert (tok.eod, tok.eod_token, tok.vocab_size) == (0, pp.EOD_TOKEN, 400)
    assert tok.decode(tok.encode_batch([TEXTS[3]])[0]) == TEXTS[3]


def test_train_refuses_an_existing_tokenizer(trained, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(jsonl({"text": "hello"})))
    assert preprocess_data.main(["--input", str(src), "--tokenizer-model", str(trained),
                                 "--train-tokenizer", "400"]) == 1
    assert "already holds a tokenizer" in capsys.readouterr().err


def test_too_small_vocab_is_refused(tmp_path):
    pytest.importorskip("tokenizers")
    with pytest.raises(pp.PreprocessError, match="too small"):
        pp.train_tokenizer(iter(TEXTS), 258, tmp_path / "tok")


def test_real_megatron_dataset_round_trip(tmp_path, monkeypatch, capsys):
    """Train, preprocess with megatron-core's builder, read back with IndexedDataset (Python 3.12)."""
    pytest.importorskip("tokenizers")
    pytest.importorskip("transformers")
    indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    src = tmp_path / "corpus.jsonl"
    src.write_bytes(b"".join(jsonl(*({"text": t} for t in TEXTS))))
    tok_dir, prefix = tmp_path / "tokenizer", tmp_path / "data" / "corpus"
    rc = preprocess_data.main(["--input", str(src), "--train-tokenizer", "400",
                               "--tokenizer-model", str(tok_dir), "--output-prefix", str(prefix)])
    assert rc == 0, capsys.readouterr().err
    assert "detokenized exactly" in capsys.readouterr().out

    dataset = indexed.IndexedDataset(f"{prefix}_text_document")
    assert len(dataset) == len(TEXTS)
    assert dataset.index.dtype.__name__ == "uint16"
    tok = pp.load_tokenizer(tok_dir)
    for text, doc in zip(TEXTS, (dataset[i].tolist() for i in range(len(dataset)))):
        assert doc[-1] == tok.eod and doc.count(tok.eod) == 1
        assert tok.decode(doc[:-1]) == text

    # Megatron's own tokenizer factory resolves the same eod and needs no vocab padding.
    from types import SimpleNamespace

    from megatron.core.tokenizers.utils.build_tokenizer import build_tokenizer

    args = SimpleNamespace(
        tokenizer_type="HuggingFaceTokenizer", tokenizer_model=str(tok_dir), chat_template=None,
        vocab_file=None, merge_file=None, special_tokens=None, tokenizer_hf_no_use_fast=False,
        trust_remote_code=False, tokenizer_hf_no_include_special_tokens=False, metadata_path=None,
        pad_vocab_size=True, make_vocab_size_divisible_by=16, tensor_model_parallel_size=1, rank=0)
    megatron_tok = build_tokenizer(args)
    assert (megatron_tok.eod, megatron_tok.vocab_size, args.padded_vocab_size) == (tok.eod, 400, 400)
    assert megatron_tok.pad != megatron_tok.eod
