"""The `dualwrite` command line. Subcommands register here; each lives in its own module."""
