"""The commands behind the command line (greenrunner.cli parses; these do the work)."""
