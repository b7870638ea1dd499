"""Download a GGUF or an embedding model into models/ (set-up time only).

The only code in the project that touches the network. It checks first that the
Hub can be reached at all and fails at once otherwise, so an offline machine
gets a clear message instead of a hang.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

from privategpt_zh.errors import ConvertError, MissingDependencyError

logger = logging.getLogger(__name__)

HUB_HOST = "huggingface.co"
_TRUTHY = {"1", "true", "yes", "on"}


def offline_reason(timeout: float = 3.0) -> str | None:
    """Why the Hub cannot be reached, or None if it looks reachable."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in _TRUTHY:
            return f"{var} is set"
    url = urlsplit(os.environ.get("HF_ENDPOINT") or f"https://{HUB_HOST}")
    host = url.hostname or HUB_HOST
    port = url.port or (80 if url.scheme == "http" else 443)
    # getaddrinfo has no timeout of its own; a broken resolver can block for long.
    found: dict[str, object] = {}
    resolver = threading.Thread(target=_resolve, args=(host, port, found), daemon=True)
    resolver.start()
    resolver.join(timeout)
    if "addr" not in found:
        return f"cannot resolve {host}"
    try:
        with socket.create_connection(found["addr"], timeout=timeout):  # type: ignore[arg-type]
            return None
    except OSError as exc:
        return f"cannot connect to {host}: {exc}"


def _resolve(host: str, port: int, found: dict[str, object]) -> None:
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found["addr"] = info[0][4][:2]
    except OSError:
        pass


def env_line(local: Path, root: Path) -> str:
    """The .env setting that makes privategpt_zh use what was downloaded."""
    rel = os.path.relpath(local, root)
    if local.is_file() and local.suffix == ".gguf":
        return f"MODEL_PATH={rel}"
    return f"EMBEDDINGS_MODEL_NAME={rel}"


def pull(
    repo_id: str, filename: str | None = None, models_dir: Path = Path("models")
) -> tuple[Path, str]:
    """Download ``filename`` (a GGUF) or the whole repo (an embedding model).

    Returns the local path and the .env line to use. Downloads resume if cut.
    """
    reason = offline_reason()
    if reason:
        raise ConvertError(
            f"cannot download {repo_id}: no network access ({reason}); "
            "copy the model file into models/ by hand instead"
        )
    try:
        import huggingface_hub as hub
    except ImportError as exc:
        raise MissingDependencyError(
            "pull needs huggingface_hub: pip install -r requirements-convert.txt"
        ) from exc

    models_dir.mkdir(parents=True, exist_ok=True)
    try:
        if filename is None:
            filename = _pick_gguf(hub.list_repo_files(repo_id))
        if filename is not None:
            local = Path(hub.hf_hub_download(repo_id, filename, local_dir=models_dir))
        else:
            target = models_dir / repo_id.split("/")[-1]
            local = Path(hub.snapshot_download(repo_id, local_dir=target))
    except Exception as exc:  # noqa: BLE001 - hub errors are many; all mean "did not download"
        raise ConvertError(f"download of {repo_id} failed: {exc}") from exc
    return local, env_line(local, Path.cwd())


def _pick_gguf(files: list[str]) -> str | None:
    """None for a repo without GGUF files (an embedding model, fetched whole)."""
    ggufs = [f for f in files if f.endswith(".gguf")]
    if not ggufs:
        return None
    if len(ggufs) == 1:
        return ggufs[0]
    preferred = [f for f in ggufs if "q4_k_m" in f.lower()]
    if len(preferred) == 1:
        return preferred[0]
    raise ConvertError("the repo holds several GGUF files; name one: " + ", ".join(sorted(ggufs)))
