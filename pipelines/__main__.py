import sys

from pipelines.cli import main

# Guarded: Dask's worker processes are spawned and re-import the main module; they must not re-run the command.
if __name__ == "__main__":
    sys.exit(main())
