"""A stand-in for `python -m tlops.node.watchdog`, for testing the idle_watchdog role alone.

It records its arguments and the names of the variables it was given (never their values)
to `$TL_STANDIN_RECORD`, then stays up like `run` does (a tick returns at once).
"""

from __future__ import annotations

import json
import os
import sys
import time

if __name__ == "__main__":
    record = {"argv": sys.argv[1:], "env": sorted(n for n in os.environ if n.startswith("TL_"))}
    with open(os.environ["TL_STANDIN_RECORD"], "w") as out:
        json.dump(record, out)
    if sys.argv[1:] == ["run"]:
        time.sleep(3600)
