"""``python -m examples.sample_service``: the same as ``python examples/sample_service/app.py``."""

import sys

from .app import main

sys.exit(main())
