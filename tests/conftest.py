from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

from privategpt_zh.offline import go_offline  # noqa: E402

go_offline()

from docmaker import make_docx, make_pdf  # noqa: E402

from privategpt_zh.config import load_settings  # noqa: E402

MODEL_DIR = ROOT / "models"  # the embedded model is assembled here once and shared
SHARED_DATA = ROOT.parent / "shared" / "data" / "cmrc2018_trial.json"

DAIRY_PAGES = [
    [
        "奶牛乳房炎的预防",
        "挤奶前用药浴液药浴乳头，停留30秒后用纸巾擦干。",
        "保持卧床干燥清洁，垫料每天更换。",
    ],
    ["干奶期管理", "干奶时向每个乳区注入干奶药，并使用乳头封闭剂。"],
]
PIG_LINES = [
    "猪舍环境控制",
    "育肥猪舍适宜温度为18至22摄氏度。",
    "非洲猪瘟没有疫苗，防控靠生物安全。",
]
PIG_TABLE = [["猪群", "温度"], ["哺乳仔猪", "32-35℃"], ["育肥猪", "18-22℃"]]
SHEEP_TEXT = "肉羊驱虫\n一般每年春秋两季各驱虫一次。\n常用驱虫药有伊维菌素和阿苯达唑。\n"


def subprocess_env(db: Path, src: Path) -> dict[str, str]:
    """Environment for running ingest.py/ask.py on a tmp store with the fast hash embedder."""
    env = dict(os.environ)
    env.update(
        PERSIST_DIRECTORY=str(db),
        SOURCE_DIRECTORY=str(src),
        EMBEDDINGS_MODEL_NAME="hash:256",
        PYTHONIOENCODING="utf-8",
    )
    return env


@pytest.fixture
def stage_calls(monkeypatch) -> list[int]:
    """Records the size of every Store.stage batch."""
    from privategpt_zh.store import Store

    sizes: list[int] = []
    real = Store.stage
    monkeypatch.setattr(Store, "stage", lambda self, c: sizes.append(len(c)) or real(self, c))
    return sizes


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A source folder with a real PDF, a real DOCX and a GBK text file."""
    src = tmp_path / "source_documents"
    src.mkdir()
    make_pdf(src / "奶牛手册.pdf", DAIRY_PAGES)
    make_docx(src / "生猪 要点.docx", PIG_LINES, PIG_TABLE)
    (src / "肉羊.txt").write_bytes(SHEEP_TEXT.encode("gbk"))
    return src


@pytest.fixture
def settings_for(tmp_path: Path):
    """Settings pointing at tmp folders; extra keyword arguments override."""

    def make(**overrides):
        base = {
            "persist_directory": tmp_path / "db",
            "source_directory": tmp_path / "source_documents",
            "model_dir": MODEL_DIR,
            "embeddings_model_name": "hash:256",
        }
        base.update(overrides)
        return load_settings(env_file=None, **base)

    return make


@pytest.fixture(scope="session")
def model_path() -> Path:
    from privategpt_zh.models import default_model_path

    return default_model_path(MODEL_DIR)


@pytest.fixture(scope="session")
def real_llm(model_path: Path):
    from privategpt_zh.llm import LlamaCppLLM

    settings = load_settings(env_file=None, model_path=model_path, model_n_ctx=2048, seed=7)
    return LlamaCppLLM(model_path, settings)
