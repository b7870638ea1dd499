"""Split text into overlapping chunks at Chinese (and Western) sentence boundaries."""

from __future__ import annotations

from langchain_text_splitters import RecursiveCharacterTextSplitter

# Tried in order: paragraphs, lines, sentence ends (with a closing quote kept on the
# sentence), clause marks, then spaces and single characters as a last resort.
SEPARATORS = [
    r"\n\n",
    r"\n",
    r"[。！？!?…][”’」』）)]*",
    r"\.(?=\s)",
    r"[；;]",
    r"[，,、：:]",
    r"\s",
    r"",
]


class ChineseTextSplitter:
    def __init__(self, chunk_size: int, chunk_overlap: int) -> None:
        self._splitter = RecursiveCharacterTextSplitter(
            separators=SEPARATORS,
            is_separator_regex=True,
            keep_separator="end",
            chunk_size=chunk_size,
            chunk_overlap=chunk_overlap,
            strip_whitespace=True,
        )

    def split(self, text: str) -> list[str]:
        return [c for c in self._splitter.split_text(text) if c.strip()]
