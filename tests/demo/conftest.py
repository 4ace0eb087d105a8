"""The project's packages must win over test folders of the same name (tests/speech is a package)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
