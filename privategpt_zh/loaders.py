"""Turn a file into text sections (a PDF page, a block of a text file).

Each loader yields :class:`Section` objects so that a huge text file streams
through ingest without being held in memory whole. A file that cannot be read
raises :class:`LoaderError` with a reason a user understands.
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .errors import LoaderError, MissingDependencyError

log = logging.getLogger(__name__)

BLOCK_CHARS = 256_000  # text files are read in blocks of about this many characters


@dataclass(frozen=True)
class Section:
    text: str
    page: int | None = None  # 1-based page number where the format has pages


Loader = Callable[[Path], Iterator[Section]]
LOADERS: dict[str, Loader] = {}


def register(*suffixes: str) -> Callable[[Loader], Loader]:
    def wrap(fn: Loader) -> Loader:
        for suffix in suffixes:
            LOADERS[suffix] = fn
        return fn

    return wrap


def load(path: Path) -> Iterator[Section]:
    """Yield the text sections of ``path``; raise LoaderError if it can't be read."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise LoaderError(f"unsupported file type {path.suffix!r}")
    try:
        for section in loader(path):
            text = clean_text(section.text)
            if text:
                yield Section(text, section.page)
    except LoaderError:
        raise
    except MissingDependencyError as exc:
        # Only the files of this format fail; ingest reports them and goes on.
        raise LoaderError(str(exc)) from exc
    except RecursionError:
        raise LoaderError("the file is nested too deeply to read (corrupt?)") from None
    except PermissionError:
        raise LoaderError("permission denied: make the file readable") from None
    except (OSError, MemoryError) as exc:
        raise LoaderError(f"could not read the file ({exc})") from exc
    except Exception as exc:  # parsers raise anything on corrupt input
        raise LoaderError(f"not a valid {path.suffix.lstrip('.').upper()} file ({exc})") from exc


# --- text ---------------------------------------------------------------------

_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]


def detect_encoding(sample: bytes) -> str:
    """Guess the encoding of a text file from its first bytes. Never assumes UTF-8."""
    for bom, name in _BOMS:
        if sample.startswith(bom):
            return name
    utf16 = _utf16_without_bom(sample)
    if utf16:
        return utf16
    if _is_utf8(sample):
        return "utf-8"
    return _guess_legacy(sample)


def _utf16_without_bom(sample: bytes) -> str | None:
    """ASCII-heavy UTF-16 shows NULs in every other byte."""
    if len(sample) < 4:
        return None
    even, odd = sample[0::2], sample[1::2]
    zeros_even, zeros_odd = even.count(0) / len(even), odd.count(0) / len(odd)
    if zeros_odd > 0.2 and zeros_even < 0.05:
        return "utf-16-le"
    if zeros_even > 0.2 and zeros_odd < 0.05:
        return "utf-16-be"
    return _cjk_utf16(sample)


def _cjk_utf16(sample: bytes) -> str | None:
    """Chinese UTF-16 has no NULs; it decodes to mostly CJK in exactly one byte order."""
    if len(sample) % 2:
        sample = sample[:-1]
    best = None
    for name in ("utf-16-le", "utf-16-be"):
        try:
            text = sample.decode(name)
        except UnicodeDecodeError:
            continue
        if text and _plausible_ratio(text) > 0.9:
            if best:
                return None  # both orders look fine: not UTF-16 at all, most likely
            best = name
    return best


def _plausible_ratio(text: str) -> float:
    good = sum(
        1
        for ch in text
        if "\u4e00" <= ch <= "\u9fff"
        or ch.isascii()
        or "\u3000" <= ch <= "\u303f"
        or "\uff00" <= ch <= "\uffef"
    )
    return good / len(text)


def _is_utf8(sample: bytes) -> bool:
    try:
        sample.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        # The sample may end inside a multi-byte character.
        return exc.start >= len(sample) - 3 and exc.reason == "unexpected end of data"


def _guess_legacy(sample: bytes) -> str:
    from charset_normalizer import from_bytes

    best = from_bytes(sample, cp_isolation=["gb18030", "big5", "utf_16", "shift_jis", "cp1252"])
    guess = best.best()
    name = guess.encoding if guess else "gb18030"
    # GBK and GB2312 are subsets of GB18030; decoding with the superset loses nothing.
    return "gb18030" if name in {"gb2312", "gbk", "gb18030", "cp936"} else name


@register(".txt", ".md", ".markdown", ".text")
def load_text(path: Path) -> Iterator[Section]:
    with path.open("rb") as fh:
        sample = fh.read(65536)
        encoding = detect_encoding(sample)
        if _looks_binary(sample.decode(encoding, errors="replace")):
            raise LoaderError(f"looks like a binary file, not {path.suffix} text")
        log.debug("%s: encoding %s", path, encoding)
        fh.seek(0)
        decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
        yield from _text_blocks(fh, decoder)


def _looks_binary(text: str) -> bool:
    """Text has few control characters and few undecodable bytes."""
    if not text:
        return False
    bad = sum(1 for ch in text if ch == "\ufffd" or (ch < " " and ch not in "\t\n\r\f\v"))
    return bad / len(text) > 0.05


def _text_blocks(fh, decoder: codecs.IncrementalDecoder) -> Iterator[Section]:
    pending = ""
    while raw := fh.read(BLOCK_CHARS):
        pending += decoder.decode(raw)
        if len(pending) >= BLOCK_CHARS:
            # cut at the last line end; a file without any is cut at the block size
            cut = pending.rfind("\n", 0, BLOCK_CHARS * 2) + 1 or BLOCK_CHARS
            yield Section(pending[:cut])
            pending = pending[cut:]
    pending += decoder.decode(b"", final=True)
    if pending:
        yield Section(pending)


# --- PDF ----------------------------------------------------------------------


OCR_MIN_CHARS = 20  # a page with less text than this but with an image is a scan


@register(".pdf")
def load_pdf(path: Path) -> Iterator[Section]:
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LAParams, LTTextContainer
    from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect

    found_text = skipped_scans = False
    try:
        # A wider line margin keeps a paragraph's lines in one text box.
        pages = extract_pages(str(path), laparams=LAParams(line_margin=1.0))
        for number, layout in enumerate(pages, start=1):
            boxes = [el.get_text() for el in layout if isinstance(el, LTTextContainer)]
            text = "\n\n".join(unwrap_cjk(box) for box in boxes)
            if len("".join(text.split())) < OCR_MIN_CHARS and _has_image(layout):
                ocr_text = _ocr_page(path, number)
                skipped_scans = skipped_scans or ocr_text is None
                text = ocr_text or text
            found_text = found_text or bool(text.strip())
            yield Section(text, page=number)
    except (PDFPasswordIncorrect, PDFEncryptionError):
        raise LoaderError("the PDF is password-protected: save a copy without a password") from None
    if skipped_scans and not found_text:
        raise _no_text_layer()


def _has_image(layout) -> bool:
    from pdfminer.layout import LTContainer, LTImage

    stack = [layout]  # figures nest; walk them without recursion
    while stack:
        item = stack.pop()
        if isinstance(item, LTImage):
            return True
        if isinstance(item, LTContainer):
            stack.extend(item)
    return False


def _ocr_page(path: Path, number: int) -> str | None:
    """OCR text of a scanned page, or None when OCR is off or not installed."""
    if formats.pdf_ocr_unavailable():
        return None
    try:
        return formats.ocr_pdf_page(path, number)
    except Exception as exc:  # one unrenderable page must not lose the rest of the PDF
        log.warning("%s: OCR of page %d failed (%s)", path, number, exc)
        return ""


def _no_text_layer() -> LoaderError:
    reason = formats.pdf_ocr_unavailable()
    if reason in (formats.OCR_OFF_REASON, formats.OCR_MISSING_REASON):
        reason = "turn on OCR_ENABLED or install rapidocr-onnxruntime"
    return LoaderError(f"no text layer (a scanned PDF): {reason}")


# --- DOCX ---------------------------------------------------------------------


@register(".docx")
def load_docx(path: Path) -> Iterator[Section]:
    import docx

    formats.check_package(path, "DOCX")
    document = docx.Document(str(path))
    yield Section("\n".join(_docx_header_footer_lines(document, "header")))
    yield Section("\n".join(_block_lines(document.element.body, document)))
    yield Section("\n".join(_docx_header_footer_lines(document, "footer")))
    yield Section("\n".join(_docx_note_lines(document)))


def _block_lines(container, parent) -> list[str]:
    """Paragraphs and tables in document order; content controls (w:sdt) opened up."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    lines: list[str] = []
    stack = list(reversed(list(container.iterchildren())))
    while stack:
        child = stack.pop()
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            lines.append(Paragraph(child, parent).text)
        elif tag == "tbl":
            lines.extend(_table_lines(Table(child, parent)))
        elif tag in ("sdt", "sdtContent", "customXml"):
            stack.extend(reversed(list(child.iterchildren())))
    return lines


def _docx_header_footer_lines(document, kind: str) -> list[str]:
    """Each distinct header (or footer) once, however many sections repeat it."""
    seen: set[str] = set()
    lines: list[str] = []
    for section in document.sections:
        for variant in (f"first_page_{kind}", kind, f"even_page_{kind}"):
            part = getattr(section, variant)
            # A linked one has no content of its own; reading it would create one.
            if part.is_linked_to_previous:
                continue
            text = "\n".join(_block_lines(part._element, part)).strip()
            if text and text not in seen:
                seen.add(text)
                lines.append(text)
    return lines


_NOTE_PARTS = {
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/footnotes": "footnote",
    "http://schemas.openxmlformats.org/officeDocument/2006/relationships/endnotes": "endnote",
}
_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _docx_note_lines(document) -> list[str]:
    """Footnotes and endnotes: python-docx doesn't read them, so parse their parts."""
    lines: list[str] = []
    for rel in document.part.rels.values():
        kind = _NOTE_PARTS.get(rel.reltype)
        if kind is None or rel.is_external:
            continue
        root = formats.safe_xml(rel.target_part.blob)
        for note in root.iter(f"{_W}{kind}"):
            if note.get(f"{_W}type") not in (None, "normal"):
                continue  # separator and continuation marks
            paragraphs = [
                "".join(t.text or "" for t in p.iter(f"{_W}t")) for p in note.iter(f"{_W}p")
            ]
            text = " ".join(p.strip() for p in paragraphs if p.strip())
            if text:
                lines.append(f"[{note.get(f'{_W}id')}] {text}")
    return lines


def _table_lines(table) -> list[str]:
    lines = []
    for row in table.rows:
        cells = []
        for cell in row.cells:
            text = cell.text.strip()
            if text and (not cells or cells[-1] != text):  # merged cells repeat
                cells.append(text)
        if cells:
            lines.append(" | ".join(cells))
    return lines


# --- clean-up -----------------------------------------------------------------

_CJK = r"\u3000-\u303f\u4e00-\u9fff\uff00-\uffef"
# A PDF line that ends inside a sentence (ideograph, comma, digit) and runs on in Chinese.
_BREAK_IN_CJK = re.compile(
    r"[\u4e00-\u9fff，、“‘（《0-9A-Za-z%]\n[\u4e00-\u9fff，。、；：！？”’）》0-9]"
)
_SPACE_IN_CJK = re.compile(rf"(?<=[{_CJK}])[ \t]+(?=[{_CJK}])")
_BLANK_LINES = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)+")
_SPACES = re.compile(r"[ \t\u00a0]{2,}")


def clean_text(text: str) -> str:
    """Normalise line ends and drop the spaces layout puts between Chinese characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x0c", "\n")
    text = _SPACE_IN_CJK.sub("", text)
    text = _BLANK_LINES.sub("\n\n", text)
    return _SPACES.sub(" ", text).strip()


def unwrap_cjk(box: str) -> str:
    """Rejoin the lines of one PDF text box that the layout wrapped mid-sentence.

    Only a full-width line is a wrapped one: a short line (a heading, the end of a
    paragraph) keeps its line break.
    """
    lines = [ln.rstrip() for ln in box.strip("\n").split("\n")]
    width = max((len(ln) for ln in lines), default=0)
    out = lines[:1]
    for line in lines[1:]:
        prev = out[-1]
        if (
            width >= 15
            and len(prev) >= 0.8 * width
            and _BREAK_IN_CJK.fullmatch(prev[-1:] + "\n" + line[:1])
        ):
            out[-1] = prev + line.lstrip()
        else:
            out.append(line)
    return "\n".join(out)


from . import formats  # noqa: E402,F401  (registers more loaders)
