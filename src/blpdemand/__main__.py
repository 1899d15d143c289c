"""``python -m blpdemand`` runs the command line."""

from blpdemand.cli import run_command_line

if __name__ == "__main__":
    run_command_line()
