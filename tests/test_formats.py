"""HTML, CSV, XLSX, PPTX, EPUB, DOCX extras and OCR, on real files written here."""

from __future__ import annotations

import glob
import random
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from docmaker import make_pdf

from privategpt_zh import formats, loaders
from privategpt_zh.errors import LoaderError


def _read(path: Path) -> str:
    return "\n".join(s.text for s in loaders.load(path))


# --- HTML -----------------------------------------------------------------------

PAGE = """<!DOCTYPE html><html><head>{meta}<title>养殖手册</title>
<style>body {{ color: red }}</style><script>var secret = "不要出现";</script></head>
<body><nav><a href="/">首页</a> | <a href="/x">导航链接</a></nav>
<h1>奶牛乳房炎</h1><p>挤奶前
  药浴乳头，<b>停留30秒</b>。</p>
<ul><li>保持卧床干燥</li><li>垫料每天更换</li></ul>
<table><tr><th>猪群</th><th>温度</th></tr><tr><td>育肥猪</td><td>18-22℃</td></tr></table>
<!-- 注释不要出现 --><p>第一行<br>第二行</p></body></html>"""


@pytest.mark.parametrize(
    "encoding,meta",
    [
        ("utf-8", '<meta charset="utf-8">'),
        ("gbk", '<meta http-equiv="Content-Type" content="text/html; charset=gb2312">'),
        ("gbk", ""),  # no declaration: detected from the bytes
        ("gbk", '<meta charset="utf-8">'),  # a wrong declaration is not trusted
        ("utf-16", ""),  # with BOM
        ("utf-8", '<meta charset="utf-16">'),  # impossible label: browsers use UTF-8
        ("gbk", '<meta charset="hex">'),  # not a text encoding at all
        ("gbk", '<meta charset="no-such-codec">'),
    ],
)
def test_html_structure_and_encodings(tmp_path, encoding, meta):
    path = tmp_path / "page.html"
    path.write_bytes(PAGE.format(meta=meta).encode(encoding))
    lines = _read(path).split("\n")
    assert lines == [
        "养殖手册",
        "奶牛乳房炎",
        "挤奶前药浴乳头，停留30秒。",  # the source line break between CJK goes
        "保持卧床干燥",
        "垫料每天更换",
        "猪群 | 温度",
        "育肥猪 | 18-22℃",
        "第一行",
        "第二行",
    ]


def test_deeply_nested_html_does_not_recurse(tmp_path):
    path = tmp_path / "deep.htm"
    path.write_text("<div>" * 5000 + "深处的文字" + "</div>" * 5000, encoding="utf-8")
    assert _read(path) == "深处的文字"


def test_missing_parser_package_names_the_pip_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "bs4", None)
    path = tmp_path / "p.html"
    path.write_text("<p>你好</p>", encoding="utf-8")
    with pytest.raises(LoaderError, match="pip install beautifulsoup4"):
        _read(path)


# --- CSV / XLSX -----------------------------------------------------------------

INVESTORS = [
    ["姓名", "投资金额", "日期"],
    ["张三", "50万元", "2023-05-01"],
    ["", "", ""],
    ["李四", "120万元", "2023-06-15"],
]


@pytest.mark.parametrize("encoding", ["utf-8-sig", "gbk", "utf-16"])
def test_csv_rows_carry_their_header_names(tmp_path, encoding):
    path = tmp_path / "投资人.csv"
    path.write_bytes("\r\n".join(",".join(r) for r in INVESTORS).encode(encoding))
    assert _read(path) == (
        "姓名: 张三；投资金额: 50万元；日期: 2023-05-01\n"
        "姓名: 李四；投资金额: 120万元；日期: 2023-06-15"
    )


def test_csv_semicolons_quotes_and_no_header(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text('1;"2,5";3\n4;5;6\n', encoding="utf-8")
    assert _read(path) == "1 | 2,5 | 3\n4 | 5 | 6"


def test_table_groups_stay_under_the_chunk_size():
    rows = [["编号", "说明"]] + [[str(i), "一段比较长的说明文字" * (i % 3 + 1)] for i in range(60)]
    sections = list(formats.table_sections(rows))
    assert all(len(s.text) <= formats.GROUP_CHARS for s in sections)
    assert all(s.text.count("\n") < formats.GROUP_ROWS for s in sections)
    lines = [ln for s in sections for ln in s.text.split("\n")]
    assert lines[0] == "编号: 0；说明: 一段比较长的说明文字" and len(lines) == 60


def test_merged_header_cells_fill_and_nest():
    two_level = [["姓名", "联系方式", ""], ["", "电话", "邮箱"], ["张三", "138", "z@x.cn"]]
    (section,) = formats.table_sections(two_level)
    assert section.text == "姓名: 张三；联系方式/电话: 138；联系方式/邮箱: z@x.cn"
    spanning = [["姓名", "金额", ""], ["张三", "5", "6"]]
    assert next(formats.table_sections(spanning)).text == "姓名: 张三；金额: 5；金额: 6"
    titled = [["2023年投资人名单"], ["姓名", "金额"], ["张三", "5万"]]
    assert next(formats.table_sections(titled)).text == "2023年投资人名单\n姓名: 张三；金额: 5万"
    unlabelled = [["姓名", "", "城市"], ["张三", "男", "北京"]]  # data, not a sub-header
    assert next(formats.table_sections(unlabelled)).text == "姓名: 张三；姓名: 男；城市: 北京"


def test_empty_csv_is_refused(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(LoaderError, match="empty"):
        _read(path)


def test_xlsx_sheets_rows_and_types(tmp_path):
    import datetime as dt

    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "投资人"
    sheet.append(["姓名", "投资金额", "日期", "占比"])
    sheet.append(["张三", "50万元", dt.datetime(2023, 5, 1), 0.25])
    sheet["D2"].number_format = "0%"
    sheet.append([None, None, None, None])
    sheet.append(["李四", 1200000, dt.date(2023, 6, 15), None])
    sheet.append(["王五", 12345678901.5, None, 0.1 + 0.2])
    second = book.create_sheet("说明")
    second.append(["本表仅供内部使用"])
    path = tmp_path / "inv.xlsx"
    book.save(path)
    sections = list(loaders.load(path))
    assert [s.page for s in sections] == [1, 2]
    assert sections[0].text == (
        "姓名: 张三；投资金额: 50万元；日期: 2023-05-01；占比: 25%\n"
        "姓名: 李四；投资金额: 1200000；日期: 2023-06-15\n"
        "姓名: 王五；投资金额: 12345678901.5；占比: 0.3"
    )
    assert sections[1].text == "本表仅供内部使用"


# --- PPTX -----------------------------------------------------------------------


def test_pptx_slides_tables_and_notes(tmp_path):
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "生猪养殖要点"
    first.placeholders[1].text = "非洲猪瘟没有疫苗"
    first.notes_slide.notes_text_frame.text = "演讲时强调生物安全"
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "温度表"
    table = second.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    for r, row in enumerate([["猪群", "温度"], ["育肥猪", "18-22℃"]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    path = tmp_path / "deck.pptx"
    deck.save(path)
    sections = list(loaders.load(path))
    assert [s.page for s in sections] == [1, 2]
    assert sections[0].text == "生猪养殖要点\n非洲猪瘟没有疫苗\n备注：演讲时强调生物安全"
    assert sections[1].text == "温度表\n猪群 | 温度\n育肥猪 | 18-22℃"


# --- EPUB -----------------------------------------------------------------------


def make_epub(path: Path, chapters: list[tuple[str, str]]) -> Path:
    """A minimal valid EPUB 3; the spine lists chapters in reverse manifest order."""
    items = "".join(
        f'<item id="c{i}" href="Text/ch%20{i}.xhtml" media-type="application/xhtml+xml"/>'
        for i in range(len(chapters))
    )
    spine = "".join(f'<itemref idref="c{i}"/>' for i in reversed(range(len(chapters))))
    opf = (
        '<?xml version="1.0" encoding="utf-8"?><package xmlns="http://www.idpf.org/2007/opf" '
        'version="3.0" unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
        '<dc:identifier id="id">x</dc:identifier><dc:title>书</dc:title>'
        "<dc:language>zh</dc:language>"
        f"</metadata><manifest>{items}</manifest><spine>{spine}</spine></package>"
    )
    container = (
        '<?xml version="1.0"?><container version="1.0" '
        'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
        '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>'
        "</rootfiles></container>"
    )
    with zipfile.ZipFile(path, "w") as book:
        book.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        book.writestr("META-INF/container.xml", container)
        book.writestr("OEBPS/content.opf", opf)
        for i, (title, body) in enumerate(chapters):
            book.writestr(
                f"OEBPS/Text/ch {i}.xhtml",
                '<?xml version="1.0" encoding="utf-8"?><html xmlns="http://www.w3.org/1999/xhtml">'
                f"<head><title>{title}</title></head><body><h1>{title}</h1><p>{body}</p></body></html>",
            )
    return path


def test_epub_chapters_in_spine_order(tmp_path):
    path = make_epub(tmp_path / "b.epub", [("第一章", "奶牛"), ("第二章", "生猪")])
    sections = list(loaders.load(path))
    assert [(s.page, s.text) for s in sections] == [
        (1, "第二章\n第二章\n生猪"),
        (2, "第一章\n第一章\n奶牛"),
    ]


def test_drm_epub_is_refused_but_font_obfuscation_is_not(tmp_path):
    encryption = (
        '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
        'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
        '<enc:CipherData><enc:CipherReference URI="{}"/></enc:CipherData>'
        "</enc:EncryptedData></encryption>"
    )
    for name, uri, drm in (
        ("font", "OEBPS/fonts/a.ttf", False),
        ("drm", "OEBPS/Text/ch%200.xhtml", True),
    ):
        path = make_epub(tmp_path / f"{name}.epub", [("第一章", "奶牛")])
        with zipfile.ZipFile(path, "a") as book:
            book.writestr("META-INF/encryption.xml", encryption.format(uri))
        if drm:
            with pytest.raises(LoaderError, match="DRM"):
                _read(path)
        else:
            assert "奶牛" in _read(path)


def test_epub_without_spine_is_refused(tmp_path):
    path = make_epub(tmp_path / "b.epub", [])
    with pytest.raises(LoaderError, match="no reading order"):
        _read(path)


# --- DOCX extras ----------------------------------------------------------------

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
FOOTNOTES = (
    f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:footnotes xmlns:w="{W}">'
    '<w:footnote w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:footnote>'
    '<w:footnote w:type="continuationSeparator" w:id="0"><w:p><w:r><w:continuationSeparator/>'
    "</w:r></w:p></w:footnote>"
    '<w:footnote w:id="1"><w:p><w:r><w:t>数据来自</w:t></w:r><w:r><w:t>农业农村部。</w:t></w:r>'
    "</w:p></w:footnote></w:footnotes>"
)


def add_footnotes(path: Path) -> None:
    """python-docx can't write footnotes: add the part, its relationship and a reference."""
    with zipfile.ZipFile(path) as old:
        parts = {name: old.read(name) for name in old.namelist()}
    parts["word/footnotes.xml"] = FOOTNOTES.encode()
    parts["word/_rels/document.xml.rels"] = parts["word/_rels/document.xml.rels"].replace(
        b"</Relationships>",
        b'<Relationship Id="rIdFn1" Target="footnotes.xml" Type="http://schemas.openxml'
        b'formats.org/officeDocument/2006/relationships/footnotes"/></Relationships>',
    )
    parts["[Content_Types].xml"] = parts["[Content_Types].xml"].replace(
        b"</Types>",
        b'<Override PartName="/word/footnotes.xml" ContentType="application/vnd.openxml'
        b'formats-officedocument.wordprocessingml.footnotes+xml"/></Types>',
    )
    parts["word/document.xml"] = parts["word/document.xml"].replace(
        "正文带脚注</w:t></w:r>".encode(),
        '正文带脚注</w:t></w:r><w:r><w:footnoteReference w:id="1"/></w:r>'.encode(),
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as new:
        for name, data in parts.items():
            new.writestr(name, data)


def test_docx_headers_footers_and_footnotes(tmp_path):
    import docx

    document = docx.Document()
    document.sections[0].header.paragraphs[0].text = "内部资料 注意保密"
    document.sections[0].footer.paragraphs[0].text = "养殖技术推广站"
    document.add_paragraph("正文带脚注")
    document.add_section()  # its header is linked to the first: must not repeat
    document.add_paragraph("第二节正文")
    path = tmp_path / "n.docx"
    document.save(path)
    add_footnotes(path)
    sections = [s.text for s in loaders.load(path)]
    assert sections == [
        "内部资料注意保密",  # clean_text drops spaces between Chinese characters
        "正文带脚注\n\n第二节正文",  # the section break is an empty paragraph
        "养殖技术推广站",
        "[1] 数据来自农业农村部。",
    ]


# --- bad input --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["x.xlsx", "x.pptx", "x.epub", "x.png", "x.docx", "x.jpg"])
def test_random_bytes_raise_loader_error(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(random.Random(7).randbytes(3000))
    with pytest.raises(LoaderError, match="not a valid|not a readable"):
        _read(path)


def test_encrypted_office_file_says_password(tmp_path):
    path = tmp_path / "locked.xlsx"
    path.write_bytes(formats.OLE_MAGIC + b"\0" * 600)
    with pytest.raises(LoaderError, match="password-protected"):
        _read(path)


def test_zip_bomb_is_refused_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "MAX_UNPACKED_BYTES", 1 << 20)  # 1 GiB in real use
    path = tmp_path / "bomb.docx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as bomb:
        bomb.writestr("word/document.xml", b"\0" * (2 << 20))  # 2 MB packed into 2 KB
    assert path.stat().st_size < 10_000
    with pytest.raises(LoaderError, match="zip bomb"):
        _read(path)


# --- OCR ------------------------------------------------------------------------


def _cjk_font() -> str | None:
    patterns = ["/usr/share/fonts/**/*wqy*.tt[cf]", "/usr/share/fonts/**/*Noto*CJK*.tt[cf]"]
    patterns += ["/usr/share/fonts/**/*CJK*.otf", "/System/Library/Fonts/PingFang.ttc"]
    for pattern in patterns:
        found = sorted(glob.glob(pattern, recursive=True))
        if found:
            return found[0]
    if shutil.which("fc-list"):
        out = subprocess.run(["fc-list", ":lang=zh", "file"], capture_output=True, text=True)
        files = [ln.split(":")[0] for ln in out.stdout.splitlines() if ln.strip()]
        return files[0] if files else None
    return None


def _text_image(lines: list[str], font, size=(640, 160)):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((20, 20 + i * 60), line, fill="black", font=font)
    return image


@pytest.fixture(scope="module")
def ocr():
    pytest.importorskip("rapidocr_onnxruntime")
    formats.ocr_engine()  # loads the models once for the whole module
    return formats


@pytest.fixture
def ocr_on(monkeypatch):
    monkeypatch.setattr(formats, "OCR_ENABLED", True)


def test_ocr_english_digits(tmp_path, ocr, ocr_on):
    from PIL import ImageFont

    path = tmp_path / "receipt.png"
    _text_image(["INVOICE 20230501", "TOTAL 4862"], ImageFont.load_default(size=32)).save(path)
    text = _read(path).replace(" ", "")
    assert "INVOICE20230501" in text and "TOTAL4862" in text
    assert text.index("INVOICE") < text.index("TOTAL")


@pytest.fixture(scope="module")
def chinese_png(tmp_path_factory) -> Path:
    from PIL import ImageFont

    font_file = _cjk_font()
    if not font_file:
        pytest.skip("no CJK font installed (apt-get install fonts-wqy-zenhei)")
    font = ImageFont.truetype(font_file, 32)
    path = tmp_path_factory.mktemp("ocr") / "扫描.png"
    # The first line is short, so it can't be a wrapped line of one paragraph.
    _text_image(["奶牛乳房炎的预防", "挤奶前用药浴液药浴乳头"], font).save(path)
    return path


def test_ocr_chinese_image(chinese_png, ocr, ocr_on):
    assert _read(chinese_png) == "奶牛乳房炎的预防\n挤奶前用药浴液药浴乳头"


def test_scanned_pdf_is_ocred_page_by_page(tmp_path, chinese_png, ocr, ocr_on):
    from PIL import Image

    path = tmp_path / "scan.pdf"
    with Image.open(chinese_png) as page:
        page.save(path, "PDF", resolution=150)
    sections = list(loaders.load(path))
    assert [(s.page, s.text) for s in sections] == [(1, "奶牛乳房炎的预防\n挤奶前用药浴液药浴乳头")]


def test_ocr_off_or_missing_gives_the_reason(tmp_path, chinese_png, ocr, monkeypatch):
    scan = tmp_path / "scan.pdf"
    from PIL import Image

    with Image.open(chinese_png) as page:
        page.save(scan, "PDF")
    monkeypatch.setattr(formats, "OCR_ENABLED", False)
    with pytest.raises(LoaderError, match=r"OCR is turned off \(OCR_ENABLED=false\)"):
        _read(chinese_png)
    with pytest.raises(LoaderError, match="no text layer"):
        _read(scan)
    monkeypatch.setattr(formats, "OCR_ENABLED", True)
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)
    with pytest.raises(LoaderError, match="pip install rapidocr-onnxruntime"):
        _read(chinese_png)
    with pytest.raises(LoaderError, match="no text layer.*install rapidocr-onnxruntime"):
        _read(scan)
    monkeypatch.delitem(sys.modules, "rapidocr_onnxruntime")
    monkeypatch.setitem(sys.modules, "pypdfium2", None)
    with pytest.raises(LoaderError, match="no text layer.*pip install pypdfium2"):
        _read(scan)


def test_text_pdf_is_not_ocred(tmp_path, monkeypatch):
    def boom(*_):
        raise AssertionError("a page with a text layer was OCR'd")

    monkeypatch.setattr(formats, "ocr_pdf_page", boom)
    path = make_pdf(tmp_path / "t.pdf", [["这一页有文字层，不需要识别。"]])
    assert "文字层" in _read(path)


def test_ocr_rows_and_paragraphs_from_boxes():
    box = formats._Box
    rows = formats._rows(
        [
            box(50, 70, 300, 480, "右边"),  # same row as 左边, further right
            box(0, 20, 0, 500, "第一段很长的一行"),
            box(25, 45, 0, 200, "接着写完。"),
            box(52, 72, 0, 100, "左边"),
            box(100, 120, 0, 500, "Next paragraph"),
            box(125, 145, 0, 300, "runs on"),
        ]
    )
    assert formats._paragraphs(rows) == [
        "第一段很长的一行接着写完。",
        "左边 右边",
        "Next paragraph runs on",
    ]


def test_ocr_pdf_page_renders_requested_page(tmp_path, ocr, ocr_on):
    from PIL import ImageFont

    font = ImageFont.load_default(size=32)
    pages = [_text_image([word], font, size=(400, 100)) for word in ("PAGE 111", "PAGE 222")]
    path = tmp_path / "two.pdf"
    pages[0].save(path, "PDF", save_all=True, append_images=[pages[1]])
    assert formats.ocr_pdf_page(path, 2).replace(" ", "") == "PAGE222"
    with pytest.raises(LoaderError, match="no page 3"):
        formats.ocr_pdf_page(Path(path), 3)


def test_long_screenshot_is_read_in_slices_without_duplicates(tmp_path, ocr, ocr_on, monkeypatch):
    from PIL import Image, ImageDraw, ImageFont

    engine, heights = formats.ocr_engine(), []

    def spy(tile):
        heights.append(tile.height)
        return engine(tile)

    monkeypatch.setattr(formats, "ocr_engine", lambda: spy)

    font = ImageFont.load_default(size=32)
    image = Image.new("RGB", (800, 3000), "white")
    draw = ImageDraw.Draw(image)
    # 1880 lies in the overlap of the two slices (1800-2000): it must be read once.
    for y, word in ((100, "TOP 111"), (1880, "MIDDLE 222"), (2900, "BOTTOM 333")):
        draw.text((20, y), word, fill="black", font=font)
    path = tmp_path / "long.png"
    image.save(path)
    assert _read(path).replace(" ", "").split("\n") == ["TOP111", "MIDDLE222", "BOTTOM333"]
    assert heights == [2000, 1200]  # full resolution, not shrunk to fit 2000 pixels


def test_truncated_image_is_refused(tmp_path, ocr_on):
    from PIL import Image

    path = tmp_path / "cut.png"
    Image.effect_noise((200, 200), 50).convert("RGB").save(path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(LoaderError, match="not a readable image"):
        _read(path)
