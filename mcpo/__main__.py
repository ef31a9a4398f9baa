import sys

from mcpo.cli import main

sys.exit(main())
