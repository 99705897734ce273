import sys

from radseg_edge.cli import main

sys.exit(main())
