"""``python -m trainer``: the faceparse command line."""

from trainer.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
