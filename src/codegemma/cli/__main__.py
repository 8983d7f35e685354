"""`python -m codegemma.cli`."""

import sys

from . import main

sys.exit(main())
