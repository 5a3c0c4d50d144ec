"""The command line. The only package that imports typer; commands import heavy libraries lazily."""
