"""The interactive terminal: streamed answers, sources, a short memory."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.markup import escape

from .errors import NotFoundError, PrivateGPTError
from .qa import QA, Prepared, Turn

HELP = "/sources 上一个回答的来源 · /reset 清空对话 · /exit 退出 (Ctrl-D) · Ctrl-C 停止当前回答"


class Repl:
    def __init__(self, qa: QA, history_turns: int, console: Console | None = None) -> None:
        self.qa = qa
        self.keep = history_turns
        self.console = console or Console()
        self.history: list[Turn] = []
        self.last: Prepared | None = None

    def run(self) -> None:
        try:
            import readline  # noqa: F401  (line editing and ↑ history for input())
        except ImportError:
            pass
        self.console.print(f"[bold]文档问答[/] — {HELP}")
        while True:
            try:
                line = input("\n问> ").strip()
            except EOFError:
                self.console.print()
                return
            except KeyboardInterrupt:
                self.console.print()
                continue
            if not line:
                continue
            if line.startswith("/"):
                if self._command(line):
                    return
                continue
            self._ask(line)

    def _command(self, line: str) -> bool:
        """Handle a slash command; True means leave."""
        name = line.split()[0].lower()
        if name in ("/exit", "/quit", "/q"):
            return True
        if name == "/reset":
            self.history.clear()
            self.console.print("[dim]对话已清空。[/]")
        elif name == "/sources":
            self._sources()
        else:
            self.console.print(f"[dim]{HELP}[/]")
        return False

    def _sources(self) -> None:
        from .cli import print_sources

        if self.last is None:
            self.console.print("[dim]还没有回答。[/]")
        else:
            print_sources(self.console, self.last.hits)

    def _ask(self, question: str) -> None:
        from .cli import print_sources

        try:
            prepared = self.qa.prepare(question, self.history[-self.keep :] if self.keep else [])
        except NotFoundError as exc:
            self.console.print(f"[yellow]{escape(str(exc))}[/]")
            return
        except PrivateGPTError as exc:
            self.console.print(f"[bold red]Error:[/] {escape(str(exc))}")
            return
        self.last = prepared
        pieces: list[str] = []
        try:
            for piece in self.qa.stream(prepared):
                pieces.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
        except KeyboardInterrupt:
            self.console.print("\n[yellow](已停止)[/]")
            return
        except PrivateGPTError as exc:  # one failed answer must not end the session
            self.console.print(f"\n[bold red]Error:[/] {escape(str(exc))}")
            return
        self.console.print()
        print_sources(self.console, prepared.hits)
        self.history.append(Turn(question, "".join(pieces).strip()))
        del self.history[: -max(self.keep, 1)]
