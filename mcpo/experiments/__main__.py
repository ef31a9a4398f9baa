"""`python -m mcpo.experiments OUTCOME.json < JOB.json`: one run of a sweep in a fresh
process (the local pool's worker; mcpo.experiments.worker)."""

import sys

from mcpo.experiments.worker import main

sys.exit(main())
