"""``python -m vis_d2.data.synthetic``: write the synthetic YouTube-VIS-format set."""

import sys

from . import main

sys.exit(main())
