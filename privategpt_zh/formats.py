"""Loaders for the formats beyond PDF/DOCX/text: HTML, CSV, XLSX, PPTX, EPUB and images.

Every parser is imported inside its loader so that a missing optional package only
fails the files that need it. Images (and PDF pages without a text layer) are read
by offline OCR with RapidOCR, which ships Chinese PP-OCR models in its wheel.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import importlib
import importlib.util
import logging
import posixpath
import re
import threading
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote

from .errors import LoaderError, MissingDependencyError
from .loaders import Section, _looks_binary, detect_encoding, register

log = logging.getLogger(__name__)

# Ingest sets this from Settings.ocr_enabled; off means images fail with a clear reason.
OCR_ENABLED = True
OCR_OFF_REASON = "OCR is turned off (OCR_ENABLED=false)"
OCR_MISSING_REASON = "OCR needs rapidocr-onnxruntime: pip install rapidocr-onnxruntime"
OCR_PDF_MISSING_REASON = "OCR of scanned PDFs needs pypdfium2: pip install pypdfium2"

GROUP_ROWS = 10  # table rows per section
GROUP_CHARS = 250  # keeps a group of rows inside one chunk (CHUNK_SIZE defaults to 400)
OCR_MAX_SIDE = 2000  # RapidOCR shrinks anything larger to this anyway
OCR_OVERLAP = 200  # pixels shared by two slices of a tall image: more than a text line
MAX_PART_BYTES = 64 << 20  # an EPUB chapter bigger than this when unpacked is a zip bomb
MAX_UNPACKED_BYTES = 1 << 30  # parsers hold whole XML parts in memory
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def _need(module: str, package: str, purpose: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"{purpose} needs {package}: pip install {package}") from exc


def check_package(path: Path, kind: str) -> None:
    """An Office/EPUB file is a zip; say plainly when it is something else."""
    with path.open("rb") as fh:
        magic = fh.read(8)
    if magic == OLE_MAGIC:
        raise LoaderError(
            f"the {kind} is password-protected or in the old binary Office format: "
            f"save it as a normal .{kind.lower()} without a password"
        )
    if not zipfile.is_zipfile(path):
        raise LoaderError(f"not a valid {kind} file (not a zip package)")
    with zipfile.ZipFile(path) as package:
        unpacked = sum(info.file_size for info in package.infolist())
    if unpacked > MAX_UNPACKED_BYTES:
        raise LoaderError(
            f"the {kind} unpacks to {unpacked >> 20} MB: too large to read (a zip bomb?)"
        )


def safe_xml(data: bytes) -> Any:
    """Parse XML without entities, DTDs or network access (no billion laughs)."""
    from lxml import etree

    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, recover=True
    )
    root = etree.fromstring(data, parser)
    if root is None:
        raise LoaderError("an XML part of the file is empty or broken")
    return root


# --- HTML ---------------------------------------------------------------------

_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]{0,100}?encoding\s*=\s*["']([A-Za-z0-9_.:-]+)""")
_GB = {"gb2312", "gbk", "gb18030", "cp936", "x-gbk", "euc-cn"}
_DROP_TAGS = {
    "script", "style", "nav", "noscript", "template", "svg", "iframe", "object", "embed",
    "canvas", "select", "button",
}  # fmt: skip
_BLOCK_TAGS = {
    "p", "div", "section", "article", "main", "header", "footer", "aside", "h1", "h2", "h3",
    "h4", "h5", "h6", "li", "dt", "dd", "tr", "table", "caption", "blockquote", "pre",
    "figcaption", "address", "title", "ul", "ol", "dl", "hr", "form", "fieldset", "body",
}  # fmt: skip
_CELL_TAGS = {"td", "th"}
_HTML_SPACE = re.compile(r"[ \t\r\n\f\u00a0\u200b]+")


def html_encoding(data: bytes) -> str:
    """BOM first, then a declared charset that really decodes, then a guess."""
    sample = data[:65536]
    if sample.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return detect_encoding(sample)
    declared = _META_CHARSET.search(sample[:8192]) or _XML_ENCODING.search(sample[:1024])
    if declared:
        name = _declared_codec(declared.group(1).decode("ascii").lower())
        try:
            codecs.getincrementaldecoder(name)().decode(sample)
            return name
        except (LookupError, ValueError):  # UnicodeDecodeError is a ValueError
            log.debug("declared charset %s does not fit; guessing", name)
    return detect_encoding(sample)


def _declared_codec(name: str) -> str:
    if name in _GB:
        return "gb18030"  # pages labelled GB2312 often hold GBK characters
    if name.startswith(("utf-16", "utf-32", "ucs")):
        return "utf-8"  # the label was readable as ASCII, so it can't be true (HTML spec)
    try:
        if not codecs.lookup(name)._is_text_encoding:  # "hex", "zlib", "rot13"...
            return "invalid"
    except LookupError:
        return "invalid"
    return name


def html_text(markup: str) -> str:
    """The visible text of an HTML page, one line per block, table cells joined by |."""
    bs4 = _need("bs4", "beautifulsoup4", "reading HTML")
    soup = bs4.BeautifulSoup(markup, "lxml")
    return "\n".join(_html_lines(soup, bs4))


def _html_lines(root: Any, bs4: ModuleType) -> list[str]:
    # An explicit stack instead of recursion: pages nest thousands of tags deep.
    lines: list[str] = []
    current: list[str] = []
    pre_depth = 0
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        if isinstance(node, bs4.element.NavigableString):
            if not isinstance(node, bs4.element.PreformattedString) or isinstance(
                node, bs4.element.CData
            ):
                current.append(str(node) if pre_depth else _HTML_SPACE.sub(" ", str(node)))
            continue
        name = node.name
        if leaving:
            pre_depth -= name == "pre"
            if name in _CELL_TAGS:
                current.append(" | ")
            elif name in _BLOCK_TAGS:
                _flush(current, lines)
            continue
        if name in _DROP_TAGS:
            continue
        if name == "br":
            current.append("\n")
            continue
        if name in _BLOCK_TAGS:
            _flush(current, lines)
        pre_depth += name == "pre"
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.contents))
    _flush(current, lines)
    return lines


def _flush(current: list[str], lines: list[str]) -> None:
    for line in "".join(current).split("\n"):
        line = _HTML_SPACE.sub(" ", line).strip(" |")
        if line:
            lines.append(line)
    current.clear()


@register(".html", ".htm", ".xhtml")
def load_html(path: Path) -> Iterator[Section]:
    data = path.read_bytes()
    encoding = html_encoding(data)
    markup = data.decode(encoding, errors="replace")
    if _looks_binary(markup[:65536]):
        raise LoaderError("looks like a binary file, not an HTML page")
    log.debug("%s: encoding %s", path, encoding)
    yield Section(html_text(markup))


# --- tables: CSV and XLSX -------------------------------------------------------

_NUMBERISH = re.compile(r"[-+]?[\d,.\s]+%?|\d{4}[-/.年]\d{1,2}([-/.月]\d{1,2}日?)?.*")


def table_sections(rows: Iterable[list[str]], page: int | None = None) -> Iterator[Section]:
    """Groups of rows, each row rendered with its header names: ``姓名: 张三；金额: 5万``."""
    data = (row for row in map(_trim, rows) if row)
    first = next(data, None)
    if first is None:
        return
    header, lines = split_header(first, next(data, None))
    group: list[str] = []
    size = 0
    for line in chain(lines, (render_row(header, row) for row in data)):
        if group and (len(group) >= GROUP_ROWS or size + len(line) + 1 > GROUP_CHARS):
            yield Section("\n".join(group), page)
            group, size = [], 0
        group.append(line)
        size += len(line) + 1
    if group:
        yield Section("\n".join(group), page)


def _trim(row: list[str]) -> list[str]:
    cells = [" ".join(cell.split()) for cell in row]
    while cells and not cells[-1]:
        cells.pop()
    return cells


def _header_like(row: list[str]) -> bool:
    cells = [cell for cell in row if cell]
    return (
        bool(cells)
        and len(set(cells)) == len(cells)
        and all(len(cell) <= 40 and not _NUMBERISH.fullmatch(cell) for cell in cells)
    )


def split_header(first: list[str], second: list[str] | None) -> tuple[list[str] | None, list[str]]:
    """Return (header names or None, the first rows rendered as lines).

    Handles a title row above the header (one cell, often merged across the sheet) and
    merged header cells: a merge leaves the cells it covers empty, so names are filled
    from the left, and a row below that only names covered columns is a second level.
    """
    if second is None:
        return None, [render_row(None, first)]
    filled_count = sum(1 for cell in first if cell)
    if filled_count == 1 and sum(1 for c in second if c) >= 2 and _header_like(second):
        return _fill_right(second, len(second)), [render_row(None, first)]
    if not _header_like(first):
        return None, [render_row(None, first), render_row(None, second)]
    width = max(len(first), len(second))
    names = _fill_right(first, width)
    if _is_sub_header(first, second):
        for i, sub in enumerate(second):
            top = names[i]
            names[i] = f"{top}/{sub}" if top and sub and top != sub else top or sub
        return names, []
    return names, [render_row(names, second)]


def _is_sub_header(first: list[str], second: list[str]) -> bool:
    """Row two names only columns under a merged (gap-followed) cell of row one."""
    width = max(len(first), len(second))
    top = first + [""] * (width - len(first))
    gaps = {i for i in range(1, width) if not top[i]}
    if not gaps or not _header_like(second):
        return False
    spans = gaps | {i for i in range(width - 1) if top[i] and i + 1 in gaps}
    named = {i for i, cell in enumerate(second) if cell}
    return gaps <= named and named <= spans


def _fill_right(row: list[str], width: int) -> list[str]:
    out: list[str] = []
    for cell in row + [""] * (width - len(row)):
        out.append(cell or (out[-1] if out else ""))
    return out


def render_row(header: list[str] | None, row: list[str]) -> str:
    if header is None:
        return " | ".join(cell for cell in row if cell)
    parts = []
    for i, value in enumerate(row):
        if value:
            name = header[i] if i < len(header) else ""
            parts.append(f"{name}: {value}" if name else value)
    return "；".join(parts)


@register(".csv", ".tsv")
def load_csv(path: Path) -> Iterator[Section]:
    with path.open("rb") as fh:
        sample = fh.read(65536)
    if not sample.strip():
        raise LoaderError("the CSV file is empty")
    encoding = detect_encoding(sample)
    text = sample.decode(encoding, errors="replace")
    if _looks_binary(text):
        raise LoaderError("looks like a binary file, not CSV text")
    dialect = _sniff(text, path.suffix.lower())
    log.debug("%s: encoding %s, delimiter %r", path, encoding, dialect.delimiter)
    with path.open(encoding=encoding, errors="replace", newline="") as fh:
        yield from table_sections(csv.reader(fh, dialect))


def _sniff(text: str, suffix: str) -> type[csv.Dialect] | csv.Dialect:
    default = csv.excel_tab if suffix == ".tsv" else csv.excel
    sample = text[:8192]
    if "\n" in sample:
        sample = sample[: sample.rfind("\n")]  # whole lines only
    try:
        return csv.Sniffer().sniff(sample, delimiters=",\t;|")
    except csv.Error:
        return default


@register(".xlsx", ".xlsm")
def load_xlsx(path: Path) -> Iterator[Section]:
    openpyxl = _need("openpyxl", "openpyxl", "reading XLSX")
    check_package(path, "XLSX")
    book = openpyxl.load_workbook(str(path), read_only=True, data_only=True)
    try:
        for number, sheet in enumerate(book.worksheets, start=1):
            # Saved dimensions are often wrong (A1:XFD1048576); don't pad rows to them.
            sheet.reset_dimensions()
            rows = ([cell_text(c) for c in row] for row in sheet.iter_rows())
            yield from table_sections(rows, page=number)
    finally:
        book.close()


def cell_text(cell: Any) -> str:
    value = getattr(cell, "value", None)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "是" if value else "否"
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else f"{value:%Y-%m-%d %H:%M}"
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (int, float)):
        if "%" in (getattr(cell, "number_format", "") or ""):
            return f"{value * 100:.15g}%"
        # 15 significant digits: what Excel shows, and 0.1+0.2 prints as 0.3
        return str(int(value)) if float(value).is_integer() else f"{value:.15g}"
    return str(value)


# --- PPTX -----------------------------------------------------------------------


@register(".pptx")
def load_pptx(path: Path) -> Iterator[Section]:
    pptx = _need("pptx", "python-pptx", "reading PPTX")
    check_package(path, "PPTX")
    presentation = pptx.Presentation(str(path))
    for number, slide in enumerate(presentation.slides, start=1):
        lines = _shape_lines(slide.shapes)
        if slide.has_notes_slide:
            frame = slide.notes_slide.notes_text_frame
            if frame is not None and frame.text.strip():
                lines.append("备注：" + frame.text.strip())
        yield Section("\n".join(lines), page=number)


def _reading_order(shapes: Iterable[Any]) -> list[Any]:
    return sorted(shapes, key=lambda s: (s.top or 0, s.left or 0))


def _shape_lines(shapes: Iterable[Any]) -> list[str]:
    lines: list[str] = []
    stack = list(reversed(_reading_order(shapes)))
    while stack:
        shape = stack.pop()
        if hasattr(shape, "shapes"):  # a group shape
            stack.extend(reversed(_reading_order(shape.shapes)))
        elif getattr(shape, "has_text_frame", False):
            lines.extend(p.text for p in shape.text_frame.paragraphs)
        elif getattr(shape, "has_table", False):
            for row in shape.table.rows:
                cells = [c.text.strip() for c in row.cells if not c.is_spanned]
                if any(cells):
                    lines.append(" | ".join(c for c in cells if c))
    return lines


# --- EPUB -----------------------------------------------------------------------

_OPF = "{http://www.idpf.org/2007/opf}"
_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_XENC = "{http://www.w3.org/2001/04/xmlenc#}"


@register(".epub")
def load_epub(path: Path) -> Iterator[Section]:
    check_package(path, "EPUB")
    with zipfile.ZipFile(path) as book:
        spine = epub_spine(book)
        if not spine:
            raise LoaderError("not a valid EPUB file (no reading order in its OPF)")
        _refuse_drm(book, spine)
        for number, name in enumerate(spine, start=1):
            data = read_member(book, name)
            if data is None:
                log.warning("%s: spine item %s is missing", path, name)
                continue
            yield Section(html_text(data.decode(html_encoding(data), errors="replace")), number)


def read_member(book: zipfile.ZipFile, name: str) -> bytes | None:
    try:
        info = book.getinfo(name)
    except KeyError:
        return None
    if info.file_size > MAX_PART_BYTES:
        raise LoaderError(f"{name} inside the file is too large ({info.file_size} bytes)")
    return book.read(info)


def epub_spine(book: zipfile.ZipFile) -> list[str]:
    """Zip member names of the spine documents, in reading order."""
    opf_name = _opf_name(book)
    data = read_member(book, opf_name) if opf_name else None
    if data is None:
        raise LoaderError("not a valid EPUB file (no package document .opf)")
    opf = safe_xml(data)
    base = posixpath.dirname(opf_name)
    manifest = {
        item.get("id"): posixpath.normpath(posixpath.join(base, unquote(item.get("href", ""))))
        for item in opf.iter(f"{_OPF}item")
        if item.get("href")
    }
    return [
        manifest[ref.get("idref")]
        for ref in opf.iter(f"{_OPF}itemref")
        if ref.get("idref") in manifest
    ]


def _opf_name(book: zipfile.ZipFile) -> str | None:
    container = read_member(book, "META-INF/container.xml")
    if container is not None:
        for rootfile in safe_xml(container).iter(f"{_CONTAINER}rootfile"):
            if rootfile.get("full-path"):
                return rootfile.get("full-path")
    # Sloppy writers omit container.xml; the first .opf is the package then.
    return next((n for n in book.namelist() if n.lower().endswith(".opf")), None)


def _refuse_drm(book: zipfile.ZipFile, spine: list[str]) -> None:
    data = read_member(book, "META-INF/encryption.xml")
    if data is None:
        return
    # Font obfuscation is also listed here; only encrypted chapters mean DRM.
    encrypted = {
        unquote(ref.get("URI", "")) for ref in safe_xml(data).iter(f"{_XENC}CipherReference")
    }
    if encrypted & set(spine):
        raise LoaderError("the EPUB is DRM-protected: only DRM-free books can be read")


# --- OCR: images and scanned PDF pages ---------------------------------------------

_engine: Any = None
_engine_lock = threading.Lock()


def ocr_unavailable() -> str | None:
    """Why OCR can't run now, or None when it can."""
    if not OCR_ENABLED:
        return OCR_OFF_REASON
    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        return OCR_MISSING_REASON
    return None


def pdf_ocr_unavailable() -> str | None:
    """Why scanned PDF pages can't be OCR'd now (they also need a rasteriser)."""
    reason = ocr_unavailable()
    if reason is None and importlib.util.find_spec("pypdfium2") is None:
        reason = OCR_PDF_MISSING_REASON
    return reason


def ocr_engine() -> Any:
    """The RapidOCR engine, created once: loading its models takes a second or two."""
    global _engine
    reason = ocr_unavailable()
    if reason == OCR_OFF_REASON:
        raise LoaderError(reason)
    with _engine_lock:
        if _engine is None:
            rapidocr = _need("rapidocr_onnxruntime", "rapidocr-onnxruntime", "OCR")
            _engine = rapidocr.RapidOCR()
    return _engine


@dataclass
class _Box:
    top: float
    bottom: float
    left: float
    right: float
    text: str

    @property
    def middle(self) -> float:
        return (self.top + self.bottom) / 2


def ocr_image(image: Any) -> str:
    """OCR a PIL image; lines top-to-bottom, left-to-right, a paragraph's lines joined."""
    image = image.convert("RGB")
    if image.width > OCR_MAX_SIDE:
        image = image.resize((OCR_MAX_SIDE, max(1, image.height * OCR_MAX_SIDE // image.width)))
    boxes = []
    for top, tile, (low, high) in _tiles(image):
        result, _ = ocr_engine()(tile)
        for points, text, _score in result or []:
            xs, ys = [p[0] for p in points], [p[1] + top for p in points]
            box = _Box(min(ys), max(ys), min(xs), max(xs), text.strip())
            if box.text and low <= box.middle < high:
                boxes.append(box)
    return "\n".join(_paragraphs(_rows(boxes)))


def _tiles(image: Any) -> Iterator[tuple[int, Any, tuple[float, float]]]:
    """Overlapping slices of a tall image (long phone screenshots are common).

    Shrinking a 1080x20000 screenshot to OCR_MAX_SIDE would make its text unreadable.
    Each line is kept from the one slice whose half of the overlap holds its middle.
    """
    height = image.height
    if height <= OCR_MAX_SIDE:
        yield 0, image, (float("-inf"), float("inf"))
        return
    step = OCR_MAX_SIDE - OCR_OVERLAP
    for top in range(0, height, step):
        bottom = min(top + OCR_MAX_SIDE, height)
        low = top + OCR_OVERLAP / 2 if top else float("-inf")
        high = bottom - OCR_OVERLAP / 2 if bottom < height else float("inf")
        yield top, image.crop((0, top, image.width, bottom)), (low, high)
        if bottom >= height:
            return


def _rows(boxes: Iterable[_Box]) -> list[_Box]:
    """Merge boxes whose vertical middles fall in the same text row."""
    rows: list[list[_Box]] = []
    for box in sorted(boxes, key=lambda b: b.middle):
        last = rows[-1] if rows else None
        if last and last[0].top <= box.middle <= last[0].bottom:
            last.append(box)
        else:
            rows.append([box])
    merged = []
    for row in rows:
        row.sort(key=lambda b: b.left)
        merged.append(
            _Box(
                min(b.top for b in row),
                max(b.bottom for b in row),
                row[0].left,
                row[-1].right,
                " ".join(b.text for b in row),
            )
        )
    return merged


def _paragraphs(rows: list[_Box]) -> list[str]:
    """A row that reaches the right margin and sits close to the next runs on into it."""
    if not rows:
        return []
    heights = sorted(r.bottom - r.top for r in rows)
    height = heights[len(heights) // 2]
    right = max(r.right for r in rows)
    out = [rows[0].text]
    for prev, row in zip(rows, rows[1:]):
        wrapped = prev.right >= right - 1.5 * height and row.top - prev.bottom < 0.6 * height
        if wrapped:
            out[-1] = _join(out[-1], row.text)
        else:
            out.append(row.text)
    return out


def _join(left: str, right: str) -> str:
    cjk = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
    if cjk.match(left[-1:]) or cjk.match(right[:1]):
        return left + right
    return f"{left} {right}"


@register(".png", ".jpg", ".jpeg")
def load_image(path: Path) -> Iterator[Section]:
    reason = ocr_unavailable()
    if reason:
        raise LoaderError(reason)
    pil = _need("PIL.Image", "pillow", "reading images")
    from PIL import ImageOps

    with path.open("rb") as fh:
        try:
            with pil.open(fh) as image:
                image.load()
                upright = ImageOps.exif_transpose(image)  # phone photos are stored rotated
        except (pil.DecompressionBombError, SyntaxError, OSError, ValueError) as exc:
            # Pillow reports truncated or corrupt image data as OSError.
            raise LoaderError(f"not a readable image ({exc})") from None
    yield Section(ocr_image(upright))


def ocr_pdf_page(path: Path, page_number: int) -> str:
    """Render one page (1-based) of a PDF and OCR it."""
    pdfium = _need("pypdfium2", "pypdfium2", "OCR of scanned PDFs")
    document = pdfium.PdfDocument(str(path))
    try:
        if not 1 <= page_number <= len(document):
            raise LoaderError(f"the PDF has no page {page_number}")
        page = document[page_number - 1]
        width, height = page.get_size()
        # 2x (144 dpi) reads 10pt Chinese well; cap huge pages to OCR_MAX_SIDE pixels.
        scale = min(2.0, OCR_MAX_SIDE / max(width, height, 1))
        image = page.render(scale=scale).to_pil()
    finally:
        document.close()
    return ocr_image(image)
