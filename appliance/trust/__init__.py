"""Trust: OpenSSH signatures (SSHSIG) and allowed_signers, safe tar reading, strict JSON."""
