"""``python -m soakwatch.run.demo.sample_service``: the sample service (see ``app.py``)."""

import sys

from soakwatch.run.demo.sample_service.app import main

sys.exit(main())
