"""Write real PDF and DOCX files with Chinese text (for the samples and the tests).

PDFs use reportlab's built-in Adobe CID font STSong-Light, so no font file is
needed; the text layer is real and pdfminer reads it back.
"""

from __future__ import annotations

from pathlib import Path


def make_pdf(path: Path, pages: list[list[str]], title: str = "") -> Path:
    """One list of paragraphs per page."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import PageBreak, Paragraph, SimpleDocTemplate, Spacer

    if "STSong-Light" not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    body = ParagraphStyle("zh", fontName="STSong-Light", fontSize=11, leading=18, wordWrap="CJK")
    head = ParagraphStyle("zh-h", parent=body, fontSize=15, leading=24)
    story = []
    for number, paragraphs in enumerate(pages):
        if number:
            story.append(PageBreak())
        for i, text in enumerate(paragraphs):
            story.append(Paragraph(text, head if i == 0 and number == 0 and title else body))
            story.append(Spacer(1, 6))
    doc = SimpleDocTemplate(str(path), pagesize=A4, title=title, author="privategpt-zh")
    doc.build(story)
    return path


def make_docx(
    path: Path,
    paragraphs: list[str],
    table: list[list[str]] | None = None,
    heading: str | None = None,
) -> Path:
    """Paragraphs, then an optional table (first row: header)."""
    import docx

    document = docx.Document()
    if heading:
        document.add_heading(heading, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    document.save(str(path))
    return path
