"""Regenerate the sample documents in source_documents/ (they are committed).

python scripts/make_samples.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from docmaker import make_docx, make_pdf  # noqa: E402
from sample_texts import DAIRY, DAIRY_TITLE, PIG, PIG_TITLE, SHEEP, SHEEP_TITLE  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "source_documents"


def main() -> None:
    OUT.mkdir(exist_ok=True)
    pages = [[DAIRY_TITLE, *_section(*DAIRY[0])], *[_section(*s) for s in DAIRY[1:]]]
    make_pdf(OUT / f"{DAIRY_TITLE}.pdf", pages, title=DAIRY_TITLE)

    paragraphs = [line for s in PIG for line in _section(*s)]
    table = [
        ["猪群", "适宜温度(℃)", "相对湿度(%)"],
        ["哺乳仔猪", "32-35", "60-70"],
        ["保育猪", "24-28", "60-70"],
        ["育肥猪", "18-22", "60-70"],
    ]
    make_docx(OUT / f"{PIG_TITLE}.docx", paragraphs, table, heading=PIG_TITLE)

    text = "\r\n".join([SHEEP_TITLE, "", *["\r\n".join(_section(*s)) + "\r\n" for s in SHEEP]])
    (OUT / f"{SHEEP_TITLE}.txt").write_bytes(text.encode("gbk"))  # GBK on purpose: a real case
    print(f"wrote samples to {OUT}")


def _section(heading: str, paragraphs: list[str]) -> list[str]:
    return [heading, *paragraphs]


if __name__ == "__main__":
    main()
