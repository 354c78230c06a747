"""The commands, one module per group; each function takes the Command and returns the exit code."""
