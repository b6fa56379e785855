"""`python -m index add|list|remove ...` is `citeqa index ...`: it runs the `citeqa` command as
`python -m citeqa` would, so the index package never imports the CLI."""

import runpy
import sys

sys.argv[1:1] = ["index"]
runpy.run_module("citeqa", run_name="__main__", alter_sys=True)
