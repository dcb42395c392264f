"""Evaluation datasets: our JSONL format, validated line by line, and the SQuAD 2.0 adapter."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rag.dates import DateError, require_date
from rag.types import RagError


class DatasetError(RagError):
    """A dataset file is missing, malformed or empty; the message names the file and line."""


class QAItem(BaseModel):
    """One evaluation question, as one line of a JSONL dataset."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    id: str = Field(min_length=1)
    question: str = Field(min_length=1)
    answers: tuple[str, ...] = Field(description="Acceptable short answers; any one counts.")
    answerable: bool
    evidence: tuple[str, ...] = Field(description="Substrings of the source text that support the answer.")
    history: tuple[tuple[str, str], ...] = Field(default=(), description="Earlier (question, answer) turns.")
    as_of: str | None = Field(default=None, description="Ask as of this date, YYYY-MM-DD (documents after it unseen).")

    @property
    def as_of_date(self) -> date | None:
        """as_of as a date (checked when the line is read)."""
        return require_date(self.as_of, name="as_of") if self.as_of else None

    @model_validator(mode="after")
    def _consistent(self) -> QAItem:
        if not self.question.strip():
            raise ValueError("question is blank")
        if self.answerable and not any(a.strip() for a in self.answers):
            raise ValueError("an answerable question needs at least one non-blank answer")
        if not self.answerable and (self.answers or self.evidence):
            raise ValueError("an unanswerable question must have empty answers and evidence")
        if self.as_of is not None:
            try:
                self.as_of_date  # noqa: B018 - a malformed date fails on its line, before any work
            except DateError as exc:
                raise ValueError(str(exc)) from exc
        return self


def _first_error(exc: ValidationError) -> str:
    """One line from pydantic's report: where in the object, and what is wrong."""
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    message = error["msg"]
    if error["type"] == "json_invalid":
        return f"not valid JSON ({error.get('ctx', {}).get('error', message)})"
    return f"field '{where}': {message}" if where else message


def load_jsonl(path: Path) -> list[QAItem]:
    """Read and validate every line before any work is done; DatasetError names the first bad line."""
    try:
        lines = path.read_text(encoding="utf-8").split("\n")  # not splitlines(): JSON may hold a raw U+2028
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read dataset {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    items: list[QAItem] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = QAItem.model_validate_json(line)
        except ValidationError as exc:
            raise DatasetError(f"{path}:{number}: {_first_error(exc)}") from exc
        if item.id in seen:
            raise DatasetError(f"{path}:{number}: duplicate id '{item.id}' (first on line {seen[item.id]})")
        seen[item.id] = number
        items.append(item)
    if not items:
        raise DatasetError(f"{path}: no questions in the dataset")
    return items


@dataclass(frozen=True)
class Paragraph:
    """One SQuAD context paragraph, indexed as its own document."""

    article: int
    number: int
    title: str
    text: str

    @property
    def file_name(self) -> str:
        """A stable file name, so a second run finds the same sources."""
        return f"{self.article:03d}-{self.number:03d}.txt"


def load_squad2(path: Path, *, sample: int | None, seed: int) -> tuple[list[Paragraph], list[QAItem]]:
    """All paragraphs of a SQuAD 2.0 file, and a seeded sample of its questions (all when sample is None)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        articles = data["data"]
        paragraphs: list[Paragraph] = []
        items: list[QAItem] = []
        for a, article in enumerate(articles):
            title = str(article["title"]).replace("_", " ")
            for p, para in enumerate(article["paragraphs"]):
                paragraphs.append(Paragraph(a, p, title, para["context"]))
                for qa in para["qas"]:
                    answerable = not qa.get("is_impossible", False)
                    # Several annotators often give the same span; keep each distinct answer once.
                    answers = tuple(dict.fromkeys(ans["text"] for ans in qa["answers"])) if answerable else ()
                    items.append(
                        QAItem(
                            id=str(qa["id"]),
                            question=qa["question"],
                            answers=answers,
                            answerable=answerable,
                            evidence=(para["context"],) if answerable else (),
                        )
                    )
    except OSError as exc:
        raise DatasetError(f"cannot read SQuAD file {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from exc
    except (KeyError, TypeError, ValidationError) as exc:
        raise DatasetError(f"{path}: not in SQuAD 2.0 format ({type(exc).__name__}: {exc})".splitlines()[0]) from exc
    if not items:
        raise DatasetError(f"{path}: no questions in the SQuAD file")
    if sample is not None and sample < len(items):
        # Keep the file's order within the sample: reports then read article by article.
        chosen = sorted(random.Random(seed).sample(range(len(items)), sample))
        items = [items[i] for i in chosen]
    return paragraphs, items
