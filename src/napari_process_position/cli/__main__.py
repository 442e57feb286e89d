"""``python -m napari_process_position.cli``."""

import sys

from napari_process_position.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
