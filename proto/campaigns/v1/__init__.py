"""campaigns.v1: generated code; regenerate with `make proto`, never edit by hand."""
