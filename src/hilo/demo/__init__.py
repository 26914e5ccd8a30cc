"""``hilo demo``: a believable car-rental workspace in Spanish and English, for trying Hilo."""
