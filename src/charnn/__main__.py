"""python -m charnn: the command line, as torchrun starts it (torchrun -m charnn train ...)."""

import sys

from .cli import main

sys.exit(main())
