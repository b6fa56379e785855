"""`python -m index add|list|remove ...` is `citeqa index ...`."""

import sys

from citeqa.cli import main

raise SystemExit(main(["index", *sys.argv[1:]]))
