import sys

from sdsim.cli import main

sys.exit(main())
