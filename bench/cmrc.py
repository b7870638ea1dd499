"""Reading the CMRC 2018 (SQuAD-style) files: passages out as documents, questions in."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

_UNSAFE = re.compile(r'[\\/:*?"<>|\s]+')


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    answers: tuple[str, ...]
    source: str  # the file its passage was written to


def load(path: Path) -> tuple[dict[str, str], list[Question]]:
    """Return {file name: passage text} and the questions, each tied to its file."""
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    passages: dict[str, str] = {}
    questions: list[Question] = []
    for n, article in enumerate(data):
        for m, para in enumerate(article["paragraphs"]):
            name = f"{n:04d}_{m}_{_UNSAFE.sub('_', article['title'])[:40]}.txt"
            passages[name] = f"{article['title']}\n{para['context']}"
            for qa in para["qas"]:
                answers = tuple(a["text"] for a in qa["answers"] if a["text"].strip())
                questions.append(Question(qa["id"], qa["question"], answers, name))
    return passages, questions


def write_passages(passages: dict[str, str], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in passages.items():
        (directory / name).write_text(text, encoding="utf-8")


_PUNCT = re.compile(r"[\s\u3000-\u303f\uff00-\uffef!-/:-@\[-`{-~—…‘’“”·《》「」『』【】]+")


def normalise(text: str) -> str:
    """CMRC's normalisation: lower case, no punctuation, no spaces."""
    return _PUNCT.sub("", text.lower())


def f1(prediction: str, gold: str) -> float:
    """Character-level F1 over normalised text (CMRC 2018's metric)."""
    p, g = list(normalise(prediction)), list(normalise(gold))
    if not p or not g:
        return 0.0
    common = 0
    remaining = list(g)
    for ch in p:
        if ch in remaining:
            remaining.remove(ch)
            common += 1
    if common == 0:
        return 0.0
    precision, recall = common / len(p), common / len(g)
    return 2 * precision * recall / (precision + recall)
