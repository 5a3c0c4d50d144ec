"""``python -m btccxt_cli`` runs the CLI."""

from btccxt_cli.entry import main

if __name__ == "__main__":
    main()
