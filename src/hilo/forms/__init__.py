"""Web forms posted straight to Hilo: the submission route and its thank-you page."""
