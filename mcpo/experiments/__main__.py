"""`python -m mcpo.experiments`: a local-pool worker process of a sweep (jobs as JSON lines
on stdin; mcpo.experiments.worker.serve)."""

import sys

from mcpo.experiments.worker import serve

sys.exit(serve())
