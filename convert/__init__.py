"""Model conversion for privategpt_zh: Hugging Face / old GGML checkpoints -> GGUF.

Run it as ``python -m convert --help``. Each sub-command lives in its own module
(``hf``, ``ggml``, ``quantize``, ``inspect_gguf``, ``pull``); ``cli`` only parses
arguments and prints. None of the core modules import typer or rich.
"""

from __future__ import annotations
