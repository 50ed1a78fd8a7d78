"""khttpd: the kernel-mode web server (sans-IO HTTP core, paths, MIME, access log)."""
