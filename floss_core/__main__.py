"""``python -m floss_core ...``: the command line (the package floss_core/cli/)."""
from .cli import main

if __name__ == "__main__":
    main()
