import sys

from livecast.cli import main

sys.exit(main())
