"""Who may do what on the node, and who did: API tokens and the actors of the audit trail."""
