"""citywifi RADIUS protocol side: bytes <-> typed packets (no sockets in the core), server, DAE."""
