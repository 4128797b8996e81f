"""``python -m convlstm``: the same as the ``convlstm`` command."""

import sys

from convlstm.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
