"""The data store on the node: versions, the audit trail, imports, the inbox watcher."""
