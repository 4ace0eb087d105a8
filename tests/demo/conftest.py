"""The project's packages must win over test folders of the same name (tests/speech is a package)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import speech  # noqa: E402,F401  (bind the real package now, before other test folders join sys.path)
