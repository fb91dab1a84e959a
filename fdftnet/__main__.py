"""`python -m fdftnet ...` (and `torchrun ... -m fdftnet ...`)."""
import sys

from .cli import main

sys.exit(main())
