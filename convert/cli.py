"""Command line for ``python -m convert``: parse, call the core, print results.

The only module here that imports typer and rich. Errors from the core are
PrivateGPTError: one red line on stderr and the error's exit code, unless
--debug asks for the traceback.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from convert.common import human_bytes
from privategpt_zh.errors import ConvertError, PrivateGPTError

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Convert models to GGUF for privategpt_zh."
)
err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
_state = {"debug": False}

Force = Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")]


@app.callback()
def _options(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and debug logs.")] = False,
) -> None:
    _state["debug"] = debug
    if not debug:  # gguf's vocab loader warns about harmless template details
        logging.getLogger("gguf").setLevel(logging.ERROR)
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@app.command()
def hf2gguf(
    hf_dir: Path,
    out_file: Path,
    outtype: Annotated[str, typer.Option(help="f16, f32 or q8_0")] = "f16",
    name: Annotated[Optional[str], typer.Option(help="general.name to store")] = None,
    force: Force = False,
) -> None:
    """Convert a Hugging Face Llama / Qwen2 folder to GGUF."""
    from convert.hf import convert_hf

    _done(convert_hf(hf_dir, out_file, outtype=outtype, force=force, name=name))


@app.command()
def quantize(
    in_file: Path,
    out_file: Path,
    type: Annotated[str, typer.Option("--type", help="q4_0, q4_K_M, q5_K_M or q8_0")] = "q4_K_M",  # noqa: A002
    force: Force = False,
) -> None:
    """Quantize a GGUF with llama.cpp's quantizer."""
    from convert.quantize import quantize as run

    _done(run(in_file, out_file, type, force=force))


@app.command()
def ggml2gguf(
    in_file: Path,
    out_file: Path,
    eps: Annotated[float, typer.Option(help="RMS norm epsilon (not stored in GGML files)")] = 1e-5,
    context_length: Annotated[
        int, typer.Option(help="training context (not stored in GGML files)")
    ] = 4096,
    force: Force = False,
) -> None:
    """Convert an old GGML (ggml/ggmf/ggjt v1-v3) Llama .bin to GGUF."""
    from convert.ggml import convert_ggml

    _done(convert_ggml(in_file, out_file, force=force, eps=eps, context_length=context_length))


@app.command()
def all(  # noqa: A001 - the command is called "all"
    hf_dir: Path,
    out_file: Path,
    type: Annotated[str, typer.Option("--type", help="q4_0, q4_K_M, q5_K_M or q8_0")] = "q4_K_M",  # noqa: A002
    keep_f16: Annotated[bool, typer.Option(help="Keep the intermediate f16 GGUF.")] = False,
    force: Force = False,
) -> None:
    """hf2gguf to f16, then quantize, in one go."""
    from convert.hf import convert_hf
    from convert.quantize import QUANT_TYPES
    from convert.quantize import quantize as run

    if type not in QUANT_TYPES:  # fail before the long f16 conversion
        raise ConvertError(f"unknown quant type {type!r}; choose one of {', '.join(QUANT_TYPES)}")
    if out_file.exists() and not force:
        raise ConvertError(f"{out_file} already exists; pass --force to overwrite it")
    f16 = out_file.with_name(out_file.stem + ".f16.gguf")
    convert_hf(hf_dir, f16, outtype="f16", force=force)
    try:
        _done(run(f16, out_file, type, force=force))
    finally:
        if not keep_f16:
            f16.unlink(missing_ok=True)


@app.command()
def inspect(gguf_file: Path) -> None:
    """Show architecture, sizes, quant types and chat template of a GGUF."""
    from convert.inspect_gguf import inspect_gguf

    s = inspect_gguf(gguf_file)
    out.print(f"file:           {s.path}")
    out.print(f"name:           {s.name or '-'}")
    out.print(f"architecture:   {s.architecture}")
    out.print(f"parameters:     {s.n_params:,} ({s.n_params / 1e9:.2f} B)")
    out.print(f"file size:      {human_bytes(s.file_size)}")
    out.print(f"tensors:        {s.n_tensors}")
    out.print("quant types:    " + ", ".join(f"{k} x{v}" for k, v in s.quant_types.items()))
    out.print(f"context length: {s.context_length}")
    out.print(f"vocab size:     {s.vocab_size} ({s.tokenizer})")
    if s.chat_template:
        lines = s.chat_template.splitlines()
        out.print("chat template:", markup=False)
        for line in lines[:5]:
            out.print("  " + line, markup=False, highlight=False)
        if len(lines) > 5:
            out.print(f"  ... ({len(lines) - 5} more lines)")
    else:
        out.print("chat template:  none")


@app.command()
def pull(
    repo_id: str,
    file: Annotated[Optional[str], typer.Argument(help="file in the repo (a .gguf)")] = None,
    models_dir: Annotated[Path, typer.Option(help="where to put it")] = Path("models"),
) -> None:
    """Download a GGUF or an embedding model (needs network; set-up time only)."""
    from convert.pull import pull as run

    local, env = run(repo_id, file, models_dir)
    err.print(f"downloaded to {local}")
    out.print("Put this in .env:", markup=False)
    out.print(env, markup=False, highlight=False)


def _done(path: Path) -> None:
    err.print(f"[green]wrote[/green] {path} ({human_bytes(path.stat().st_size)})")


def main() -> None:
    try:
        # standalone: typer prints usage errors itself (exit 2) and exits 0 on success
        app()
    except PrivateGPTError as exc:
        if _state["debug"]:
            err.print_exception()
        # markup off: messages quote paths and shapes that look like [tags]
        err.print(f"error: {exc}", style="red", markup=False, highlight=False)
        sys.exit(exc.exit_code)
