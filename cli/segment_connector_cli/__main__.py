"""`python -m segment_connector_cli`: the console script."""

import sys

from segment_connector_cli.main import main

if __name__ == "__main__":
    sys.exit(main())
