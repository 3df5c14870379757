"""`python -m pai_bench`: the CLI without installing (the GPU machine has no package access)."""

import sys

from pai_bench.cli import main

sys.exit(main())
