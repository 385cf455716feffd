"""``python -m floss_core ...``: the command line (floss_core/cli.py)."""
from .cli import main

if __name__ == "__main__":
    main()
