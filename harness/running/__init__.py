"""The parent-process side of a run: pytest children supervised, crashes survived, signals honoured."""
