"""Keep every library we load off the network.

Called before chromadb, sentence-transformers or huggingface_hub are imported:
they read these variables at import time.
"""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "ANONYMIZED_TELEMETRY": "False",  # chromadb's posthog telemetry
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",  # no "Loading weights" bars in our output
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def go_offline() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value
