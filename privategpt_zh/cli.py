"""The command line: one typer app with two commands, ``ingest`` and ``ask``.

This is the only module that prints. Core errors arrive as PrivateGPTError and
leave as one red line on stderr plus an exit code; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import click
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .offline import go_offline

go_offline()  # before anything imports chromadb or huggingface libraries

from .config import Settings, load_settings  # noqa: E402
from .errors import PrivateGPTError, UsageError  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=False, help="Offline document Q&A.")
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
log = logging.getLogger("privategpt_zh")

DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")]
EnvOpt = Annotated[
    Optional[Path], typer.Option("--env-file", help="Settings file.", show_default=".env")
]


def handle_errors(fn):
    """Turn core exceptions into one red line and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug", False)
        _setup_logging(debug)
        try:
            return fn(*args, **kwargs)
        except PrivateGPTError as exc:
            if debug:
                err.print_exception()
            err.print(f"[bold red]Error:[/] {escape(str(exc))}")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[yellow]Interrupted.[/]")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, click.ClickException):
            raise  # exit codes and usage errors already chosen on purpose
        except Exception as exc:  # a bug of ours: still one line, the traceback with --debug
            if debug:
                err.print_exception()
            err.print(f"[bold red]Unexpected error:[/] {escape(repr(exc))} (run with --debug)")
            raise typer.Exit(1) from None

    return wrapper


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not debug:
        for noisy in ("chromadb", "sentence_transformers", "httpx", "jieba"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        # One-time set-up steps take 5-15 s; without a word the first run looks stuck.
        for once in ("privategpt_zh.models", "privategpt_zh.onnx_embedder"):
            logging.getLogger(once).setLevel(logging.INFO)


def settings_from(env_file: Path | None, **flags) -> Settings:
    if env_file is not None and not env_file.is_file():
        raise UsageError(f"settings file {env_file} does not exist")
    return load_settings(env_file if env_file is not None else ".env", **flags)


# --- ingest ---------------------------------------------------------------------


@app.command("ingest")
@handle_errors
def ingest_cmd(
    status: Annotated[bool, typer.Option("--status", help="Show what the store holds.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object on stdout (with --status too).")
    ] = False,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Start the store afresh.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be done; change nothing.")
    ] = False,
    source: Annotated[Optional[Path], typer.Option("--source", help="Folder to read.")] = None,
    db: Annotated[Optional[Path], typer.Option("--db", help="Store folder.")] = None,
    env_file: EnvOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Read SOURCE_DIRECTORY into the store; only changed files are redone."""
    settings = settings_from(env_file, source_directory=source, persist_directory=db)
    if status:
        _print_status(settings, as_json)
        return
    from .ingest import Ingestor

    ingestor = Ingestor(settings)
    report = ingestor.run(progress=_TqdmProgress(), rebuild=rebuild, dry_run=dry_run)
    if as_json:
        print(json.dumps(_report_json(report), ensure_ascii=False))
    else:
        _print_report(report)
    if report.failed and not dry_run:
        raise typer.Exit(5)


class _TqdmProgress:
    def __init__(self) -> None:
        self.bar = None

    def start(self, total_files: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total_files, unit="file", desc="ingest", file=sys.stderr, leave=False)

    def file_done(self, result) -> None:
        self.bar.set_postfix_str(result.source[-30:], refresh=False)
        self.bar.update(1)
        if self.bar.n >= self.bar.total:
            self.bar.close()


def _print_report(report) -> None:
    colours = {
        "added": "green",
        "updated": "green",
        "unchanged": "dim",
        "removed": "yellow",
        "failed": "red",
        "skipped": "yellow",
        "to add": "green",
        "to update": "green",
        "to remove": "yellow",
    }
    title = "Plan (dry run: nothing was changed)" if report.dry_run else "Ingest"
    table = Table(title=title, show_lines=False)
    for column in ("file", "result", "chunks", "reason"):
        table.add_column(column)
    quiet = {"unchanged", "added", "updated"} if len(report.results) > 30 else set()
    for r in report.results:
        if r.status in quiet:
            continue  # a big folder: list only what needs a look; the counts say the rest
        colour = colours.get(r.status, "")
        table.add_row(
            escape(r.source), f"[{colour}]{r.status}[/]", str(r.chunks or ""), escape(r.reason)
        )
    err.print(table)
    counts = ", ".join(f"{report.count(s)} {s}" for s in colours if report.count(s)) or "no files"
    err.print(f"{counts} in {report.seconds:.1f} s")


def _report_json(report) -> dict:
    return {
        "dry_run": report.dry_run,
        "seconds": round(report.seconds, 3),
        "files": [
            {"file": r.source, "result": r.status, "chunks": r.chunks, "reason": r.reason}
            for r in report.results
        ],
    }


def _print_status(settings: Settings, as_json: bool) -> None:
    from .store import Store

    store = Store(settings.persist_directory)
    status = store.status()
    store.close()
    if as_json:
        print(json.dumps(status, ensure_ascii=False))
        return
    table = Table(title=f"{status['documents']} documents, {status['chunks']} chunks")
    for column in ("file", "chunks", "ingested"):
        table.add_column(column)
    for f in status["files"]:
        table.add_row(escape(f["source"]), str(f["chunks"]), f["ingested_at"])
    out.print(table)


# --- ask ------------------------------------------------------------------------


@app.command("ask")
@handle_errors
def ask_cmd(
    question: Annotated[
        Optional[str],
        typer.Argument(help="The question; '-' reads it from stdin; none starts the REPL."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    hide_sources: Annotated[
        bool, typer.Option("--hide-sources", help="Don't print sources.")
    ] = False,
    k: Annotated[
        Optional[int], typer.Option("--k", help="Chunks to retrieve (TARGET_SOURCE_CHUNKS).")
    ] = None,
    mode: Annotated[Optional[str], typer.Option("--mode", help="hybrid, dense or lexical.")] = None,
    model: Annotated[
        Optional[Path], typer.Option("--model", help="GGUF file (MODEL_PATH).")
    ] = None,
    temperature: Annotated[Optional[float], typer.Option(help="Sampling temperature.")] = None,
    top_p: Annotated[Optional[float], typer.Option(help="Nucleus sampling threshold.")] = None,
    top_k: Annotated[Optional[int], typer.Option(help="Top-k sampling.")] = None,
    repeat_penalty: Annotated[Optional[float], typer.Option(help="Repeat penalty.")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="Longest answer in tokens.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Sampling seed (-1: random).")] = None,
    db: Annotated[Optional[Path], typer.Option("--db", help="Store folder.")] = None,
    env_file: EnvOpt = None,
    debug: DebugOpt = False,
) -> None:
    """Answer a question from the ingested documents (no question: interactive)."""
    settings = settings_from(
        env_file,
        target_source_chunks=k,
        retrieval_mode=mode,
        model_path=model,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        repeat_penalty=repeat_penalty,
        max_new_tokens=max_new_tokens,
        seed=seed,
        persist_directory=db,
    )
    from .qa import build_qa

    if question == "-":
        question = sys.stdin.read()
    if question is not None and not question.strip():
        raise UsageError("the question is empty")
    qa = build_qa(settings)
    if question is None:
        from .repl import Repl

        Repl(qa, settings.history_turns).run()
        return
    _one_shot(qa, question, as_json, hide_sources)


def _one_shot(qa, question: str, as_json: bool, hide_sources: bool) -> None:
    from .errors import NotFoundError
    from .qa import Timings

    try:
        prepared = qa.prepare(question)
    except NotFoundError as exc:
        # Not an error of the tool: the answer is "not in your documents" (exit 4).
        if as_json:
            print(
                json.dumps(
                    {"question": question, "answer": str(exc), "not_found": True, "sources": []},
                    ensure_ascii=False,
                )
            )
        else:
            print(exc)
        raise typer.Exit(exc.exit_code) from None
    timings = Timings()
    pieces = []
    for piece in qa.stream(prepared, timings):
        pieces.append(piece)
        if not as_json:
            sys.stdout.write(piece)
            sys.stdout.flush()
    answer = "".join(pieces).strip()
    if as_json:
        print(json.dumps(answer_json(question, answer, prepared.hits, timings), ensure_ascii=False))
        return
    sys.stdout.write("\n")
    if not hide_sources:
        print_sources(err, prepared.hits)
        err.print(
            f"[dim]retrieval {timings.retrieval_ms:.0f} ms · first token "
            f"{timings.first_token_s:.2f} s · {timings.tokens_per_s:.1f} tokens/s[/]"
        )


def answer_json(question: str, answer: str, hits, timings) -> dict:
    return {
        "question": question,
        "answer": answer,
        "not_found": False,
        "sources": [
            {
                "file": h.chunk.source,
                "page": h.chunk.page,
                "score": round(h.score, 4),
                "chunk": h.chunk.index,
                "text": h.chunk.text,
            }
            for h in hits
        ],
        "timings": {
            "retrieval_ms": round(timings.retrieval_ms, 1),
            "first_token_s": round(timings.first_token_s, 3),
            "tokens": timings.tokens,
            "tokens_per_s": round(timings.tokens_per_s, 2),
        },
    }


def print_sources(console: Console, hits) -> None:
    for n, hit in enumerate(hits, start=1):
        page = f" 第{hit.chunk.page}页" if hit.chunk.page else ""
        excerpt = hit.chunk.text.replace("\n", " ")
        excerpt = excerpt[:80] + ("…" if len(excerpt) > 80 else "")
        console.print(
            f"[cyan][{n}] {escape(hit.chunk.source)}{page}[/] [dim](score {hit.score:.2f})[/] "
            f"{escape(excerpt)}"
        )


# --- console scripts and shims ----------------------------------------------------


def ingest_main() -> None:
    app(args=["ingest", *sys.argv[1:]], prog_name="ingest")


def ask_main() -> None:
    app(args=["ask", *sys.argv[1:]], prog_name="ask")
