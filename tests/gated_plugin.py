"""A plugin whose import waits for a file, ``tests.gated_plugin:gated``: a server start that stays
in progress until the test lets it go on.

It says ``gated plugin waiting`` on stderr, then waits until the file named by the environment
variable ``GATED_PLUGIN_GATE`` exists.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from jobwarden import Plugin

gated = Plugin("gated", version="1.0.0")

_gate = Path(os.environ["GATED_PLUGIN_GATE"])
sys.stderr.write("gated plugin waiting\n")
sys.stderr.flush()
while not _gate.exists():
    # An import cannot await: polling a file is all another process offers it here.
    time.sleep(0.01)
