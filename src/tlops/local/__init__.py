"""The embedded default: a local stand-in for the AWS side of the stack."""
