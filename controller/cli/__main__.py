"""``python -m controller.cli``: the ``citywifi`` command."""

import sys

from controller.cli.main import main

sys.exit(main())
