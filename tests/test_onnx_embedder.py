"""The ONNX backend of the embedded model: sentence-transformers' vectors, without torch."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import MODEL_DIR, ROOT

from privategpt_zh import onnx_embedder
from privategpt_zh.embeddings import (
    SentenceTransformerEmbedder,
    default_embeddings_path,
    get_embedder,
)
from privategpt_zh.errors import ConfigError, ModelError
from privategpt_zh.onnx_embedder import OnnxEmbedder

CACHE = MODEL_DIR / "onnx"
ZH_HEAD = "奶牛乳房炎是奶牛养殖中最常见的疾病之一，挤奶前后要对乳头进行药浴消毒，"
TEXTS = [
    ZH_HEAD + "定期检测牛奶体细胞数，发现隐性乳房炎及时隔离治疗。" * 3,
    ZH_HEAD + "干奶期向每个乳区注入干奶药并使用乳头封闭剂。" * 3,  # same first 32 pieces
    "Piglets are usually weaned at 21 to 28 days, at about 6 to 8 kg. " * 12,
    "2023年第三季度，张三追加投资50万元（合同编号 INV-0042）。",
    "短",
    "",
]


@pytest.fixture(scope="module")
def onnx_default() -> OnnxEmbedder:
    embedder = get_embedder(None, backend="onnx", cache_dir=CACHE)
    assert isinstance(embedder, OnnxEmbedder)
    return embedder


def test_same_vectors_as_sentence_transformers(onnx_default):
    ours = np.array(onnx_default.embed(TEXTS))
    reference = np.array(get_embedder(None, backend="torch").embed(TEXTS))
    assert ours.shape == reference.shape == (len(TEXTS), 384)
    assert np.min(np.sum(ours * reference, axis=1)) > 0.9999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    # The Chinese cap holds: two texts that differ only after 32 pieces get one vector,
    # while the English one is read much further than that.
    assert np.allclose(ours[0], ours[1], atol=1e-6)
    assert onnx_default.max_length == 128


def test_export_is_made_once_and_reused(onnx_default, monkeypatch):
    onnx_default.embed(["warm"])  # the module's export exists now
    monkeypatch.setattr(onnx_embedder, "_export", _must_not_run)
    again = get_embedder(None, backend="onnx", cache_dir=CACHE)
    assert len(again.embed(["再来一次"])[0]) == 384


def test_auto_falls_back_to_torch_when_the_export_fails(tmp_path, monkeypatch, caplog):
    calls = []
    monkeypatch.setattr(onnx_embedder, "_export", lambda *a: calls.append(a) or _broken_export())
    auto = get_embedder(None, backend="auto", cache_dir=tmp_path)
    with caplog.at_level(logging.WARNING):
        vectors = auto.embed(TEXTS[:1])
    assert "instead of ONNX" in caplog.text and "exporter broke" in caplog.text
    torch = get_embedder(None, backend="torch").embed(TEXTS[:1])
    assert np.allclose(vectors, torch, atol=1e-5)
    # The failure is remembered: the next run neither retries (15 s) nor hides why.
    strict = get_embedder(None, backend="onnx", cache_dir=tmp_path)
    with pytest.raises(ModelError, match="could not export .*exporter broke.*delete .* again"):
        strict.embed(TEXTS[:1])
    assert len(calls) == 1
    assert [p.suffix for p in tmp_path.iterdir()] == [".failed"]  # no half-written model


def test_unwritable_cache_falls_back_and_says_what_to_do(tmp_path, caplog):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    auto = get_embedder(None, backend="auto", cache_dir=blocked / "onnx")
    with caplog.at_level(logging.WARNING):
        assert len(auto.embed(["奶牛"])[0]) == 384
    assert "make it writable" in caplog.text
    strict = get_embedder(None, backend="onnx", cache_dir=blocked / "onnx")
    with pytest.raises(ModelError, match="could not write the ONNX model.*EMBEDDINGS_BACKEND"):
        strict.embed(["奶牛"])


def test_export_that_changes_the_vectors_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_embedder, "SAME_VECTORS", 1.5)  # no export can reach this
    with pytest.raises(ModelError, match="does not reproduce its vectors"):
        onnx_embedder.ensure_export(default_embeddings_path(), tmp_path)
    assert [p.suffix for p in tmp_path.iterdir()] == [".failed"]


def test_damaged_cache_file_names_itself(onnx_default, tmp_path):
    good = onnx_embedder.ensure_export(default_embeddings_path(), CACHE)
    (tmp_path / good.name).write_bytes(b"not an onnx file")
    strict = get_embedder(None, backend="onnx", cache_dir=tmp_path)
    with pytest.raises(ModelError, match=f"{good.name}.*delete it"):
        strict.embed(["x"])


def test_models_it_cannot_reproduce_stay_on_torch(tmp_path):
    folder = _copy_with_pooling(tmp_path / "maxpool", "pooling_mode_max_tokens")
    assert not onnx_embedder.supports(folder)
    assert isinstance(get_embedder(str(folder), cache_dir=tmp_path), SentenceTransformerEmbedder)
    with pytest.raises(ConfigError, match="EMBEDDINGS_BACKEND=onnx"):
        get_embedder(str(folder), backend="onnx", cache_dir=tmp_path)
    assert onnx_embedder.supports(default_embeddings_path())
    assert not onnx_embedder.supports(tmp_path / "no-such-model")


@pytest.mark.parametrize("variant", ["cls", "no-normalize"])
def test_other_poolings_match_sentence_transformers(tmp_path, variant):
    """CLS pooling, and a model without a Normalize step (the vectors are unit length
    either way, as the torch backend returns them)."""
    if variant == "cls":
        folder = _copy_with_pooling(tmp_path / "clspool", "pooling_mode_cls_token")
    else:
        folder = _copy_with_pooling(tmp_path / "plain", "pooling_mode_mean_tokens")
        _keep_modules(folder, lambda m: not m["type"].endswith("Normalize"))
    embedder = get_embedder(str(folder), backend="onnx", cache_dir=tmp_path / "cache")
    ours = np.array(embedder.embed(TEXTS[2:5]))
    reference = np.array(SentenceTransformerEmbedder(str(folder)).embed(TEXTS[2:5]))
    assert np.min(np.sum(ours * reference, axis=1)) > 0.9999
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_folder_without_pooling_stays_on_torch(tmp_path):
    folder = _copy_with_pooling(tmp_path / "nopool", "pooling_mode_mean_tokens")
    _keep_modules(folder, lambda m: m["type"].endswith("Transformer"))
    assert not onnx_embedder.supports(folder)


def test_ingest_and_search_never_import_torch(onnx_default, docs, tmp_path):
    """The point of the backend: the 9 s torch/transformers import is gone."""
    onnx_default.embed(["warm"])
    script = f"""
import json, sys
from privategpt_zh.config import load_settings
from privategpt_zh.embeddings import embedder_for
from privategpt_zh.ingest import Ingestor
from privategpt_zh.retriever import Retriever
from privategpt_zh.store import Store
settings = load_settings(None, source_directory={str(docs)!r},
    persist_directory={str(tmp_path / "db")!r}, model_dir={str(MODEL_DIR)!r},
    embeddings_model_name=None, retrieval_mode="dense")
report = Ingestor(settings).run()
hits = Retriever(Store(settings.persist_directory), embedder_for(settings), settings).search(
    "奶牛乳房炎怎么预防", 4).hits
heavy = [m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules]
print(json.dumps({{"failed": len(report.failed), "hits": len(hits), "heavy": heavy}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"failed": 0, "hits": result["hits"], "heavy": []}
    assert result["hits"] > 0


def _copy_with_pooling(folder: Path, mode: str) -> Path:
    """The embedded model's folder (files linked, not copied) with another pooling mode."""
    source = default_embeddings_path()
    for path in source.rglob("*"):
        if path.is_file():
            target = folder / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)
    pooling = folder / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text())
    pooling.unlink()
    config = {k: (k == mode) if k.startswith("pooling_mode") else v for k, v in config.items()}
    pooling.write_text(json.dumps(config))
    return folder


def _keep_modules(folder: Path, keep) -> None:
    """Rewrite the copy's modules.json (a link to the original) without some modules."""
    modules = json.loads((folder / "modules.json").read_text())
    kept = [m for m in modules if keep(m)]
    assert 0 < len(kept) < len(modules)
    (folder / "modules.json").unlink()
    (folder / "modules.json").write_text(json.dumps(kept))


def _must_not_run(*_args):
    raise AssertionError("the cached export should have been reused")


def _broken_export(*_args):
    raise RuntimeError("exporter broke")
