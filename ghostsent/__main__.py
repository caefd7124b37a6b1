"""`python -m ghostsent` is the same as the `ghostsent` command."""
from ghostsent.cli import main

if __name__ == "__main__":
    main()
