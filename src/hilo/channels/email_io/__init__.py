"""The e-mail channel's machinery: reading and writing MIME, reply tokens, Hilo's SMTP
listener and the IMAP poller. The adapter itself is :mod:`hilo.channels.email`."""
