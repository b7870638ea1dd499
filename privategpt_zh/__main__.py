from privategpt_zh.cli import app

app(prog_name="python -m privategpt_zh")
