from ixhpc.cli import entry

entry()
