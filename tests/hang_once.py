"""Imported by a test sweep's spec (`imports: [hang_once]`): the first worker process to import
it exits as the hang watchdog does (EXIT_HUNG), standing in for XLA's deadlock, which cannot
be provoked on demand; $HANG_ONCE_MARKER records that it happened, so the retry goes through."""

import os
import sys
from pathlib import Path

from mcpo.watchdog import EXIT_HUNG

_marker = Path(os.environ["HANG_ONCE_MARKER"])
_spec = getattr(sys.modules["__main__"], "__spec__", None)
_in_worker = _spec is not None and _spec.name == "mcpo.experiments.__main__"  # not the sweep
if _in_worker and not _marker.exists():
    _marker.write_text("hung once\n")
    os._exit(EXIT_HUNG)
