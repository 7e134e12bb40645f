"""The request path, free of I/O: dispatch table, ops, store, transactions, watches, sessions,
permissions, quotas, domains table, CONTROL."""
