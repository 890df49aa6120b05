"""Network I/O: resolve every address, connect within a deadline, handshake."""
