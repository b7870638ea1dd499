"""Fuzz the loaders: python bench/fuzz_loaders.py [--seconds 60] [--seed N] [--formats pdf,docx]

Writes one real seed file per format, then until time is up throws mutated copies
(bit flips, truncation, splicing, random insertions; for zip-based formats also a
mutated XML member inside an intact zip) at ``loaders.load`` and reads every section.
Any exception that is not a PrivateGPTError, or an input that runs past the per-input
time limit, is a bug: the input and its traceback go to bench/out/fuzz/. The parser
exceptions that loaders.load had to wrap into a LoaderError are counted too. One JSON
line is printed last.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import logging
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
import warnings
import zipfile
from collections import Counter
from pathlib import Path

from _common import ROOT, emit

sys.path.insert(0, str(ROOT / "scripts"))

from docmaker import make_docx, make_pdf  # noqa: E402

from privategpt_zh import formats, loaders  # noqa: E402
from privategpt_zh.errors import PrivateGPTError  # noqa: E402

OUT = ROOT / "bench" / "out" / "fuzz"
ZIP_FORMATS = {"docx", "xlsx", "pptx", "epub"}
# OCR takes seconds per image, so images get a small share of the inputs.
WEIGHTS = {"pdf": 3, "docx": 3, "txt": 2, "html": 2, "csv": 2, "xlsx": 3, "pptx": 3, "epub": 3}
WEIGHTS["png"] = 1


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that loaders.load can't swallow it."""


def make_seeds(folder: Path) -> dict[str, bytes]:
    texts = ["奶牛乳房炎的预防", "挤奶前用药浴液药浴乳头，停留30秒后擦干。", "育肥猪舍温度18-22℃"]
    paths = {
        "pdf": make_pdf(folder / "s.pdf", [texts[:2], texts[2:]]),
        "docx": make_docx(folder / "s.docx", texts, [["猪群", "温度"], ["育肥猪", "18-22℃"]]),
        "xlsx": _xlsx(folder / "s.xlsx"),
        "pptx": _pptx(folder / "s.pptx", texts),
        "epub": _epub(folder / "s.epub", texts),
        "png": _png(folder / "s.png"),
    }
    seeds = {name: path.read_bytes() for name, path in paths.items()}
    seeds["txt"] = "\n".join(texts * 20).encode("gbk")
    seeds["html"] = (
        '<html><head><meta charset="gbk"><script>x=1</script></head><body><h1>标题</h1>'
        "<p>" + "</p><p>".join(texts) + "</p><table><tr><td>猪群</td><td>温度</td></tr></table>"
        "<ul><li>一</li><li>二</li></ul></body></html>"
    ).encode("gbk")
    buf = io.StringIO()
    csv.writer(buf).writerows(
        [["姓名", "投资金额", "日期"]] + [["张三", "50万元", "2023-05-01"]] * 5
    )
    seeds["csv"] = buf.getvalue().encode("gbk")
    return seeds


def _xlsx(path: Path) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["姓名", "投资金额", "日期"])
    for i in range(5):
        sheet.append([f"张{i}", i * 10000, "2023-05-01"])
    sheet.merge_cells("D1:E1")
    book.save(path)
    return path


def _pptx(path: Path, texts: list[str]) -> Path:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = texts[0]
    slide.placeholders[1].text = texts[1]
    slide.notes_slide.notes_text_frame.text = texts[2]
    table = slide.shapes.add_table(2, 2, Inches(1), Inches(4), Inches(3), Inches(1)).table
    table.cell(1, 1).text = "18-22℃"
    deck.save(path)
    return path


def _epub(path: Path, texts: list[str]) -> Path:
    opf = (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
        '<manifest><item id="a" href="a.xhtml" media-type="application/xhtml+xml"/>'
        '<item id="b" href="b.xhtml" media-type="application/xhtml+xml"/></manifest>'
        '<spine><itemref idref="a"/><itemref idref="b"/></spine></package>'
    )
    container = (
        '<?xml version="1.0"?><container xmlns="urn:oasis:names:tc:opendocument:xmlns:container"'
        ' version="1.0"><rootfiles><rootfile full-path="OEBPS/c.opf"/></rootfiles></container>'
    )
    with zipfile.ZipFile(path, "w") as book:
        book.writestr("mimetype", "application/epub+zip")
        book.writestr("META-INF/container.xml", container)
        book.writestr("OEBPS/c.opf", opf)
        for name, text in (("a", texts[0]), ("b", texts[1])):
            book.writestr(f"OEBPS/{name}.xhtml", f"<html><body><p>{text}</p></body></html>")
    return path


def _png(path: Path) -> Path:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (240, 60), "white")
    ImageDraw.Draw(image).text((10, 15), "TOTAL 4862", fill="black", font=ImageFont.load_default())
    image.save(path)
    return path


# --- mutation -------------------------------------------------------------------


def mutate(data: bytes, other: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice([1, 1, 2, 3, 8])):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip bits
            i = min(pos, len(buf) - 1)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # truncate
            del buf[pos:]
        elif op == 2:  # insert random or "interesting" bytes
            junk = rng.choice([rng.randbytes(rng.randint(1, 64)), b"\xff" * 8, b"\x00" * 8])
            buf[pos:pos] = junk
        elif op == 3 and other:  # splice in a piece of another seed
            start = rng.randrange(len(other))
            buf[pos:pos] = other[start : start + rng.randint(1, 512)]
        elif op == 4 and buf:  # repeat a slice (deep nesting, huge counts)
            end = min(len(buf), pos + rng.randint(1, 32))
            buf[pos:pos] = buf[pos:end] * rng.randint(2, 200)
        elif op == 5 and buf:  # change a digit: lengths, offsets, counts
            digits = [i for i, b in enumerate(buf[pos : pos + 200], pos) if 48 <= b <= 57]
            if digits:
                buf[rng.choice(digits)] = rng.choice(b"0123456789")
    return bytes(buf)


def mutate_member(data: bytes, other: bytes, rng: random.Random) -> bytes:
    """Keep the zip valid and break one of its parts, so the XML parsers get the input."""
    with zipfile.ZipFile(io.BytesIO(data)) as old:
        parts = {info.filename: old.read(info) for info in old.infolist()}
    name = rng.choice(sorted(parts))
    parts[name] = mutate(parts[name], other, rng)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as new:
        for member, content in parts.items():
            new.writestr(member, content)
    return out.getvalue()


# --- running ----------------------------------------------------------------------


def _on_alarm(*_: object) -> None:
    raise Hang


def run_one(path: Path, limit: int) -> None:
    signal.alarm(limit)
    try:
        for _section in loaders.load(path):
            pass
    finally:
        signal.alarm(0)


def record(kind: str, data: bytes, exc: BaseException, seen: set[str]) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
    signature = f"{type(exc).__name__} @ {where}"
    if signature not in seen:
        seen.add(signature)
        digest = hashlib.sha1(data).hexdigest()[:12]
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"{type(exc).__name__}-{digest}.{kind}").write_bytes(data)
        (OUT / f"{type(exc).__name__}-{digest}.txt").write_text(
            "".join(traceback.format_exception(exc)), encoding="utf-8"
        )
    return signature


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-input", type=int, default=20, help="seconds before a hang")
    parser.add_argument("--max-memory-mb", type=int, default=6144)
    parser.add_argument("--formats", default=",".join(WEIGHTS))
    args = parser.parse_args()
    # A parser that asks for gigabytes gets a MemoryError instead of taking the machine.
    limit = args.max_memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGALRM, _on_alarm)
    formats.OCR_ENABLED = True
    logging.disable(logging.WARNING)  # parsers log every corruption they meet
    warnings.simplefilter("ignore")
    rng = random.Random(args.seed)
    kinds = args.formats.split(",")
    work = Path(tempfile.mkdtemp(prefix="fuzz-"))
    seeds = make_seeds(work)
    by_format: Counter[str] = Counter()
    crashes: Counter[str] = Counter()
    wrapped: Counter[str] = Counter()
    seen: set[str] = set()
    started = time.monotonic()
    while time.monotonic() - started < args.seconds:
        kind = rng.choices(kinds, [WEIGHTS[k] for k in kinds])[0]
        other = seeds[rng.choice(kinds)]
        if kind in ZIP_FORMATS and rng.random() < 0.6:
            data = mutate_member(seeds[kind], other, rng)
        else:
            data = mutate(seeds[kind], other, rng)
        path = work / f"input.{kind}"
        path.write_bytes(data)
        by_format[kind] += 1
        try:
            run_one(path, args.per_input)
        except PrivateGPTError as exc:
            # Handled, but a parser's internal error under the message is worth knowing.
            cause = exc.__cause__
            if cause is not None and not isinstance(cause, PrivateGPTError):
                wrapped[f"{kind}:{type(cause).__name__}"] += 1
        except (Exception, Hang) as exc:  # what we are looking for
            crashes[record(kind, data, exc, seen)] += 1
    emit(
        {
            "seconds": round(time.monotonic() - started, 1),
            "inputs": sum(by_format.values()),
            "by_format": dict(sorted(by_format.items())),
            "crashes": sum(crashes.values()),
            "crash_types": sorted(crashes),
            "wrapped_parser_errors": dict(wrapped.most_common(12)),
        }
    )


if __name__ == "__main__":
    main()
