from __future__ import annotations

import sys

from bench.harness import main

raise SystemExit(main(sys.argv[1:]))
