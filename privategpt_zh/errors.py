"""One exception tree for the whole tool.

Every error the core raises is a :class:`PrivateGPTError`. Its message says what
happened and what to do next; the CLI prints it as one red line and exits with
``exit_code``. Nothing in the core prints.
"""

from __future__ import annotations


class PrivateGPTError(Exception):
    """Base class: a failure the user can understand and act on."""

    exit_code: int = 1


class UsageError(PrivateGPTError):
    """The command line was wrong (a bad flag value, a missing argument)."""

    exit_code = 2


class ConfigError(PrivateGPTError):
    """A setting in .env, the environment or a flag has an invalid value."""

    exit_code = 2


class MissingDependencyError(PrivateGPTError):
    """An optional package needed for this feature is not installed."""


class ModelError(PrivateGPTError):
    """The LLM or embedding model is missing, corrupt or failed to load."""


class LoaderError(PrivateGPTError):
    """One source document could not be read. Ingest reports it and goes on."""


class StoreError(PrivateGPTError):
    """The vector store or lexical index could not be opened or written."""


class StoreEmptyError(StoreError):
    """Ask found no documents in the store."""

    exit_code = 3


class StoreMismatchError(StoreError):
    """The store was built with another embedding model or chunking settings."""


class StoreLockedError(StoreError):
    """Another ingest holds the store's lock."""


class NotFoundError(PrivateGPTError):
    """Retrieval found nothing relevant enough to answer from."""

    exit_code = 4


class ConvertError(PrivateGPTError):
    """A model conversion (convert/) failed: broken checkpoint, unsupported architecture..."""
