"""One module per `sdsim` sub-command (see sdsim/cli.py for the contract)."""
