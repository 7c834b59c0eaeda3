"""``vjepa demo``: the paper's claims on a laptop CPU, end to end, with a report (see :mod:`vjepa.demo.run`)."""
