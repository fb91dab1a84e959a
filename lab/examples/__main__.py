"""python -m lab.examples: (re)write Detect's example files (see lab/examples/__init__.py)."""
from . import make, paths

make()
print("\n".join(paths()))
