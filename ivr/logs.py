"""One line per event: `event=... call_id=...` after a timestamp, level and component."""

import logging
import sys


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)s %(name)s %(message)s",
                          "%Y-%m-%dT%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # panoramisk logs every reconnect attempt at ERROR; ours say what matters.
    logging.getLogger("ivr.ami.panoramisk").setLevel(logging.CRITICAL)
