"""`python -m app`: the command line (`app.cli`), also installed as `video-webhook-relay`."""

from app.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
