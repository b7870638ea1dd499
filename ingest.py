"""python ingest.py: read source_documents/ into the local store (see README)."""

from privategpt_zh.cli import ingest_main

if __name__ == "__main__":
    ingest_main()
