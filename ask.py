"""python ask.py ["question" | -]: answer from the ingested documents (see README)."""

from privategpt_zh.cli import ask_main

if __name__ == "__main__":
    ask_main()
