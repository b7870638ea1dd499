from __future__ import annotations

import codecs

import pytest
from conftest import DAIRY_PAGES, PIG_LINES
from docmaker import make_docx, make_pdf

from privategpt_zh import loaders
from privategpt_zh.errors import LoaderError

TEXT = (
    "奶牛乳房炎的预防：挤奶前药浴乳头。\n保持卧床干燥，垫料每天更换！\n第三行 with English words.\n"
)


def _read(path):
    return "\n".join(s.text for s in loaders.load(path))


@pytest.mark.parametrize(
    "encoding,prefix",
    [
        ("utf-8", b""),
        ("utf-8", codecs.BOM_UTF8),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-16-le", b""),
        ("utf-16-be", b""),
        ("gb18030", b""),
        ("gbk", b""),
    ],
)
def test_text_encodings_are_detected(tmp_path, encoding, prefix):
    path = tmp_path / "doc.txt"
    path.write_bytes(prefix + TEXT.encode(encoding))
    assert _read(path) == TEXT.strip()


def test_big5_traditional_chinese(tmp_path):
    text = "乳牛乳房炎的預防：擠奶前藥浴乳頭，保持臥床乾燥清潔，墊料每天更換。" * 3
    path = tmp_path / "big5.txt"
    path.write_bytes(text.encode("big5"))
    assert _read(path) == text


def test_mixed_line_endings(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes("第一行\r\n第二行\r第三行\n".encode())
    assert _read(path) == "第一行\n第二行\n第三行"


def test_large_text_streams_in_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "BLOCK_CHARS", 1000)
    line = "这是一行用来测试分块读取的中文文本。\n"
    path = tmp_path / "big.txt"
    path.write_text(line * 500, encoding="gb18030")
    sections = list(loaders.load(path))
    assert len(sections) > 5
    assert "".join(s.text + "\n" for s in sections) == line * 500


def test_pdf_pages_and_text(tmp_path):
    path = make_pdf(tmp_path / "d.pdf", DAIRY_PAGES)
    sections = list(loaders.load(path))
    assert [s.page for s in sections] == [1, 2]
    assert "挤奶前用药浴液药浴乳头" in sections[0].text
    assert "乳头封闭剂" in sections[1].text


def test_docx_paragraphs_and_tables_in_order(tmp_path):
    path = make_docx(tmp_path / "p.docx", PIG_LINES, [["猪群", "温度"], ["育肥猪", "18-22℃"]])
    text = _read(path)
    assert text.index("猪舍环境控制") < text.index("防控靠生物安全") < text.index("育肥猪 | 18-22℃")


@pytest.mark.parametrize("name", ["bad.pdf", "bad.docx"])
def test_corrupt_files_raise_loader_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"\x00\x01 not really a document" * 10)
    with pytest.raises(LoaderError, match="not a valid"):
        _read(path)


def test_binary_named_txt_is_refused(tmp_path):
    path = tmp_path / "bin.txt"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(LoaderError):
        _read(path)


def test_password_protected_pdf(tmp_path):
    from reportlab.pdfgen import canvas

    path = tmp_path / "locked.pdf"
    c = canvas.Canvas(str(path), encrypt="secret")
    c.drawString(100, 700, "secret text")
    c.save()
    with pytest.raises(LoaderError, match="password"):
        _read(path)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "x.xyz"
    path.write_text("hi")
    with pytest.raises(LoaderError, match="unsupported"):
        _read(path)


def test_clean_text_unwraps_cjk_pdf_lines():
    wrapped = "奶牛乳房炎是奶牛场最常见的疾病，主要由\n金黄色葡萄球菌引起。\n下一段很短\n"
    assert (
        loaders.unwrap_cjk(wrapped)
        == "奶牛乳房炎是奶牛场最常见的疾病，主要由金黄色葡萄球菌引起。\n下一段很短"
    )
    assert loaders.unwrap_cjk("标题\n一、小节") == "标题\n一、小节"  # short lines are headings
    assert loaders.clean_text("奶 牛  乳房炎\r\n\r\n\r\n下一段") == "奶牛乳房炎\n\n下一段"


def test_text_without_line_breaks_still_streams(tmp_path, monkeypatch):
    monkeypatch.setattr(loaders, "BLOCK_CHARS", 1000)
    path = tmp_path / "one-line.txt"
    path.write_text("奶" * 5500, encoding="utf-8")
    sections = list(loaders.load(path))
    assert len(sections) == 6 and "".join(s.text for s in sections) == "奶" * 5500
