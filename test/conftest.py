import sys
from pathlib import Path

# The shared builders (po2_testlib) sit next to this file.
sys.path.insert(0, str(Path(__file__).parent))
